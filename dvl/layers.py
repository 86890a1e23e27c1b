"""Building blocks shared by every dvl model.

Every block follows the model contract: a Flax linen module whose
``__call__(x, *, train)`` takes NHWC input. Blocks compute in ``dtype`` (bf16
on accelerators) and keep their parameters in float32.

Padding is named, not implied: ``'same'`` is TensorFlow's SAME (for stride 2
on an even input it pads one more pixel after than before), the convention of
the TF reference EfficientNet and MobileNets; ``'symmetric'`` pads
``dilation * (k - 1) // 2`` on both sides, the torchvision convention of
ResNet, VGG and GoogLeNet. Both give the same output size.
"""

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvl.lowering import (DEPTHWISE_IMPLS, batch_norm_train,
                          conv_general_dilated, default_depthwise_impl,
                          max_pool_shifted, shifted_max_pool)

Dtype = Any

def _differentiated_from_output(fn, passes):
  """``fn`` with a custom gradient that reads its output: ``dy`` where
  ``passes(y)``, else 0. The backward pass then keeps the activation, which
  the next layer keeps anyway, not its input (on CPU XLA otherwise stores
  BatchNorm's output and the activation separately, one more pass over the
  batch per layer)."""
  @jax.custom_vjp
  def activation(x):
    return fn(x)

  def forward(x):
    y = fn(x)
    return y, y

  def backward(y, dy):
    return (jnp.where(passes(y), dy, 0),)

  activation.defvjp(forward, backward)
  return activation


# Same values and gradients as nn.relu and nn.relu6 (0 at the kinks).
relu = _differentiated_from_output(lambda x: jnp.maximum(x, 0),
                                   lambda y: y > 0)
relu6 = _differentiated_from_output(
    lambda x: jnp.minimum(jnp.maximum(x, 0), 6), lambda y: (y > 0) & (y < 6))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'sigmoid': nn.sigmoid,
    'tanh': jnp.tanh,
    'relu': relu,
    'leaky_relu': functools.partial(nn.leaky_relu, negative_slope=0.1),
    'relu6': relu6,
    'swish': nn.swish,
    'gelu': nn.gelu,
    'linear': lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation called ``name``; raises with the valid names."""
  if name not in ACTIVATIONS:
    raise ValueError(f'unknown activation {name!r}; choose one of: '
                     f'{", ".join(sorted(ACTIVATIONS))}')
  return ACTIVATIONS[name]


def round_filters(channels: float, divisor: int = 8,
                  min_ratio: float = 0.9) -> int:
  """Rounds a channel count to the nearest multiple of ``divisor``.

  The rule of the TF reference EfficientNet and MobileNetV2: never below
  ``divisor``, and one more step up when the rounded count fell below
  ``min_ratio`` of ``channels`` (lost more than 10%). EfficientNetV2's
  reference drops that step: ``min_ratio=0``.
  """
  rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
  if rounded < min_ratio * channels:
    rounded += divisor
  return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
  """Scales a stage's block count by ``depth``, rounding up (EfficientNet)."""
  return int(math.ceil(depth * repeats))


def explicit_padding(padding: str, kernel: Sequence[int],
                     dilation: Sequence[int] = (1, 1)):
  """Translates a named padding into what ``lax`` convolutions take."""
  if padding == 'same':
    return 'SAME'
  if padding == 'valid':
    return 'VALID'
  if padding == 'symmetric':
    return [((k - 1) * d // 2, (k - 1) * d // 2)
            for k, d in zip(kernel, dilation)]
  raise ValueError(f"unknown padding {padding!r}; choose 'same' (TensorFlow), "
                   "'symmetric' (torchvision) or 'valid'")


def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class DepthwiseConv(nn.Module):
  """Depthwise convolution (one filter per channel, multiplier 1).

  The kernel is stored as (kh, kw, 1, C), the layout of a grouped
  ``nn.Conv``; ``impl`` chooses the lowering (``None`` = fastest for the
  backend, see ``default_depthwise_impl``). MAC counting recognises it.
  """
  kernel_size: int | Sequence[int] = 3
  strides: int | Sequence[int] = 1
  dilation: int | Sequence[int] = 1
  padding: str = 'same'
  use_bias: bool = False
  impl: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel_size, strides = _pair(self.kernel_size), _pair(self.strides)
    dilation = _pair(self.dilation)
    impl = self.impl or default_depthwise_impl()
    if impl not in DEPTHWISE_IMPLS:
      raise ValueError(f'unknown depthwise impl {impl!r}; choose one of: '
                       f'{", ".join(DEPTHWISE_IMPLS)}')
    channels = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.variance_scaling(
        2.0, 'fan_out', 'normal', in_axis=-2, out_axis=-1),
                        (*kernel_size, 1, channels), jnp.float32)
    pads = explicit_padding(self.padding, kernel_size, dilation)
    y = DEPTHWISE_IMPLS[impl](x.astype(self.dtype), kernel.astype(self.dtype),
                              strides, pads, dilation)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (channels,),
                         jnp.float32).astype(self.dtype)
    return y


