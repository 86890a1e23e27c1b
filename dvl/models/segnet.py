"""SegNet (Badrinarayanan, Kendall & Cipolla 2017, "SegNet: a deep
convolutional encoder-decoder architecture for image segmentation", Fig. 2
and Fig. 3).

The encoder is VGG-16's 13 convolutions (each with BatchNorm and ReLU) in
five stages, each closed by 2×2 max pooling that records where each maximum
came from. The decoder mirrors it: every stage first *max-unpools* with the
indices of its encoder stage, putting each value back where its maximum was
and zeros elsewhere (no learned upsampling), then convolves the sparse map;
the last convolution of a decoder stage narrows to the next stage's width.
A 1×1 convolution (the paper's "trainable soft-max classifier") gives the
class scores. Input sides must be divisible by ``2**len(stage_sizes)``.
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec
from dvl.models.unet import check_divisible


def max_pool_with_indices(x):
  """2×2, stride-2 max pooling of NHWC ``x`` that also returns the argmax.

  Returns ``(pooled [N, H/2, W/2, C], indices [N, H/2, W/2, C])``; an index is
  the flat position ``row · W + col`` of the maximum in its input channel
  plane (PyTorch's convention). Ties go to the first position in row-major
  order. Differentiable in ``x``: the gradient goes to the maxima.
  """
  n, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f'max_pool_with_indices needs even sides; got {h}x{w}')
  windows = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
  windows = windows.reshape(n, h // 2, w // 2, c, 4)
  local = jnp.argmax(windows, axis=-1)
  pooled = jnp.take_along_axis(windows, local[..., None], axis=-1)[..., 0]
  rows = 2 * jnp.arange(h // 2)[:, None, None] + local // 2
  cols = 2 * jnp.arange(w // 2)[None, :, None] + local % 2
  return pooled, (rows * w + cols).astype(jnp.int32)


def max_unpool(x, indices, *, output_hw=None):
  """The inverse placement of ``max_pool_with_indices``: each value of ``x``
  goes to the position ``indices`` recorded in its 2×2 window, zeros fill
  the rest. ``output_hw`` defaults to twice the input sides. Differentiable
  in ``x``."""
  n, h, w, c = x.shape
  out_h, out_w = output_hw or (2 * h, 2 * w)
  if (out_h // 2, out_w // 2) != (h, w):
    raise ValueError(f'max_unpool: a {h}x{w} map unpools to '
                     f'{2 * h}x{2 * w}, not {out_h}x{out_w}')
  local = (indices // out_w % 2) * 2 + indices % out_w % 2
  spread = jax.nn.one_hot(local, 4, dtype=x.dtype) * x[..., None]
  spread = spread.reshape(n, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
  return spread.reshape(n, out_h, out_w, c)


class SegNet(nn.Module):
  """SegNet; ``stage_sizes`` and ``widths`` default to VGG-16's, and
  ``width`` multiplies the widths (rounded to a multiple of 8).

  Features: ``stage1``…``stage5`` (encoder, before pooling),
  ``decoder5``…``decoder1`` and ``pre_logits``.
  """
  num_classes: int = 11
  stage_sizes: Sequence[int] = (2, 2, 3, 3, 3)
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  width: float = 1.0
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224

  @nn.compact
  def __call__(self, x, *, train: bool):
    depth = len(self.stage_sizes)
    check_divisible(x, factor=2 ** depth, depth=depth, model='segnet')
    widths = [layers.round_filters(c * self.width) for c in self.widths]
    conv = dict(padding='symmetric', dtype=self.dtype)
    x = x.astype(self.dtype)
    features, pools = {}, []
    for i, (n, c) in enumerate(zip(self.stage_sizes, widths)):
      for j in range(n):
        x = layers.ConvBN(c, 3, name=f'stage{i + 1}_conv{j + 1}', **conv)(
            x, train=train)
      features[f'stage{i + 1}'] = x
      x, indices = max_pool_with_indices(x)
      pools.append(indices)
    for i in reversed(range(depth)):
      x = max_unpool(x, pools[i])
      for j in reversed(range(self.stage_sizes[i])):
        out = widths[max(i - 1, 0)] if j == 0 else widths[i]
        x = layers.ConvBN(out, 3, name=f'decoder{i + 1}_conv{j + 1}',
                          **conv)(x, train=train)
      features[f'decoder{i + 1}'] = x
    features['pre_logits'] = x
    return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype,
                   name='classifier')(x), features


SPECS = (spec.ModelSpec('segnet', SegNet, task='segmentation'),)
