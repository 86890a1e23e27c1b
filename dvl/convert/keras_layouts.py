"""Where each Keras application layer's weights go in the matching dvl model.

A layout is a list of ``Rule``s, one per Keras layer with weights, built
from the dvl model's own fields (its decoded block strings, its stage
sizes) and its deterministic module names (``stem``,
``stage{i}_block{j}``, ``head_conv``, ``head``) on one side and Keras's
layer names (``block2a_expand_conv``, ``conv_dw_3``,
``conv4_block2_1_conv``) on the other: nothing depends on the order in which
a file lists its tensors.

``FAMILIES`` says, for every dvl model that has a Keras counterpart, which
layout it uses, which Keras preprocessing it expects, and which fields the
import sets so that dvl computes what Keras computes (BatchNorm epsilon,
TensorFlow SAME padding).
"""

import dataclasses
from typing import Callable

from dvl import layers
from dvl.models import blocks, efficientnet, resnet_v1

# The names Keras gives the arrays of each kind of layer, in its order.
ROLES = {
    'conv': ('kernel', 'bias'),
    'depthwise': ('kernel', 'bias'),
    'dense': ('kernel', 'bias'),
    'conv_dense': ('kernel', 'bias'),
    'bn': ('gamma', 'beta', 'moving_mean', 'moving_variance'),
    'normalization': ('mean', 'variance', 'count'),
}


@dataclasses.dataclass(frozen=True)
class Rule:
  """One Keras layer and where its weights go.

  Attributes:
    kind: 'conv', 'depthwise' (Keras kernel (kh, kw, C, 1), dvl's
      (kh, kw, 1, C)), 'dense', 'conv_dense' (a 1×1 convolution classifier
      read as a dense layer), 'bn', or 'normalization' (Keras's input
      normalisation, which becomes the preprocessing spec).
    keras: the Keras layer name.
    dvl: the dvl module path holding the weights, e.g.
      'stage2_block1/expand/conv' ('' for 'normalization').
    fold: for a convolution whose Keras bias has no place in dvl, the path
      of the dvl BatchNorm whose moving mean absorbs it.
    auto_named: Keras named the layer itself, so the file may carry a
      numeric suffix ('normalization_1').
  """
  kind: str
  keras: str
  dvl: str
  fold: str | None = None
  auto_named: bool = False


def conv_bn(conv: str, bn: str, dvl: str, kind: str = 'conv',
            fold: bool = False) -> list[Rule]:
  """A Keras convolution and its BatchNorm onto one dvl ``ConvBN``."""
  norm = f'{dvl}/norm/bn'
  return [Rule(kind, conv, f'{dvl}/conv', fold=norm if fold else None),
          Rule('bn', bn, norm)]


def _stages(model):
  return blocks.scale_stages(model.blocks, width=model.width, depth=model.depth)


def efficientnet_rules(model) -> list[Rule]:
  """Keras ``EfficientNetB0``…``B7`` (blocks ``block{stage}{letter}_``)."""
  rules = [Rule('normalization', 'normalization', '', auto_named=True),
           *conv_bn('stem_conv', 'stem_bn', 'stem')]
  for i, spec in enumerate(_stages(model)):
    for j in range(spec.repeats):
      k, d = f'block{i + 1}{chr(ord("a") + j)}_', f'stage{i + 1}_block{j + 1}'
      if spec.expansion != 1:
        rules += conv_bn(k + 'expand_conv', k + 'expand_bn', d + '/expand')
      rules += conv_bn(k + 'dwconv', k + 'bn', d + '/depthwise', 'depthwise')
      if spec.se_ratio:
        rules += [Rule('conv', k + 'se_reduce', d + '/se/reduce'),
                  Rule('conv', k + 'se_expand', d + '/se/expand')]
      rules += conv_bn(k + 'project_conv', k + 'project_bn', d + '/project')
  return [*rules, *conv_bn('top_conv', 'top_bn', 'head_conv'),
          Rule('dense', 'predictions', 'head/dense')]


def mobilenet_v2_rules(model) -> list[Rule]:
  """Keras ``MobileNetV2`` (blocks numbered globally: ``expanded_conv_``,
  then ``block_1_`` … ``block_16_``)."""
  rules = conv_bn('Conv1', 'bn_Conv1', 'stem')
  index = 0
  for i, spec in enumerate(_stages(model)):
    for j in range(spec.repeats):
      k = f'block_{index}_' if index else 'expanded_conv_'
      d = f'stage{i + 1}_block{j + 1}'
      if spec.expansion != 1:
        rules += conv_bn(k + 'expand', k + 'expand_BN', d + '/expand')
      rules += conv_bn(k + 'depthwise', k + 'depthwise_BN', d + '/depthwise',
                       'depthwise')
      rules += conv_bn(k + 'project', k + 'project_BN', d + '/project')
      index += 1
  return [*rules, *conv_bn('Conv_1', 'Conv_1_bn', 'head_conv'),
          Rule('dense', 'predictions', 'head/dense')]


