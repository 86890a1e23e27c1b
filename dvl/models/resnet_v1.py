"""ResNet v1 (He et al. 2016, "Deep residual learning for image recognition",
Table 1 and Fig. 5), in the layout of Keras's ``ResNet50``: the stride of a
downsampling bottleneck sits in its *first* 1×1 convolution, where ResNet
v1.5 (``dvl.models.resnet``, torchvision's layout) puts it in the 3×3.

Both have the same parameters (ResNet-50: 25,557,032) but compute different
functions, so weights do not carry over between them. Keras's convolutions
carry a bias before every BatchNorm; here they do not: the importer folds
each bias into the following BatchNorm's moving mean, which is exact
(``BN(conv(x) + b)`` with mean ``m`` equals ``BN(conv(x))`` with mean
``m - b``). BatchNorm epsilon is Keras's 1.001e-5. Padding is symmetric:
Keras's ``ZeroPadding2D(3)`` + 7×7 valid stem convolution is the same
computation, and so is its ``ZeroPadding2D(1)`` + 3×3/2 max pooling, because
the pooled map comes out of a ReLU (zeros never exceed it).

Scaling semantics (``dvl.scaling``) as for ResNet v1.5: ``depth`` multiplies
each stage's block count (rounded up), ``width`` every channel count
(rounded to a multiple of 8).
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models.common import Classifier, check_input, positive

# Registry name: blocks per stage (Keras applications' ResNet50).
STAGES = {
    'resnet50_v1': (3, 4, 6, 3),
}


class BottleneckV1(nn.Module):
  """1×1 (strided), 3×3, 1×1 ×4, and a projection shortcut when the shape
  changes."""
  width: int
  strides: int
  zero_init_residual: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1.001e-5
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = dict(padding='symmetric', bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon, dtype=self.dtype)
    out = self.width * 4
    y = layers.ConvBN(self.width, 1, self.strides, name='conv1', **conv)(
        x, train=train)
    y = layers.ConvBN(self.width, 3, name='conv2', **conv)(y, train=train)
    y = layers.ConvBN(out, 1, act=None, zero_init_bn=self.zero_init_residual,
                      name='conv3', **conv)(y, train=train)
    if x.shape[-1] != out or self.strides != 1:
      x = layers.ConvBN(out, 1, self.strides, act=None, name='downsample',
                        **conv)(x, train=train)
    return layers.relu(x + y)


class ResNetV1(nn.Module):
  """ResNet-50/101/152 v1: a 7×7 stem, max pooling, four bottleneck stages."""
  stage_sizes: Sequence[int] = STAGES['resnet50_v1']
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256, 512)
  width: float = 1.0
  depth: float = 1.0
  zero_init_residual: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1.001e-5
  num_classes: int = 1000
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224
  min_resolution: ClassVar[int] = 32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='resnet_v1', min_resolution=self.min_resolution,
                stride=32)
    positive(self.width, 'width', 'resnet_v1')
    positive(self.depth, 'depth', 'resnet_v1')
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    features = {}
    x = layers.ConvBN(layers.round_filters(self.stem_width * self.width), 7, 2,
                      padding='symmetric', name='stem', **bn)(
                          x.astype(self.dtype), train=train)
    features['stem'] = x
    x = layers.max_pool(x, 3, 2, padding='symmetric')
    for i, (n, c) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(layers.round_repeats(n, self.depth)):
        x = BottleneckV1(layers.round_filters(c * self.width),
                         2 if i > 0 and j == 0 else 1,
                         self.zero_init_residual,
                         name=f'stage{i + 1}_block{j + 1}', **bn)(
                             x, train=train)
      features[f'stage{i + 1}'] = x
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features