def remat(block_cls):
  """``block_cls`` with its activations recomputed in the backward pass
  (``nn.remat``, i.e. ``jax.checkpoint``, per block): training keeps only
  each block's input, the memory that fits EfficientNet-B7 at 600x600.

  Same parameter tree, outputs and gradients as ``block_cls``; called the
  same way, ``block(x, train=...)`` (remat needs ``train`` static, so it is
  passed on positionally inside).
  """
  class Positional(block_cls):
    def __call__(self, x, train):
      return super().__call__(x, train=train)

  lifted = nn.remat(Positional, static_argnums=(2,))

  class Keyword(lifted):
    def __call__(self, x, *, train: bool):
      return super().__call__(x, train)

  Keyword.__name__ = Keyword.__qualname__ = f'Remat{block_cls.__name__}'
  Keyword.rematerialised = True  # models.scan adds no second remat
  return Keyword


class BatchNorm(nn.Module):
  """BatchNorm over the last axis, with the variables of Flax's
  ``nn.BatchNorm`` (params ``scale``, ``bias``; ``batch_stats`` ``mean``,
  ``var``, all float32) and its results; training goes through
  ``lowering.batch_norm_train`` (a hand-written gradient on CPU)."""
  momentum: float = 0.9
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, use_running_average: bool):
    features = (x.shape[-1],)
    scale = self.param('scale', self.scale_init, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features,
                            jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features,
                           jnp.float32)
    if use_running_average:
      y = ((x.astype(jnp.float32) - ra_mean.value)
           * (scale * jax.lax.rsqrt(ra_var.value + self.epsilon)) + bias)
      return y.astype(self.dtype)
    y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = (self.momentum * ra_mean.value
                       + (1 - self.momentum) * mean)
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y.astype(self.dtype)


class Norm(nn.Module):
  """BatchNorm with the running statistics in ``batch_stats``."""
  momentum: float = 0.9
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    return BatchNorm(self.momentum, self.epsilon, self.scale_init,
                     self.dtype, name='bn')(x, use_running_average=not train)


class ConvBN(nn.Module):
  """Convolution, then BatchNorm (optional), then an activation.

  ``groups == -1`` makes it depthwise (``DepthwiseConv``). The convolution
  carries a bias when ``use_bias`` says so, by default only without
  BatchNorm (torchvision's VGG-BN keeps it: ``use_bias=True``).
  """
  features: int
  kernel_size: int | Sequence[int] = 3
  strides: int | Sequence[int] = 1
  groups: int = 1
  act: str | None = 'relu'
  padding: str = 'same'
  batch_norm: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  zero_init_bn: bool = False
  use_bias: bool | None = None
  depthwise_impl: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    kernel_size = _pair(self.kernel_size)
    use_bias = (not self.batch_norm) if self.use_bias is None else self.use_bias
    if self.groups == -1:
      x = DepthwiseConv(kernel_size, self.strides, padding=self.padding,
                        use_bias=use_bias, impl=self.depthwise_impl,
                        dtype=self.dtype, name='conv')(x)
    else:
      x = nn.Conv(self.features, kernel_size, _pair(self.strides),
                  padding=explicit_padding(self.padding, kernel_size),
                  feature_group_count=self.groups,
                  use_bias=use_bias, dtype=self.dtype,
                  kernel_init=nn.initializers.variance_scaling(
                      2.0, 'fan_out', 'normal'),
                  conv_general_dilated=conv_general_dilated, name='conv')(x)
    if self.batch_norm:
      x = Norm(self.bn_momentum, self.bn_epsilon, dtype=self.dtype,
               scale_init=(nn.initializers.zeros if self.zero_init_bn
                           else nn.initializers.ones), name='norm')(
                               x, train=train)
    return x if self.act is None else get_activation(self.act)(x)


