"""U-Net (Ronneberger, Fischer & Brox 2015, "U-Net: convolutional networks
for biomedical image segmentation", Fig. 1).

A contracting path of ``depth`` levels (two 3×3 convolutions, then 2×2 max
pooling; the width doubles at every level from ``base_width``), a bottom
level, and an expanding path that mirrors it: a 2×2 up-convolution halving
the width, concatenation with the contracting path's map of the same level,
then two 3×3 convolutions. A final 1×1 convolution gives the class scores.

Differences from the paper: 'same' padding, so the output has the input's
size and no cropping is needed (the paper's unpadded convolutions shrink a
572×572 tile to 388×388); BatchNorm after each convolution (``batch_norm``,
on by default) for training from scratch. The input sides must be divisible
by ``2**depth``; other sizes raise a ValueError naming the nearest valid ones.
"""

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec


def check_divisible(x, *, factor: int, depth: int, model: str) -> None:
  """Raises a ValueError unless ``x`` is NHWC with sides divisible by
  ``factor`` (``2**depth`` for ``depth`` 2×2 poolings), naming the nearest
  valid sizes."""
  if x.ndim != 4:
    raise ValueError(f'{model} takes NHWC batches (4 axes); got shape '
                     f'{tuple(x.shape)}. Add a batch axis with x[None].')
  for side in x.shape[1:3]:
    if side % factor or side == 0:
      below = side // factor * factor
      sizes = ' or '.join(str(s) for s in (below, below + factor) if s > 0)
      raise ValueError(
          f'{model}: input size {x.shape[1]}x{x.shape[2]} does not work with '
          f'depth {depth}: each side must be divisible by 2**{depth} = '
          f'{factor}. Nearest valid sizes: {sizes}; resize or pad the input '
          '(config.input.resolution), or lower the depth.')


class DoubleConv(nn.Module):
  """Two 3×3 convolutions, each with BatchNorm (optional) and ReLU."""
  features: int
  batch_norm: bool = True
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    for i in range(2):
      x = layers.ConvBN(self.features, 3, padding='symmetric',
                        batch_norm=self.batch_norm, dtype=self.dtype,
                        name=f'conv{i + 1}')(x, train=train)
    return x


class UNet(nn.Module):
  """U-Net with ``depth`` poolings; widths ``base_width · 2**level``.

  Features: ``down1``…``down{depth}`` (the skip maps), ``bottom``,
  ``up{depth}``…``up1`` and ``pre_logits`` (= ``up1``).
  """
  num_classes: int = 2
  depth: int = 4
  base_width: int = 64
  batch_norm: bool = True
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 256

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.depth < 1 or self.base_width < 1:
      raise ValueError(f'unet: depth and base_width must be >= 1; got '
                       f'{self.depth}, {self.base_width}')
    check_divisible(x, factor=2 ** self.depth, depth=self.depth, model='unet')
    block = dict(batch_norm=self.batch_norm, dtype=self.dtype)
    x = x.astype(self.dtype)
    features, skips = {}, []
    for level in range(self.depth):
      x = DoubleConv(self.base_width * 2 ** level, name=f'down{level + 1}',
                     **block)(x, train=train)
      features[f'down{level + 1}'] = x
      skips.append(x)
      x = layers.max_pool(x, 2, 2, padding='valid')
    x = DoubleConv(self.base_width * 2 ** self.depth, name='bottom', **block)(
        x, train=train)
    features['bottom'] = x
    for level in reversed(range(self.depth)):
      width = self.base_width * 2 ** level
      x = layers.UpConv(width, 2, dtype=self.dtype,
                        name=f'upconv{level + 1}')(x)
      x = jnp.concatenate([skips[level], x], axis=-1)
      x = DoubleConv(width, name=f'up{level + 1}', **block)(x, train=train)
      features[f'up{level + 1}'] = x
    features['pre_logits'] = x
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype,
                   name='classifier')(x), features


SPECS = (spec.ModelSpec('unet', UNet, task='segmentation', resolution=256),)
