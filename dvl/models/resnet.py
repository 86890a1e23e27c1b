"""ResNet v1.5 (He et al. 2016, "Deep residual learning for image
recognition", Table 1), with the stride of a downsampling bottleneck in its
3×3 convolution (torchvision's layout: ResNet-50 has 25,557,032 parameters).

Scaling semantics (``dvl.scaling``): ``depth`` multiplies the block count of
each of the four stages (rounded up: ResNet-50's [3, 4, 6, 3] at depth 2 is
[6, 8, 12, 6]); ``width`` multiplies every channel count, the stem's, the
bottlenecks' inner and outer widths (each rounded to a multiple of 8).
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models.common import Classifier, check_input, positive

STAGES = {
    'resnet18': ((2, 2, 2, 2), 'basic'),
    'resnet34': ((3, 4, 6, 3), 'basic'),
    'resnet50': ((3, 4, 6, 3), 'bottleneck'),
    'resnet101': ((3, 4, 23, 3), 'bottleneck'),
    'resnet152': ((3, 8, 36, 3), 'bottleneck'),
}


class ResidualBlock(nn.Module):
  """A basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4) residual block."""
  width: int
  strides: int
  kind: str
  zero_init_residual: bool = True
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = dict(padding='symmetric', dtype=self.dtype)
    if self.kind == 'basic':
      out = self.width
      y = layers.ConvBN(out, 3, self.strides, name='conv1', **conv)(x, train=train)
      y = layers.ConvBN(out, 3, act=None, zero_init_bn=self.zero_init_residual,
                        name='conv2', **conv)(y, train=train)
    else:
      out = self.width * 4
      y = layers.ConvBN(self.width, 1, name='conv1', **conv)(x, train=train)
      y = layers.ConvBN(self.width, 3, self.strides, name='conv2', **conv)(
          y, train=train)
      y = layers.ConvBN(out, 1, act=None, zero_init_bn=self.zero_init_residual,
                        name='conv3', **conv)(y, train=train)
    if x.shape[-1] != out or self.strides != 1:
      x = layers.ConvBN(out, 1, self.strides, act=None, name='downsample',
                        **conv)(x, train=train)
    return layers.relu(x + y)


class ResNet(nn.Module):
  """ResNet-18…152: a 7×7 stem, max pooling and four residual stages."""
  stage_sizes: Sequence[int] = STAGES['resnet50'][0]
  block: str = 'bottleneck'
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256, 512)
  width: float = 1.0
  depth: float = 1.0
  zero_init_residual: bool = True
  remat: bool = False  # recompute each block's activations (layers.remat)
  num_classes: int = 1000
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224
  min_resolution: ClassVar[int] = 32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='resnet', min_resolution=self.min_resolution,
                stride=32)
    positive(self.width, 'width', 'resnet')
    positive(self.depth, 'depth', 'resnet')
    if self.block not in ('basic', 'bottleneck'):
      raise ValueError(f"resnet: block must be 'basic' or 'bottleneck'; got "
                       f'{self.block!r}')
    features = {}
    x = layers.ConvBN(layers.round_filters(self.stem_width * self.width), 7, 2,
                      padding='symmetric', dtype=self.dtype, name='stem')(
                          x.astype(self.dtype), train=train)
    features['stem'] = x
    x = layers.max_pool(x, 3, 2, padding='symmetric')
    block = layers.remat(ResidualBlock) if self.remat else ResidualBlock
    for i, (n, c) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(layers.round_repeats(n, self.depth)):
        x = block(layers.round_filters(c * self.width),
                  2 if i > 0 and j == 0 else 1, self.block,
                  self.zero_init_residual, self.dtype,
                  name=f'stage{i + 1}_block{j + 1}')(x, train=train)
      features[f'stage{i + 1}'] = x
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features
