"""How dvl's convolutions and BatchNorm are lowered, chosen by backend.

On GPUs and TPUs XLA's convolutions (cuDNN on NVIDIA) are kept. On CPU some
run far below the machine's speed as XLA lowers them, and dvl computes the
same functions another way:

- a depthwise convolution (``feature_group_count`` = channels) becomes one
  shifted, strided multiply-add per kernel tap (``depthwise_conv2d_shifted``),
  with a hand-written backward pass (``_kernel_grad``, ``_input_grad``);
- a 1x1 convolution becomes a strided slice and one matrix product
  (``conv_general_dilated``, passed to ``nn.Conv``);
- a grouped convolution (more than one group, fewer than the channels)
  becomes one batched matrix product per kernel tap
  (``grouped_conv2d_taps``);
- a strided convolution takes its input gradient as one stride-1
  convolution per phase (``_phase_input_grad``) instead of a convolution
  of the stride-dilated gradient.

All give the results of ``lax.conv_general_dilated`` to float tolerance,
with the same parameter layouts, so checkpoints and MAC counts do not depend
on the backend. On CPU, too, max pooling is a maximum of shifted windows
(``max_pool_shifted``) and BatchNorm's training pass has a hand-written
gradient (``batch_norm_train``), and the remaining convolutions run on
XLA's own CPU kernels rather than YNNPACK's (``add_cpu_xla_flags``).
"""

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

# Batch slices summed inside one elementwise pass of the kernel gradient.
_MAX_UNROLL = 8