def mobilenet_v1_rules(model) -> list[Rule]:
  """Keras ``MobileNet`` (``conv_dw_{n}`` / ``conv_pw_{n}``, n = 1…13, and
  the 1×1 convolution classifier ``conv_preds``)."""
  if not model.separable:
    raise ValueError('Keras has no full-convolution MobileNet; import into '
                     'mobilenet_v1 with separable=True')
  rules = conv_bn('conv1', 'conv1_bn', 'stem')
  index = 1
  for i, spec in enumerate(_stages(model)):
    for j in range(spec.repeats):
      d = f'stage{i + 1}_block{j + 1}'
      rules += conv_bn(f'conv_dw_{index}', f'conv_dw_{index}_bn',
                       d + '/depthwise', 'depthwise')
      rules += conv_bn(f'conv_pw_{index}', f'conv_pw_{index}_bn',
                       d + '/pointwise')
      index += 1
  return [*rules, Rule('conv_dense', 'conv_preds', 'head/dense')]


def resnet_v1_rules(model) -> list[Rule]:
  """Keras ``ResNet50`` (``conv{2..5}_block{j}_{0..3}_conv``); every
  convolution bias folds into its BatchNorm."""
  rules = conv_bn('conv1_conv', 'conv1_bn', 'stem', fold=True)
  for i, n in enumerate(model.stage_sizes):
    for j in range(layers.round_repeats(n, model.depth)):
      k, d = f'conv{i + 2}_block{j + 1}_', f'stage{i + 1}_block{j + 1}/'
      if j == 0:
        rules += conv_bn(k + '0_conv', k + '0_bn', d + 'downsample', fold=True)
      for c in (1, 2, 3):
        rules += conv_bn(f'{k}{c}_conv', f'{k}{c}_bn', f'{d}conv{c}',
                         fold=True)
  return [*rules, Rule('dense', 'predictions', 'head/dense')]


def vgg_rules(model) -> list[Rule]:
  """Keras ``VGG16`` / ``VGG19`` (``block{i}_conv{j}``, ``fc1``, ``fc2``)."""
  if model.batch_norm:
    raise ValueError('Keras VGG has no BatchNorm; import into vgg16 or vgg19')
  rules = [Rule('conv', f'block{i + 1}_conv{j + 1}',
                f'stage{i + 1}_conv{j + 1}/conv')
           for i, n in enumerate(model.stage_sizes)
           for j in range(layers.round_repeats(n, model.depth))]
  return [*rules, Rule('dense', 'fc1', 'fc1'), Rule('dense', 'fc2', 'fc2'),
          Rule('dense', 'predictions', 'head/dense')]


@dataclasses.dataclass(frozen=True)
class Family:
  """How one dvl model imports from Keras.

  Attributes:
    keras: the Keras application, for messages and the metadata.
    rules: model -> its layout.
    preprocessing: a preset of ``dvl.convert.preprocess``, or 'in_model'
      when the Keras model normalises its input itself (EfficientNet).
    fields: fields set on the dvl model, e.g. Keras's BatchNorm epsilon.
    alpha: whether the Keras model has a width multiplier alpha.
  """
  keras: str
  rules: Callable[..., list[Rule]]
  preprocessing: str
  fields: dict
  alpha: bool = False


_TF_BN = dict(bn_epsilon=1e-3, padding='same')
FAMILIES: dict[str, Family] = {
    **{name: Family(f'EfficientNetB{name[-1]}', efficientnet_rules, 'in_model',
                    _TF_BN)
       for name in efficientnet.EFFICIENTNET},
    'efficientnet': Family('EfficientNet', efficientnet_rules, 'in_model',
                           _TF_BN),
    # MobileNetV1's BatchNorm epsilon is fixed at Keras's 1e-3.
    'mobilenet_v1': Family('MobileNet', mobilenet_v1_rules, 'tf',
                           dict(padding='same'), alpha=True),
    'mobilenet_v2': Family('MobileNetV2', mobilenet_v2_rules, 'tf', _TF_BN,
                           alpha=True),
    **{name: Family('ResNet50', resnet_v1_rules, 'caffe',
                    dict(bn_epsilon=1.001e-5))
       for name in resnet_v1.STAGES},
    'vgg16': Family('VGG16', vgg_rules, 'caffe', {}),
    'vgg19': Family('VGG19', vgg_rules, 'caffe', {}),
}

_V15 = ("Keras's ResNet50/101/152 are ResNet v1, with the stride of a "
        'downsampling block in its first 1x1 convolution; dvl\'s {name} is '
        'v1.5, with the stride in the 3x3. The architectures differ, so the '
        'weights would compute another function. {hint}')
REFUSED = {
    name: _V15.format(name=name, hint=(
        f'Import into {name}_v1 instead (model={name}_v1).'
        if f'{name}_v1' in resnet_v1.STAGES else
        'Of the v1 models dvl registers ' + ', '.join(resnet_v1.STAGES)
        + '; dvl.models.resnet_v1.ResNetV1(stage_sizes=...) builds others.'))
    for name in ('resnet50', 'resnet101', 'resnet152')}


def family(name: str) -> Family:
  """The Keras import family of a dvl model; raises with the choices."""
  if name in REFUSED:
    raise ValueError(f'cannot import Keras weights into {name!r}: '
                     + REFUSED[name])
  if name not in FAMILIES:
    raise ValueError(f'no Keras application matches the dvl model {name!r}; '
                     f'importable models: {", ".join(FAMILIES)}')
  return FAMILIES[name]
