"""MobileNetV2 and EfficientNet: one network of inverted-residual stages
built from block strings (``dvl.models.blocks``); EfficientNetV2
(``dvl.models.efficientnet_v2``) is the same network with fused stages.

- MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted residuals and
  linear bottlenecks", Table 2): ReLU6, no squeeze-and-excitation, 1280-wide
  head that never shrinks below 1280 (3,504,872 parameters at width 1.0).
- EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking model scaling for
  convolutional neural networks", Table 1): swish, SE 0.25, drop-connect
  rising linearly to 0.2 over the blocks; B0–B7 are rows of ``EFFICIENTNET``
  (the TF reference's own table of width, depth, resolution, dropout).

Scaling semantics (``dvl.scaling``): ``width`` multiplies every stage's,
the stem's and the head's channels (``layers.round_filters``); ``depth``
multiplies every stage's repeats (rounded up). This is the TF reference's
scaling, so ``EfficientNet(width=1.1, depth=1.2, resolution=260)`` is B2.
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import blocks
from dvl.models import scan
from dvl.models import spec
from dvl.models.common import Classifier, check_input, positive

EFFICIENTNET_B0 = (
    'ir_r1_k3_s1_e1_c16_se0.25', 'ir_r2_k3_s2_e6_c24_se0.25',
    'ir_r2_k5_s2_e6_c40_se0.25', 'ir_r3_k3_s2_e6_c80_se0.25',
    'ir_r3_k5_s1_e6_c112_se0.25', 'ir_r4_k5_s2_e6_c192_se0.25',
    'ir_r1_k3_s1_e6_c320_se0.25')

MOBILENET_V2 = (
    'ir_r1_k3_s1_e1_c16', 'ir_r2_k3_s2_e6_c24', 'ir_r3_k3_s2_e6_c32',
    'ir_r4_k3_s2_e6_c64', 'ir_r3_k3_s1_e6_c96', 'ir_r3_k3_s2_e6_c160',
    'ir_r1_k3_s1_e6_c320')

# name: (width, depth, resolution, dropout), from the TF reference builder.
EFFICIENTNET = {
    'efficientnet_b0': (1.0, 1.0, 224, 0.2),
    'efficientnet_b1': (1.0, 1.1, 240, 0.2),
    'efficientnet_b2': (1.1, 1.2, 260, 0.3),
    'efficientnet_b3': (1.2, 1.4, 300, 0.3),
    'efficientnet_b4': (1.4, 1.8, 380, 0.4),
    'efficientnet_b5': (1.6, 2.2, 456, 0.4),
    'efficientnet_b6': (1.8, 2.6, 528, 0.5),
    'efficientnet_b7': (2.0, 3.1, 600, 0.5),
}


class EfficientNet(nn.Module):
  """A stem, inverted-residual stages from block strings, a 1×1 head.

  Stages of type ``ir`` are MBConv (``layers.InvertedResidual``), ``fr``
  Fused-MBConv (``layers.FusedInvertedResidual``). ``resolution`` is the
  reference input side; the module accepts any input of at least
  ``min_resolution``. ``round_min_ratio`` is ``layers.round_filters``'s
  ``min_ratio`` for every scaled width (0: EfficientNetV2's rounding).
  Defaults are EfficientNet-B0.
  """
  blocks: Sequence[str] = EFFICIENTNET_B0
  width: float = 1.0
  depth: float = 1.0
  resolution: int = 224
  dropout: float = 0.2
  drop_connect: float = 0.2
  stem_width: int = 32
  head_width: int = 1280
  head_never_shrinks: bool = False
  round_min_ratio: float = 0.9
  act: str = 'swish'
  padding: str = 'same'
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  depthwise_impl: str | None = None
  remat: bool = False  # recompute each block's activations (layers.remat)
  scan: bool = False  # repeated blocks as one scanned layer (models.scan)
  num_classes: int = 1000
  dtype: object = jnp.float32

  min_resolution: ClassVar[int] = 32

  @property
  def default_resolution(self) -> int:
    return self.resolution

  def _block(self, stage: int, kind: str):
    """The block class of a stage's type and its type-specific fields."""
    if kind == 'ir':
      block, extra = layers.InvertedResidual, dict(
          depthwise_impl=self.depthwise_impl)
    elif kind == 'fr':
      block, extra = layers.FusedInvertedResidual, {}
    else:
      raise ValueError(f'efficientnet: stage {stage + 1} has block type '
                       f"{kind!r}; only 'ir' (MBConv) and 'fr' (Fused-MBConv) "
                       'are built')
    return (layers.remat(block) if self.remat else block), extra

  def _head_width(self) -> int:
    head = layers.round_filters(self.head_width * self.width,
                                min_ratio=self.round_min_ratio)
    return max(head, self.head_width) if self.head_never_shrinks else head

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='efficientnet', min_resolution=self.min_resolution,
                stride=32)
    positive(self.width, 'width', 'efficientnet')
    positive(self.depth, 'depth', 'efficientnet')
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    features = {}
    stem = layers.round_filters(self.stem_width * self.width,
                                min_ratio=self.round_min_ratio)
    x = layers.ConvBN(stem, 3, 2, act=self.act, padding=self.padding,
                      name='stem', **bn)(x.astype(self.dtype), train=train)
    features['stem'] = x
    scaled = stages(self)
    total = sum(s.repeats for s in scaled)
    index = 0
    for i, spec in enumerate(scaled):
      block, extra = self._block(i, spec.kind)
      x = scan.stage(
          block, dict(features=spec.channels, kernel_size=spec.kernel,
                      expansion=spec.expansion, se_ratio=spec.se_ratio,
                      act=self.act, padding=self.padding, **extra, **bn),
          spec.repeats, x, train=train, name=f'stage{i + 1}',
          scan=self.scan, first=dict(strides=spec.stride),
          rates=[self.drop_connect * (index + j) / total
                 for j in range(spec.repeats)])
      index += spec.repeats
      features[f'stage{i + 1}'] = x
    x = layers.ConvBN(self._head_width(), 1, act=self.act, name='head_conv',
                      **bn)(x, train=train)
    features['head_conv'] = x
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, self.dropout, self.dtype,
                      name='head')(x, train=train), features