# XLA flags for the CPU backend. XLA hands convolutions to YNNPACK by
# default; its own convolutions measured faster for every dvl model that has
# them (alternating in one process: the ResNet-50 train step at batch 16 by
# 9%, its batch-1 inference by 10%, MobileNetV1's by 12% in a noisy run). The
# matrix products and reductions stay with YNNPACK: without them the
# ResNet-50 step is 26% slower.
CPU_XLA_FLAGS = (
    '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)


def add_cpu_xla_flags(environ=None) -> str:
  """Appends ``CPU_XLA_FLAGS`` to ``XLA_FLAGS`` in ``environ`` (default
  ``os.environ``), each one unless ``XLA_FLAGS`` already sets that flag (a
  user's own choice wins), and returns the new value.

  XLA reads ``XLA_FLAGS`` once, when JAX starts its first backend: call this
  before any computation, as ``launch.py`` does first thing. On GPUs and
  TPUs the flags change nothing.
  """
  environ = os.environ if environ is None else environ
  flags = environ.get('XLA_FLAGS', '').split()
  named = {flag.split('=')[0] for flag in flags}
  flags += [flag for flag in CPU_XLA_FLAGS if flag.split('=')[0] not in named]
  environ['XLA_FLAGS'] = ' '.join(flags)
  return environ['XLA_FLAGS']


def _resolve_pads(pads, in_hw, kernel, strides, dilation):
  """Explicit (lo, hi) pads per spatial axis for any named padding."""
  if not isinstance(pads, str):
    return tuple(tuple(p) for p in pads)
  if pads.upper() == 'VALID':
    return ((0, 0), (0, 0))
  out = []
  for size, k, s, d in zip(in_hw, kernel, strides, dilation):
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    out.append((total // 2, total - total // 2))
  return tuple(out)


def _taps(padded_hw, kernel_hw, strides, dilation):
  """``(i, j, starts, limits)`` of each kernel tap's strided window of the
  padded input (spatial axes only), and the output size."""
  (kh, kw), (sh, sw), (dh, dw) = kernel_hw, strides, dilation
  out_h = (padded_hw[0] - (kh - 1) * dh - 1) // sh + 1
  out_w = (padded_hw[1] - (kw - 1) * dw - 1) // sw + 1
  taps = []
  for i in range(kh):
    for j in range(kw):
      r0, c0 = i * dh, j * dw
      taps.append((i, j, (r0, c0),
                   (r0 + (out_h - 1) * sh + 1, c0 + (out_w - 1) * sw + 1)))
  return taps, (out_h, out_w)


def _window(xp, start, limit, strides, rows=None):
  """One tap's strided window of the padded NHWC input ``xp`` (optionally
  only the batch rows ``rows = (first, stop)``)."""
  first, stop = rows or (0, xp.shape[0])
  return lax.slice(xp, (first, *start, 0), (stop, *limit, xp.shape[3]),
                   (1, *strides, 1))


def _pad_hw(x, pads, value=0.0):
  """``x`` (NHWC) padded on the spatial axes by ``(lo, hi)`` pairs."""
  return lax.pad(x, jnp.asarray(value, x.dtype),
                 ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))


def _spread(y, starts, padded_hw, strides):
  """NHWC ``y`` placed on a zero grid of spatial size ``padded_hw``, its
  element ``(m, n)`` at ``starts + (m, n) * strides``: the transpose of
  taking one strided window."""
  edges = [(r, size - r - (n - 1) * st - 1, st - 1) for size, r, n, st in
           zip(padded_hw, starts, y.shape[1:3], strides)]
  return lax.pad(y, jnp.zeros((), y.dtype), ((0, 0, 0), *edges, (0, 0, 0)))


# The tap loops below build hundreds of operations per layer; they call lax
# directly, since each jax.numpy operator traces as a nested jit of its own
# (the EfficientNet-B0 train step traced in 1.75-1.97 s instead of 2.0-2.1).
def _shifted(x, kernel, strides, pads, dilation):
  xp = _pad_hw(x, pads)
  taps, _ = _taps(xp.shape[1:3], kernel.shape[:2], strides, dilation)
  rows = kernel.reshape(-1, kernel.shape[-1])  # one row per tap
  y = None
  for n, (_, _, start, limit) in enumerate(taps):
    window = _window(xp, start, limit, strides)
    term = lax.mul(window, lax.broadcast_in_dim(
        lax.index_in_dim(rows, n, keepdims=False), window.shape, (3,)))
    y = term if y is None else lax.add(y, term)
  return y


def _unroll(batch: int) -> int:
  """The largest divisor of ``batch`` not above ``_MAX_UNROLL``."""
  return max(u for u in range(1, min(batch, _MAX_UNROLL) + 1)
             if batch % u == 0)


def _kernel_grad(x, dy, kernel_hw, strides, pads, dilation):
  """The depthwise kernel gradient, ``sum over n, h, w`` of each tap's window
  of the input times ``dy``, in float32.

  Written as autodiff writes it (one reduction per tap), XLA's CPU backend
  reads the input and ``dy`` once per tap and runs the reductions one by
  one. Here each tap sums the products of ``u`` batch slices in one
  elementwise pass (a fusion with a ``1/u`` size output), the taps are
  stacked, and a single vector-matrix product with ones finishes the sum:
  about half the time for the EfficientNet shapes.
  """
  xp = _pad_hw(x, pads)
  taps, _ = _taps(xp.shape[1:3], kernel_hw, strides, dilation)
  batch, channels = dy.shape[0], dy.shape[3]
  unroll = _unroll(batch)
  rows = batch // unroll
  dy_slices = [lax.slice_in_dim(dy, u * rows, (u + 1) * rows)
               for u in range(unroll)]
  partial_sums = []
  for _, _, start, limit in taps:
    acc = None
    for u, dy_slice in enumerate(dy_slices):
      term = lax.mul(_window(xp, start, limit, strides,
                             (u * rows, (u + 1) * rows)), dy_slice)
      acc = term if acc is None else lax.add(acc, term)
    partial_sums.append(lax.expand_dims(acc, (3,)))
  stacked = lax.concatenate(partial_sums, 3).reshape(-1, len(taps) * channels)
  ones = jnp.ones((stacked.shape[0],), stacked.dtype)
  total = jnp.dot(ones, stacked, preferred_element_type=jnp.float32)
  return total.reshape(*kernel_hw, 1, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise_shifted(x, kernel, strides, pads, dilation):
  return _shifted(x, kernel, strides, pads, dilation)


def _depthwise_shifted_fwd(x, kernel, strides, pads, dilation):
  return _shifted(x, kernel, strides, pads, dilation), (x, kernel)


def _input_grad(x_hw, dy, kernel, strides, pads, dilation):
  """The depthwise input gradient as a stride-1 shifted convolution of the
  strided-apart ``dy`` with the flipped kernel.

  Autodiff's transpose of the windows pads each tap's product back to the
  input's size and sums the pads; XLA fuses that sum with whatever produced
  ``dy`` (the BatchNorm and activation gradients after the convolution),
  so each element of ``dy`` is recomputed once per tap, behind a bounds
  check per tap. Here ``dy`` is read through one pad, with no checks in the
  sum. In the MobileNet train steps on CPU (3x3 kernels) that is a quarter
  faster; for the 5x5 kernels alone, 2 to 6 times.
  """
  # dy strided apart, with a kernel's reach of zeros on either side (and
  # zeros for the rows of the padded input that no window reaches).
  reach = [(k - 1) * d for k, d in zip(kernel.shape[:2], dilation)]
  spread = _spread(dy, reach, [size + lo + hi + r for size, (lo, hi), r in
                               zip(x_hw, pads, reach)], strides)
  padded = _shifted(spread, kernel[::-1, ::-1], (1, 1), ((0, 0), (0, 0)),
                    dilation)
  (top, _), (left, _) = pads
  return padded[:, top:top + x_hw[0], left:left + x_hw[1]]


def _depthwise_shifted_bwd(strides, pads, dilation, residuals, dy):
  x, kernel = residuals
  if min(min(p) for p in pads) >= 0:
    dx = _input_grad(x.shape[1:3], dy, kernel, strides, pads, dilation)
  else:  # cropping pads: autodiff's transpose of the windows
    _, input_vjp = jax.vjp(
        lambda x: _shifted(x, kernel, strides, pads, dilation), x)
    (dx,) = input_vjp(dy)
  dk = _kernel_grad(x, dy, kernel.shape[:2], strides, pads, dilation)
  return dx, dk.astype(kernel.dtype)


_depthwise_shifted.defvjp(_depthwise_shifted_fwd, _depthwise_shifted_bwd)


def depthwise_conv2d_shifted(x, kernel, strides, padding, dilation=(1, 1)):
  """Depthwise convolution as a sum of shifted, strided multiply-adds.

  ``kernel`` has the grouped-convolution layout (kh, kw, 1, C). Computes the
  same function as ``lax.conv_general_dilated(..., feature_group_count=C)``;
  on CPU XLA lowers this form and its gradients many times faster.
  """
  strides, dilation = tuple(strides), tuple(dilation)
  pads = _resolve_pads(padding, x.shape[1:3], kernel.shape[:2], strides,
                       dilation)
  dtype = jnp.result_type(x, kernel)  # lax multiplies one dtype only
  return _depthwise_shifted(x.astype(dtype), kernel.astype(dtype), strides,
                            pads, dilation)


def depthwise_conv2d_xla(x, kernel, strides, padding, dilation=(1, 1)):
  """Depthwise convolution as XLA's grouped convolution."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=strides, padding=padding,
      rhs_dilation=dilation, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


DEPTHWISE_IMPLS = {'shifted': depthwise_conv2d_shifted,
                   'xla': depthwise_conv2d_xla}


def default_depthwise_impl() -> str:
  """The faster lowering for the current backend: shifted adds on CPU."""
  return 'shifted' if jax.default_backend() == 'cpu' else 'xla'


def _zero_padding(padding) -> bool:
  if isinstance(padding, str):
    return padding.upper() in ('SAME', 'VALID')  # both pad 0 for a 1x1 kernel
  return all(tuple(p) == (0, 0) for p in padding)


def _is_nhwc_hwio(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
            and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1)
            and tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
  return tuple(dimension_numbers) == ('NHWC', 'HWIO', 'NHWC')


def pointwise_as_matmul() -> bool:
  """Whether 1x1 convolutions run as matrix products: on CPU, where XLA's
  convolution emitter runs them (and far worse their gradients) at a
  fraction of the matmul speed; elsewhere cuDNN's convolutions are kept."""
  return jax.default_backend() == 'cpu'


_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _conv_nhwc(x, kernel, strides, pads, precision):
  return lax.conv_general_dilated(x, kernel, strides, pads,
                                  dimension_numbers=_NHWC, precision=precision)


def _phase_input_grad(x_hw, dy, kernel, strides, pads, precision):
  """The input gradient of a strided convolution, one stride-1 convolution
  per phase (the input rows and columns of one residue modulo the stride).

  Autodiff's transpose is a convolution of ``dy`` dilated by the stride:
  with stride 2, three quarters of what it multiplies are inserted zeros,
  and XLA's CPU convolution runs it at a third of its forward speed. Here
  each phase convolves ``dy`` with the kernel taps of that phase alone
  (flipped, input and output channels swapped), and the phases are
  interleaved by interior padding.
  """
  (top, bottom), (left, right) = pads
  padded_hw = (x_hw[0] + top + bottom, x_hw[1] + left + right)
  total = None
  for a in range(strides[0]):
    for b in range(strides[1]):
      taps = kernel[a::strides[0], b::strides[1]]
      if 0 in taps.shape[:2]:  # a kernel narrower than the stride
        continue
      phase_hw = [-(-(size - r) // s) for size, r, s in
                  zip(padded_hw, (a, b), strides)]
      phase = _conv_nhwc(
          dy, jnp.flip(taps, (0, 1)).transpose(0, 1, 3, 2), (1, 1),
          [(k - 1, n - m) for k, n, m in zip(taps.shape[:2], phase_hw,
                                               dy.shape[1:3])], precision)
      spread = _spread(phase, (a, b), padded_hw, strides)
      total = spread if total is None else lax.add(total, spread)
  if total is None:  # no tap reaches any input
    return jnp.zeros((dy.shape[0], *x_hw, kernel.shape[2]), dy.dtype)
  return total[:, top:top + x_hw[0], left:left + x_hw[1]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _strided_conv(x, kernel, strides, pads, precision):
  return _conv_nhwc(x, kernel, strides, pads, precision)


def _strided_conv_fwd(x, kernel, strides, pads, precision):
  return _conv_nhwc(x, kernel, strides, pads, precision), (x, kernel)


def _strided_conv_bwd(strides, pads, precision, residuals, dy):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(
      lambda k: _conv_nhwc(x, k, strides, pads, precision), kernel)
  dx = _phase_input_grad(x.shape[1:3], dy, kernel, strides, pads, precision)
  return dx.astype(x.dtype), kernel_vjp(dy)[0]


_strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def grouped_as_matmuls() -> bool:
  """Whether grouped convolutions run as one batched matrix product per
  kernel tap (``grouped_conv2d_taps``): on CPU, where XLA's own grouped
  convolution is the slow path (docs/speed.md has the measurement);
  elsewhere cuDNN's grouped convolutions are kept."""
  return jax.default_backend() == 'cpu'


def grouped_conv2d_taps(x, kernel, strides, pads, groups, precision=None):
  """A grouped NHWC convolution, HWIO kernel ``(kh, kw, C / groups, O)``,
  as one batched matrix product per kernel tap: the tap's strided window
  split into ``groups`` channel groups, times the tap's kernel of each
  group. Computes ``lax.conv_general_dilated(...,
  feature_group_count=groups)``; its gradient is again windows, pads and
  batched products."""
  kh, kw, per_group, out = kernel.shape
  xp = _pad_hw(x, pads)
  taps, (out_h, out_w) = _taps(xp.shape[1:3], (kh, kw), strides, (1, 1))
  kernels = kernel.reshape(kh, kw, per_group, groups, out // groups)
  shape = (x.shape[0], out_h, out_w, groups, per_group)
  y = None
  for i, j, start, limit in taps:
    window = _window(xp, start, limit, strides).reshape(shape)
    term = jnp.einsum('nhwgc,cgo->nhwgo', window, kernels[i, j],
                      precision=precision)
    y = term if y is None else lax.add(y, term)
  return y.reshape(*shape[:3], out)


def phased_strided_grad() -> bool:
  """Whether strided convolutions take their input gradient by phases
  (``_phase_input_grad``): on CPU; cuDNN has its own transposed kernels."""
  return jax.default_backend() == 'cpu'


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None, **kwargs):
  """``lax.conv_general_dilated``, with a 1x1 convolution of an NHWC input
  computed as a strided slice and one matrix product when
  ``pointwise_as_matmul()`` says so, a grouped one as batched products
  (``grouped_conv2d_taps``) when ``grouped_as_matmuls()`` says so, and a
  strided one given the input gradient of ``_phase_input_grad`` when
  ``phased_strided_grad()`` says so (same results, same parameters).

  Passed to ``nn.Conv(conv_general_dilated=...)`` by every dvl layer, so
  parameters, MAC counting and checkpoints do not change.
  """
  plain = (lhs_dilation is None or all(d == 1 for d in lhs_dilation))
  undilated = rhs_dilation is None or all(d == 1 for d in rhs_dilation)
  if (lhs.ndim == 4 and 1 < feature_group_count < lhs.shape[-1] and plain
      and undilated and not kwargs and _is_nhwc_hwio(dimension_numbers)
      and grouped_as_matmuls()):
    strides = tuple(window_strides)
    pads = _resolve_pads(padding, lhs.shape[1:3], rhs.shape[:2], strides,
                         (1, 1))
    dtype = jnp.result_type(lhs, rhs)
    return grouped_conv2d_taps(lhs.astype(dtype), rhs.astype(dtype), strides,
                               pads, feature_group_count, precision)
  simple = (lhs.ndim == 4 and feature_group_count == 1 and plain
            and not kwargs and _is_nhwc_hwio(dimension_numbers))
  if (simple and pointwise_as_matmul() and rhs.shape[:2] == (1, 1)
      and _zero_padding(padding)):
    sh, sw = window_strides
    x = lhs[:, ::sh, ::sw, :] if (sh, sw) != (1, 1) else lhs
    b, h, w, c = x.shape
    y = jnp.dot(x.reshape(b * h * w, c), rhs[0, 0], precision=precision)
    return y.reshape(b, h, w, rhs.shape[-1])
  if (simple and phased_strided_grad() and max(window_strides) > 1
      and undilated):
    strides = tuple(window_strides)
    pads = _resolve_pads(padding, lhs.shape[1:3], rhs.shape[:2], strides,
                         (1, 1))
    if min(min(p) for p in pads) >= 0:
      dtype = jnp.result_type(lhs, rhs)
      return _strided_conv(lhs.astype(dtype), rhs.astype(dtype), strides,
                           pads, precision)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision, **kwargs)


def _max_windows(x, window, strides, pads):
  xp = _pad_hw(x, pads, -jnp.inf)
  taps, _ = _taps(xp.shape[1:3], window, strides, (1, 1))
  return xp, [_window(xp, start, limit, strides)
              for _, _, start, limit in taps], taps


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_shifted(x, window, strides, pads):
  _, windows, _ = _max_windows(x, window, strides, pads)
  return functools.reduce(jnp.maximum, windows)


def _max_pool_shifted_fwd(x, window, strides, pads):
  y = _max_pool_shifted(x, window, strides, pads)
  return y, (x, y)


def _max_pool_shifted_bwd(window, strides, pads, residuals, dy):
  """Each window's gradient goes to its first maximum in row-major order,
  as XLA's ``select_and_scatter_add`` (autodiff of ``reduce_window``) does."""
  x, y = residuals
  xp, windows, taps = _max_windows(x, window, strides, pads)
  taken = jnp.zeros(y.shape, bool)
  dxp = None
  for win, (i, j, _, _) in zip(windows, taps):
    first = (win == y) & ~taken
    taken = taken | first
    term = _spread(jnp.where(first, dy, 0), (i, j), xp.shape[1:3], strides)
    dxp = term if dxp is None else dxp + term
  (top, _), (left, _) = pads
  return (dxp[:, top:top + x.shape[1], left:left + x.shape[2]],)


_max_pool_shifted.defvjp(_max_pool_shifted_fwd, _max_pool_shifted_bwd)


def shifted_max_pool() -> bool:
  """Whether max pooling runs as shifted maxima: on CPU (see
  ``max_pool_shifted``); elsewhere XLA's window reduction is kept."""
  return jax.default_backend() == 'cpu'


def max_pool_shifted(x, window, strides, pads):
  """Max pooling of NHWC ``x`` as the maximum of shifted, strided windows
  (``window``, ``strides``: pairs; ``pads``: explicit ``(lo, hi)`` pairs),
  with the gradient of ``nn.max_pool``. On CPU XLA computes autodiff of
  ``reduce_window`` through a window reduction that also carries four
  integer index arrays; this is a single elementwise pass each way."""
  window, strides = tuple(window), tuple(strides)
  pads = _resolve_pads(pads, x.shape[1:3], window, strides, (1, 1))
  return _max_pool_shifted(x, window, strides, pads)


def _batch_stats(x, epsilon):
  """Mean, variance (float32, over all axes but the last) and the inverse
  standard deviation of ``x``."""
  axes = tuple(range(x.ndim - 1))
  xf = x.astype(jnp.float32)
  mean = xf.mean(axes)
  # E[x^2] - E[x]^2: both sums in one pass; round-off can make it negative.
  var = jnp.maximum(0.0, (xf * xf).mean(axes) - mean * mean)
  return mean, var, lax.rsqrt(var + epsilon)


def _batch_norm(x, scale, bias, epsilon):
  mean, var, inv = _batch_stats(x, epsilon)
  y = (x.astype(jnp.float32) - mean) * (scale * inv) + bias
  return y, mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _batch_norm_fused(x, scale, bias, epsilon):
  return _batch_norm_fused_fwd(x, scale, bias, epsilon)[0]


def _batch_norm_fused_fwd(x, scale, bias, epsilon):
  mean, var, inv = _batch_stats(x, epsilon)
  # As gain * x + shift: written as (x - mean) * gain, XLA shares x - mean
  # with the backward pass and stores it, one more pass over the batch.
  gain = scale * inv
  y = x.astype(jnp.float32) * gain + (bias - mean * gain)
  return (y, mean, var), (x, mean, inv, scale)


def _batch_norm_fused_bwd(epsilon, residuals, cotangents):
  """The closed-form BatchNorm gradient: two sums over ``dy`` and one
  elementwise pass. Autodiff of the forward differentiates through the mean
  and the mean of squares separately, and XLA's CPU backend runs its extra
  reductions and passes over the activations one by one."""
  del epsilon
  x, mean, inv, scale = residuals
  dy, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  centered = x.astype(jnp.float32) - mean
  dy = dy.astype(jnp.float32)
  dbias = dy.sum(axes)
  dy_centered = (dy * centered).sum(axes)
  gain = scale * inv
  dx = (gain * dy
        - (gain / count) * (dbias + centered * (dy_centered * inv * inv))
        # mean and var are outputs too (the running statistics).
        + dmean / count + centered * (2.0 / count) * dvar)
  return (dx.astype(x.dtype), (dy_centered * inv).astype(scale.dtype),
          dbias.astype(scale.dtype))


_batch_norm_fused.defvjp(_batch_norm_fused_fwd, _batch_norm_fused_bwd)


def fused_batch_norm() -> bool:
  """Whether BatchNorm's training pass uses the hand-written gradient: on
  CPU; elsewhere XLA's fusion of autodiff's gradient is kept."""
  return jax.default_backend() == 'cpu'


def batch_norm_train(x, scale, bias, epsilon):
  """BatchNorm of ``x`` (NHWC or any ``(..., C)``) with its own batch
  statistics: ``(y in float32, mean, var)``, the biased variance as Flax's
  ``nn.BatchNorm`` computes it (``E[x^2] - E[x]^2``, in float32)."""
  if fused_batch_norm():
    return _batch_norm_fused(x, scale, bias, epsilon)
  return _batch_norm(x, scale, bias, epsilon)