class UpConv(nn.Module):
  """Transposed convolution whose kernel equals its stride (U-Net's 2×2
  up-convolution): each input pixel becomes a ``stride``×``stride`` patch,
  with no overlap, so it is one matmul and a depth-to-space reshape.

  Same result and parameters (``kernel`` of shape (s, s, C, features),
  ``bias``) as ``nn.ConvTranspose(features, (s, s), (s, s), 'VALID')``,
  which applies the kernel flipped in space. Written this way because XLA
  on CPU runs the gradient of the transposed convolution 5-15 times slower
  than this matmul.
  """
  features: int
  stride: int = 2
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    s, (b, h, w, c) = self.stride, x.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (s, s, c, self.features))
    y = jnp.einsum('bhwc,ijco->bhiwjo', x.astype(self.dtype),
                   kernel[::-1, ::-1].astype(self.dtype))
    y = y.reshape(b, h * s, w * s, self.features)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,))
      y = y + bias.astype(self.dtype)
    return y


class SeparableConv(nn.Module):
  """Depthwise-separable convolution (Howard et al. 2017, MobileNets, Fig. 3).

  A depthwise ``k×k`` convolution then a 1×1 pointwise one, each followed by
  BatchNorm and the activation.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  act: str = 'relu6'
  padding: str = 'same'
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  depthwise_impl: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype, act=self.act)
    x = ConvBN(x.shape[-1], self.kernel_size, self.strides, groups=-1,
               padding=self.padding, depthwise_impl=self.depthwise_impl,
               name='depthwise', **bn)(x, train=train)
    return ConvBN(self.features, 1, name='pointwise', **bn)(x, train=train)


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al. 2018): channel gates from a
  global-average-pooled bottleneck of ``reduced`` channels."""
  reduced: int
  act: str = 'swish'
  gate: str = 'sigmoid'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.Conv(self.reduced, (1, 1), dtype=self.dtype,
                conv_general_dilated=conv_general_dilated, name='reduce')(s)
    s = get_activation(self.act)(s)
    s = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype,
                conv_general_dilated=conv_general_dilated, name='expand')(s)
    return x * get_activation(self.gate)(s)


class DropPath(nn.Module):
  """Stochastic depth / drop-connect (Huang et al. 2016) on a residual branch.

  In training each example's branch is zeroed with probability ``rate`` and
  the survivors are divided by ``1 - rate``; in evaluation it is the
  identity. Draws from the ``'dropout'`` RNG stream. ``rate`` may be traced
  (a scanned stage's per-block input); a traced 0 keeps every example.
  """
  rate: float | jax.Array

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not train or (isinstance(self.rate, float | int) and self.rate == 0.0):
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep,
                                (x.shape[0],) + (1,) * (x.ndim - 1))
    # In x's dtype: a traced float32 rate would otherwise promote a
    # bfloat16 branch (and a scanned stage's carry) to float32.
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