MOBILENET_V2_FIELDS = dict(
    blocks=MOBILENET_V2, act='relu6', dropout=0.0, drop_connect=0.0,
    head_never_shrinks=True, bn_momentum=0.999, bn_epsilon=1e-3)


def efficientnet_fields(name: str) -> dict:
  """The constructor fields of one row of the B0–B7 table."""
  width, depth, resolution, dropout = EFFICIENTNET[name]
  return dict(width=width, depth=depth, resolution=resolution,
              dropout=dropout)


def stages(model) -> list[blocks.StageSpec]:
  """The stages of an ``EfficientNet`` module, scaled by its fields."""
  return blocks.scale_stages(model.blocks, width=model.width, depth=model.depth,
                             min_ratio=model.round_min_ratio)


def keras_rules(model) -> list[spec.Rule]:
  """Keras ``EfficientNetB0``…``B7`` (blocks ``block{stage}{letter}_``)."""
  rules = [spec.Rule('normalization', 'normalization', '', auto_named=True),
           *spec.conv_bn('stem_conv', 'stem_bn', 'stem')]
  for i, stage in enumerate(stages(model)):
    for j in range(stage.repeats):
      k, d = f'block{i + 1}{chr(ord("a") + j)}_', f'stage{i + 1}_block{j + 1}'
      if stage.expansion != 1:
        rules += spec.conv_bn(k + 'expand_conv', k + 'expand_bn', d + '/expand')
      rules += spec.conv_bn(k + 'dwconv', k + 'bn', d + '/depthwise',
                            'depthwise')
      if stage.se_ratio:
        rules += [spec.Rule('conv', k + 'se_reduce', d + '/se/reduce'),
                  spec.Rule('conv', k + 'se_expand', d + '/se/expand')]
      rules += spec.conv_bn(k + 'project_conv', k + 'project_bn',
                            d + '/project')
  return [*rules, *spec.conv_bn('top_conv', 'top_bn', 'head_conv'),
          spec.Rule('dense', 'predictions', 'head/dense')]


def mobilenet_v2_keras_rules(model) -> list[spec.Rule]:
  """Keras ``MobileNetV2`` (blocks numbered globally: ``expanded_conv_``,
  then ``block_1_`` … ``block_16_``)."""
  rules = spec.conv_bn('Conv1', 'bn_Conv1', 'stem')
  index = 0
  for i, stage in enumerate(stages(model)):
    for j in range(stage.repeats):
      k = f'block_{index}_' if index else 'expanded_conv_'
      d = f'stage{i + 1}_block{j + 1}'
      if stage.expansion != 1:
        rules += spec.conv_bn(k + 'expand', k + 'expand_BN', d + '/expand')
      rules += spec.conv_bn(k + 'depthwise', k + 'depthwise_BN',
                            d + '/depthwise', 'depthwise')
      rules += spec.conv_bn(k + 'project', k + 'project_BN', d + '/project')
      index += 1
  return [*rules, *spec.conv_bn('Conv_1', 'Conv_1_bn', 'head_conv'),
          spec.Rule('dense', 'predictions', 'head/dense')]


