"""MobileNetV1 (Howard et al. 2017, "MobileNets: Efficient convolutional
neural networks for mobile vision applications", Table 1).

A 3×3 stride-2 stem and thirteen depthwise-separable blocks. ``width`` is the
width multiplier α and ``resolution_multiplier`` the resolution multiplier ρ
(the input side is ``224·ρ``), the paper's two knobs (Tables 6 and 7).
``separable=False`` builds the full-convolution MobileNet the paper compares
against (Table 4). Layout of the TF reference (Keras ``MobileNet``): ReLU6,
BatchNorm after every convolution, a 1×1 convolution as classifier.

Scaling semantics (``dvl.scaling``): the blocks are grouped into five stages
by output width (64, 128, 256, 512, 1024: 1, 2, 2, 6, 2 blocks); ``depth``
multiplies each stage's block count (rounded up); ``width`` is α.
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import blocks
from dvl.models import scan
from dvl.models import spec
from dvl.models.common import Classifier, check_input, positive

BLOCKS = ('ds_r1_k3_s1_c64', 'ds_r2_k3_s2_c128', 'ds_r2_k3_s2_c256',
          'ds_r6_k3_s2_c512', 'ds_r2_k3_s2_c1024')


class MobileNetV1(nn.Module):
  """MobileNetV1 with width multiplier α (``width``) and resolution ρ."""
  blocks: Sequence[str] = BLOCKS
  width: float = 1.0
  depth: float = 1.0
  resolution_multiplier: float = 1.0
  stem_width: int = 32
  separable: bool = True
  act: str = 'relu6'
  bn_momentum: float = 0.99
  dropout: float = 1e-3
  padding: str = 'same'
  depthwise_impl: str | None = None
  scan: bool = False  # repeated blocks as one scanned layer (models.scan)
  num_classes: int = 1000
  dtype: object = jnp.float32

  min_resolution: ClassVar[int] = 32

  @property
  def default_resolution(self) -> int:
    return int(round(224 * self.resolution_multiplier))

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='mobilenet_v1', min_resolution=self.min_resolution,
                stride=32)
    positive(self.width, 'width', 'mobilenet_v1')
    positive(self.depth, 'depth', 'mobilenet_v1')
    bn = dict(act=self.act, padding=self.padding, bn_momentum=self.bn_momentum,
              bn_epsilon=1e-3, dtype=self.dtype)
    features = {}
    x = layers.ConvBN(layers.round_filters(self.stem_width * self.width), 3, 2,
                      name='stem', **bn)(x.astype(self.dtype), train=train)
    features['stem'] = x
    stages = blocks.scale_stages(self.blocks, width=self.width, depth=self.depth)
    for i, spec in enumerate(stages):
      block, fields = layers.ConvBN, bn
      if self.separable:
        block, fields = layers.SeparableConv, dict(
            act=self.act, padding=self.padding, bn_momentum=self.bn_momentum,
            bn_epsilon=1e-3, depthwise_impl=self.depthwise_impl,
            dtype=self.dtype)
      x = scan.stage(
          block, dict(features=spec.channels, kernel_size=spec.kernel,
                      strides=1, **fields),
          spec.repeats, x, train=train, name=f'stage{i + 1}', scan=self.scan,
          first=dict(strides=spec.stride))
      features[f'stage{i + 1}'] = x
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, self.dropout, self.dtype,
                      name='head')(x, train=train), features


def keras_rules(model) -> list[spec.Rule]:
  """Keras ``MobileNet`` (``conv_dw_{n}`` / ``conv_pw_{n}``, n = 1…13, and
  the 1×1 convolution classifier ``conv_preds``)."""
  if not model.separable:
    raise ValueError('Keras has no full-convolution MobileNet; import into '
                     'mobilenet_v1 with separable=True')
  rules = spec.conv_bn('conv1', 'conv1_bn', 'stem')
  index = 1
  stages = blocks.scale_stages(model.blocks, width=model.width,
                               depth=model.depth)
  for i, stage in enumerate(stages):
    for j in range(stage.repeats):
      d = f'stage{i + 1}_block{j + 1}'
      rules += spec.conv_bn(f'conv_dw_{index}', f'conv_dw_{index}_bn',
                            d + '/depthwise', 'depthwise')
      rules += spec.conv_bn(f'conv_pw_{index}', f'conv_pw_{index}_bn',
                            d + '/pointwise')
      index += 1
  return [*rules, spec.Rule('conv_dense', 'conv_preds', 'head/dense')]


SPECS = (
    spec.ModelSpec(
        'mobilenet_v1', MobileNetV1,
        scaling=spec.Scaling(
            'mobilenet_v1', 'depth multiplies the block count of each of the '
            'five width stages 64/128/256/512/1024 (1, 2, 2, 6, 2 blocks; '
            'rounded up); width is the multiplier alpha on every layer '
            '(multiple of 8)',
            # Width 0.25 with the last two stages at stride 1: a 32x32
            # input ends on a 4x4 map, not ImageNet's 1x1.
            proxy=dict(blocks=('ds_r1_k3_s1_c64', 'ds_r2_k3_s2_c128',
                               'ds_r2_k3_s2_c256', 'ds_r6_k3_s1_c512',
                               'ds_r2_k3_s1_c1024'),
                       width=0.25, dropout=0.0, bn_momentum=0.9)),
        reference=spec.Reference(4_231_976, 569, 'paper Table 6 / Keras'),
        # MobileNetV1's BatchNorm epsilon is fixed at Keras's 1e-3.
        keras=spec.Keras('MobileNet', keras_rules, 'tf',
                         dict(padding='same'), alpha=True)),
)