class InvertedResidual(nn.Module):
  """MBConv (Sandler et al. 2018; Tan & Le 2019): 1×1 expansion, depthwise
  ``k×k``, optional squeeze-and-excitation, linear 1×1 projection, and a
  residual with drop-connect when the shapes allow it.

  With ``expansion == 1`` the expansion convolution is left out, as in the
  first block of MobileNetV2 and EfficientNet. ``se_ratio`` is taken of the
  block's *input* channels (TF reference).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  expansion: float = 6
  se_ratio: float = 0.0
  drop_path: float = 0.0
  act: str = 'swish'
  padding: str = 'same'
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  depthwise_impl: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    in_ch = x.shape[-1]
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    y = x
    hidden = int(round(in_ch * self.expansion))
    if self.expansion != 1:
      y = ConvBN(hidden, 1, act=self.act, name='expand', **bn)(y, train=train)
    y = ConvBN(hidden, self.kernel_size, self.strides, groups=-1, act=self.act,
               padding=self.padding, depthwise_impl=self.depthwise_impl,
               name='depthwise', **bn)(y, train=train)
    if self.se_ratio > 0:
      y = SqueezeExcite(max(1, int(in_ch * self.se_ratio)), act=self.act,
                        dtype=self.dtype, name='se')(y)
    y = ConvBN(self.features, 1, act=None, name='project', **bn)(y, train=train)
    if self.strides == 1 and in_ch == self.features:
      y = DropPath(self.drop_path, name='drop_path')(y, train=train) + x
    return y


class FusedInvertedResidual(nn.Module):
  """Fused-MBConv (Tan & Le 2021, "EfficientNetV2", Figure 2): MBConv with
  its 1×1 expansion and depthwise ``k×k`` fused into one ``k×k``
  convolution, then optional squeeze-and-excitation, a linear 1×1
  projection, and the residual with drop-connect when the shapes allow it.

  With ``expansion == 1`` the block is a single ``k×k`` convolution with
  BatchNorm and activation (named ``project``, as in the reference), plus
  the residual. ``se_ratio`` is taken of the block's input channels.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  expansion: float = 4
  se_ratio: float = 0.0
  drop_path: float = 0.0
  act: str = 'swish'
  padding: str = 'same'
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    in_ch = x.shape[-1]
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              padding=self.padding, dtype=self.dtype)
    fused = self.expansion != 1
    y = x
    if fused:
      y = ConvBN(int(round(in_ch * self.expansion)), self.kernel_size,
                 self.strides, act=self.act, name='expand', **bn)(
                     y, train=train)
    if self.se_ratio > 0:
      y = SqueezeExcite(max(1, int(in_ch * self.se_ratio)), act=self.act,
                        dtype=self.dtype, name='se')(y)
    y = ConvBN(self.features, 1 if fused else self.kernel_size,
               1 if fused else self.strides, act=None if fused else self.act,
               name='project', **bn)(y, train=train)
    if self.strides == 1 and in_ch == self.features:
      y = DropPath(self.drop_path, name='drop_path')(y, train=train) + x
    return y


def max_pool(x, window: int, strides: int, padding: str = 'symmetric'):
  """Max pooling over a ``window×window`` NHWC window (on CPU as shifted
  maxima, ``lowering.max_pool_shifted``; the values and gradients of
  ``nn.max_pool``)."""
  pads = explicit_padding(padding, (window, window))
  if not isinstance(pads, str):
    pads = tuple(pads)
  if shifted_max_pool():
    return max_pool_shifted(x, (window, window), (strides, strides), pads)
  return nn.max_pool(x, (window, window), (strides, strides), pads)


def avg_pool(x, window: int, strides: int, padding: str = 'valid'):
  """Average pooling over a ``window×window`` NHWC window."""
  pads = explicit_padding(padding, (window, window))
  if not isinstance(pads, str):
    pads = tuple(pads)
  return nn.avg_pool(x, (window, window), (strides, strides), pads)


def global_avg_pool(x):
  """Mean over the spatial axes: (N, H, W, C) -> (N, C)."""
  return jnp.mean(x, axis=(1, 2))


def adaptive_avg_pool(x, size: int):
  """Averages an NHWC map into ``size×size`` bins (torchvision's
  ``AdaptiveAvgPool2d``): bin ``i`` covers rows ``floor(i·H/size)`` to
  ``ceil((i+1)·H/size)``; maps smaller than ``size`` are repeated."""
  h, w = x.shape[1:3]
  if (h, w) == (size, size):
    return x

  def bins(n):
    return [(i * n // size, -(-(i + 1) * n // size)) for i in range(size)]

  rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(h)]
  x = jnp.stack(rows, axis=1)
  cols = [jnp.mean(x[:, :, a:b], axis=2) for a, b in bins(w)]
  return jnp.stack(cols, axis=2)