# Keras's BatchNorm epsilon and TensorFlow SAME padding.
TF_BATCHNORM = dict(bn_epsilon=1e-3, padding='same')
# The CPU proxy: three MBConv stages of two blocks with strides 1, 2, 2
# after the stride-2 stem, so a 32x32 image ends on a 4x4 map; at two
# blocks per stage every depth step of a 0.2 grid changes the network.
# BatchNorm momentum 0.9: with 0.99 the running statistics of a short run
# lag the weights and evaluation falls to chance.
PROXY_BLOCKS = ('ir_r2_k3_s1_e1_c16_se0.25', 'ir_r2_k3_s2_e4_c24_se0.25',
                'ir_r2_k3_s2_e4_c40_se0.25')
SCALING = spec.Scaling(
    'efficientnet', 'depth multiplies the repeats of each of the seven '
    'block-string stages (rounded up); width multiplies the stem, every '
    "stage and the head (multiple of 8): the TF reference's own rule",
    proxy=dict(blocks=PROXY_BLOCKS, stem_width=16, head_width=128,
               resolution=32, dropout=0.0, drop_connect=0.0, bn_momentum=0.9))
# MACs of the TF reference code; the paper's B4/B5 sit ~4% below every count
# made from it ("may differ ... due to rounding"; dvl.reference).
REFERENCE_MACS_M = dict(efficientnet_b0=386, efficientnet_b1=687,
                        efficientnet_b2=994, efficientnet_b3=1_827,
                        efficientnet_b4=4_394, efficientnet_b5=10_266,
                        efficientnet_b6=19_068, efficientnet_b7=37_746)
# Activations (M, pycls convention) at these resolutions: pycls's MODEL_ZOO
# rounds them to 0.1 M; these are the exact counts (REFERENCE.md).
REFERENCE_ACTIVATIONS_M = dict(efficientnet_b0=6.75, efficientnet_b1=10.88,
                               efficientnet_b2=13.83, efficientnet_b3=23.83)
REFERENCE_PARAMS = dict(efficientnet_b0=5_288_548, efficientnet_b1=7_794_184,
                        efficientnet_b2=9_109_994, efficientnet_b3=12_233_232,
                        efficientnet_b4=19_341_616, efficientnet_b5=30_389_784,
                        efficientnet_b6=43_040_704, efficientnet_b7=66_347_960)

SPECS = (
    spec.ModelSpec(
        'mobilenet_v2', EfficientNet, MOBILENET_V2_FIELDS,
        scaling=spec.Scaling(
            'mobilenet_v2', 'depth multiplies the repeats of each of the '
            'seven block-string stages (rounded up); width multiplies the stem '
            'and every stage (multiple of 8), the 1280 head grows but never '
            'shrinks',
            proxy=dict(width=0.35, dropout=0.0, drop_connect=0.0,
                       bn_momentum=0.9)),
        reference=spec.Reference(3_504_872, 300, 'paper / Keras'),
        keras=spec.Keras('MobileNetV2', mobilenet_v2_keras_rules, 'tf',
                         TF_BATCHNORM, alpha=True),
        remat=True),
    # B0 under the family's name: the base the scaling search scales.
    spec.ModelSpec('efficientnet', EfficientNet, resize='bicubic',
                   scaling=SCALING,
                   keras=spec.Keras('EfficientNet', keras_rules, 'in_model',
                                    TF_BATCHNORM, peer=False),
                   remat=True),
    *(spec.ModelSpec(
        name, EfficientNet, efficientnet_fields(name),
        resolution=EFFICIENTNET[name][2], resize='bicubic', scaling=SCALING,
        reference=spec.Reference(REFERENCE_PARAMS[name],
                                 REFERENCE_MACS_M[name], 'TF reference code',
                                 activations_m=REFERENCE_ACTIVATIONS_M.get(
                                     name)),
        keras=spec.Keras(f'EfficientNetB{name[-1]}', keras_rules, 'in_model',
                         TF_BATCHNORM),
        remat=True)
      for name in EFFICIENTNET),
)
