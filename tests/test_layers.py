"""The building blocks: depthwise lowering, BatchNorm, drop-connect, pooling."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dvl import layers, lowering

CASES = list(itertools.product((3, 5), (1, 2), (1, 2), ('same', 'symmetric',
                                                           'valid')))


@pytest.mark.parametrize('kernel,stride,dilation,padding', CASES)
@pytest.mark.parametrize('size', [15, 16])
def test_shifted_depthwise_equals_grouped_convolution(kernel, stride, dilation,
                                                      padding, size):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, size, size, 6))
  w = jax.random.normal(kk, (kernel, kernel, 1, 6))
  pads = layers.explicit_padding(padding, (kernel, kernel),
                                 (dilation, dilation))
  args = ((stride, stride), pads, (dilation, dilation))

  out_shape = lowering.depthwise_conv2d_xla(x, w, *args).shape
  r = jax.random.normal(kg, out_shape)

  def loss(impl, x, w):
    y = impl(x, w, *args)
    return jnp.sum(y * r), y

  (_, ref), ref_grads = jax.value_and_grad(
      lambda x, w: loss(lowering.depthwise_conv2d_xla, x, w), (0, 1),
      has_aux=True)(x, w)
  (_, ours), grads = jax.value_and_grad(
      lambda x, w: loss(lowering.depthwise_conv2d_shifted, x, w), (0, 1),
      has_aux=True)(x, w)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('batch', [1, 3, 12])
@pytest.mark.parametrize('kernel,stride', [(3, 1), (5, 2)])
def test_shifted_depthwise_gradients_for_any_batch(batch, kernel, stride):
  """The hand-written backward pass sums the batch in slices (as many as
  the largest divisor of the batch up to 8): every split must agree."""
  kx, kk, kg = jax.random.split(jax.random.key(batch), 3)
  x = jax.random.normal(kx, (batch, 11, 11, 5))
  w = jax.random.normal(kk, (kernel, kernel, 1, 5))
  args = ((stride, stride), 'SAME', (1, 1))
  r = jax.random.normal(kg, lowering.depthwise_conv2d_xla(x, w, *args).shape)
  grads = [jax.grad(lambda x, w, f=f: jnp.sum(f(x, w, *args) * r), (0, 1))(
      x, w) for f in (lowering.depthwise_conv2d_xla,
                      lowering.depthwise_conv2d_shifted)]
  for ref, ours in zip(*grads):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_depthwise_module_impls_agree():
  x = jax.random.normal(jax.random.key(1), (1, 9, 9, 4))
  mods = [layers.DepthwiseConv(3, 2, impl=i) for i in ('xla', 'shifted')]
  v = mods[0].init(jax.random.key(2), x)
  np.testing.assert_allclose(mods[0].apply(v, x), mods[1].apply(v, x),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('stride', [2, 3])
def test_upconv_equals_transposed_convolution(stride):
  """Same parameters, outputs and gradients as flax's ConvTranspose."""
  x = jax.random.normal(jax.random.key(3), (2, 3, 5, 4))
  ref = nn.ConvTranspose(6, (stride, stride), (stride, stride),
                         padding='VALID')
  v = ref.init(jax.random.key(4), x)
  v = jax.tree_util.tree_map(lambda a: a + 0.1, v)  # a non-zero bias
  ours = layers.UpConv(6, stride)
  assert (jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.key(4), x))
          == jax.tree_util.tree_map(jnp.shape, v))
  r = jax.random.normal(jax.random.key(5), (2, 3 * stride, 5 * stride, 6))

  def loss(mod, v, x):
    return jnp.sum(mod.apply(v, x) * r)

  np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), atol=1e-5)
  g_ref = jax.grad(loss, (1, 2))(ref, v, x)
  g_ours = jax.grad(loss, (1, 2))(ours, v, x)
  for a, b in zip(jax.tree_util.tree_leaves(g_ours),
                  jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('kernel,stride,padding', [
    (1, 1, 'SAME'), (1, 2, 'SAME'), (1, 2, 'VALID'), (1, 3, ((0, 0), (0, 0))),
    (3, 1, 'SAME'), (1, 1, ((1, 1), (0, 0)))])
def test_pointwise_matmul_equals_convolution(kernel, stride, padding):
  """dvl's conv_general_dilated (a matmul for 1x1 kernels on CPU) gives the
  convolution's outputs and gradients, odd sides and strides included; other
  kernels and padded 1x1 convolutions go to XLA unchanged."""
  assert lowering.pointwise_as_matmul()  # the tests run on CPU
  x = jax.random.normal(jax.random.key(0), (2, 7, 9, 5))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 5, 6))
  dims = ('NHWC', 'HWIO', 'NHWC')

  def loss(conv, x, w):
    y = conv(x, w, (stride, stride), padding, dimension_numbers=dims)
    return jnp.sum(jnp.sin(y)), y

  (_, y_ref), g_ref = jax.value_and_grad(loss, (1, 2), has_aux=True)(
      lax.conv_general_dilated, x, w)
  (_, y), g = jax.value_and_grad(loss, (1, 2), has_aux=True)(
      lowering.conv_general_dilated, x, w)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('kernel,stride,padding,groups', [
    (3, 1, ((1, 1), (1, 1)), 2), (3, 2, ((1, 1), (1, 1)), 3),
    (3, 2, 'SAME', 6), (1, 1, 'VALID', 2), (3, 1, ((1, 0), (2, -1)), 3)])
def test_grouped_convolution_as_batched_matmuls(kernel, stride, padding,
                                                groups):
  """dvl's conv_general_dilated (one batched matmul per tap for a grouped
  convolution on CPU) gives XLA's grouped convolution's outputs and
  gradients, odd sides, strides and uneven pads included."""
  assert lowering.grouped_as_matmuls()  # the tests run on CPU
  x = jax.random.normal(jax.random.key(0), (2, 7, 9, 12))
  w = jax.random.normal(jax.random.key(1),
                        (kernel, kernel, 12 // groups, 18))
  dims = ('NHWC', 'HWIO', 'NHWC')

  def loss(conv, x, w):
    y = conv(x, w, (stride, stride), padding, dimension_numbers=dims,
             feature_group_count=groups)
    return jnp.sum(jnp.sin(y)), y

  (_, y_ref), g_ref = jax.value_and_grad(loss, (1, 2), has_aux=True)(
      lax.conv_general_dilated, x, w)
  (_, y), g = jax.value_and_grad(loss, (1, 2), has_aux=True)(
      lowering.conv_general_dilated, x, w)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  hlo = jax.jit(lambda x, w: lowering.conv_general_dilated(
      x, w, (stride, stride), padding, dimension_numbers=dims,
      feature_group_count=groups)).lower(x, w).as_text()
  assert 'stablehlo.convolution' not in hlo


@pytest.mark.parametrize('kernel,stride,padding', [
    ((3, 3), (2, 2), ((1, 1), (1, 1))), ((3, 3), (2, 2), 'SAME'),
    ((3, 3), (2, 2), 'VALID'), ((7, 7), (2, 2), ((3, 3), (3, 3))),
    ((3, 2), (3, 2), ((2, 0), (1, 3))), ((1, 1), (2, 2), ((1, 1), (0, 1))),
    ((3, 3), (1, 2), ((1, 1), (1, 1))), ((3, 3), (2, 2), ((1, -1), (0, 0)))])
@pytest.mark.parametrize('side', [8, 9])
def test_strided_convolution_gradient_by_phases(kernel, stride, padding,
                                                side):
  """A strided convolution's input gradient computed phase by phase equals
  autodiff's, for odd and even sides, strides above the kernel size and
  uneven pads (a cropping pad goes to XLA unchanged)."""
  assert lowering.phased_strided_grad()  # the tests run on CPU
  x = jax.random.normal(jax.random.key(0), (2, side, side + 3, 4))
  w = jax.random.normal(jax.random.key(1), (*kernel, 4, 5))
  dims = ('NHWC', 'HWIO', 'NHWC')

  def loss(conv, x, w):
    y = conv(x, w, stride, padding, dimension_numbers=dims)
    return jnp.sum(jnp.sin(y)), y

  (_, y_ref), g_ref = jax.value_and_grad(loss, (1, 2), has_aux=True)(
      lax.conv_general_dilated, x, w)
  (_, y), g = jax.value_and_grad(loss, (1, 2), has_aux=True)(
      lowering.conv_general_dilated, x, w)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for a, b in zip(g, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_strided_convolution_input_gradient_has_no_dilated_convolution():
  x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  dx = jax.grad(lambda x: lowering.conv_general_dilated(
      x, w, (2, 2), ((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')).sum())
  hlo = jax.jit(dx).lower(x).as_text()
  assert hlo.count('stablehlo.convolution') == 4  # one per phase
  assert 'lhs_dilate = [2, 2]' not in hlo  # autodiff's transpose has it


def test_conv_layers_run_pointwise_as_a_dot():
  """ConvBN's 1x1 convolution lowers to a dot (no convolution left), with
  nn.Conv's parameters, so checkpoints and MAC counts are unchanged."""
  mod = layers.ConvBN(8, 1, 2)
  x = jnp.ones((2, 6, 6, 4))
  v = mod.init(jax.random.key(0), x, train=False)
  assert v['params']['conv']['kernel'].shape == (1, 1, 4, 8)
  hlo = jax.jit(lambda v, x: mod.apply(v, x, train=False)).lower(
      v, x).as_text()
  assert 'convolution' not in hlo and 'dot_general' in hlo


def test_cpu_xla_flags_are_added_once_and_a_users_own_choice_wins():
  env = {}
  flags = lowering.add_cpu_xla_flags(env)
  assert flags.split() == list(lowering.CPU_XLA_FLAGS)
  assert lowering.add_cpu_xla_flags(env) == flags  # idempotent
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
  assert lowering.add_cpu_xla_flags(env).split() == [
      '--xla_force_host_platform_device_count=4', *lowering.CPU_XLA_FLAGS]
  own = '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'
  assert lowering.add_cpu_xla_flags({'XLA_FLAGS': own}) == own


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='CPU flags')
def test_cpu_convolutions_run_on_xla_and_products_on_ynnpack():
  """The flags reach XLA (tests/conftest.py adds them as launch.py does):
  a 3x3 convolution compiles outside any YNNPACK fusion, a product in one."""
  x, k = jnp.ones((2, 28, 28, 64)), jnp.ones((3, 3, 64, 64))
  compiled = jax.jit(lambda x, k: (
      lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                               dimension_numbers=('NHWC', 'HWIO', 'NHWC')),
      x.reshape(-1, 64) @ k[0, 0])).lower(x, k).compile().as_text()
  ynn = [line for line in compiled.splitlines()
         if '__ynn' in line and ' fusion(' in line]
  assert len(ynn) == 1 and 'f32[1568,64]' in ynn[0], ynn


def test_drop_path_rescales_in_training_and_is_identity_in_eval():
  x = jnp.ones((4000, 1, 1, 1))
  mod = layers.DropPath(0.25)
  y = mod.apply({}, x, train=True, rngs={'dropout': jax.random.key(0)})
  np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.75],
                             rtol=1e-6)
  assert abs(float(jnp.mean(y)) - 1.0) < 0.05
  np.testing.assert_array_equal(mod.apply({}, x, train=False), x)


def test_adaptive_pool_matches_bins():
  x = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
  y = layers.adaptive_avg_pool(x, 2)
  # rows/cols bins of 5 into 2: [0, 3) and [2, 5)
  np.testing.assert_allclose(y[0, 0, 0, 0], jnp.mean(x[0, 0:3, 0:3, 0]))
  np.testing.assert_allclose(y[1, 1, 1, 0], jnp.mean(x[1, 2:5, 2:5, 0]))
  small = layers.adaptive_avg_pool(jnp.ones((1, 1, 1, 3)), 7)
  assert small.shape == (1, 7, 7, 3)


def test_squeeze_excite_gates_each_channel():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
  mod = layers.SqueezeExcite(2)
  v = mod.init(jax.random.key(1), x)
  y = mod.apply(v, x)
  ratio = y / x
  # one gate per (example, channel), in (0, 1)
  np.testing.assert_allclose(
      ratio, np.broadcast_to(ratio[:, :1, :1, :], ratio.shape), rtol=1e-5)
  assert np.all((ratio > 0) & (ratio < 1))


@pytest.mark.parametrize('name', sorted(layers.ACTIVATIONS))
def test_activations(name):
  f = layers.get_activation(name)
  x = jnp.array([-7.0, -0.5, 0.0, 0.5, 7.0])
  expected = {
      'sigmoid': 1 / (1 + np.exp(-x)), 'tanh': np.tanh(x),
      'relu': np.maximum(x, 0), 'leaky_relu': np.where(x > 0, x, 0.1 * x),
      'relu6': np.clip(x, 0, 6), 'swish': x / (1 + np.exp(-x)),
      # GELU in its tanh form (Hendrycks & Gimpel 2016), flax's default.
      'gelu': 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi)
                                     * (x + 0.044715 * x ** 3))),
      'linear': x}[name]
  np.testing.assert_allclose(f(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('ours,flax_fn', [(layers.relu, nn.relu),
                                           (layers.relu6, nn.relu6)])
def test_output_differentiated_activations_match_flax(ours, flax_fn):
  """relu and relu6 keep their output for the backward pass: same values and
  gradients as Flax's, at the kinks too (0 and 6 get no gradient)."""
  x = jnp.array([-7.0, -0.5, 0.0, 1e-7, 0.5, 5.9, 6.0, 6.5, 7.0])
  dy = jnp.arange(1.0, 10.0)
  for fn in (ours, jax.jit(ours)):
    y, vjp = jax.vjp(fn, x)
    y_ref, vjp_ref = jax.vjp(flax_fn, x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(vjp(dy)[0], vjp_ref(dy)[0])


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('fused', [True, False])
def test_batch_norm_matches_flax(dtype, fused, monkeypatch):
  """``layers.BatchNorm`` keeps ``nn.BatchNorm``'s variables (so checkpoints
  load either way) and gives its outputs, running statistics and gradients,
  with the hand-written gradient (CPU) and with autodiff (accelerators)."""
  monkeypatch.setattr(lowering, 'fused_batch_norm', lambda: fused)
  kx, kr = jax.random.split(jax.random.key(0))
  # An offset mean and uneven scales, as conv outputs have.
  x = (jax.random.normal(kx, (4, 5, 6, 8)) * jnp.arange(1.0, 9.0)
       + 3.0).astype(dtype)
  r = jax.random.normal(kr, x.shape)
  ours = layers.BatchNorm(momentum=0.8, epsilon=1e-3, dtype=dtype)
  ref = nn.BatchNorm(momentum=0.8, epsilon=1e-3, dtype=dtype)
  variables = ref.init(jax.random.key(1), x, use_running_average=False)
  assert (jax.tree.map(jnp.shape, ours.init(
      jax.random.key(1), x, use_running_average=False))
          == jax.tree.map(jnp.shape, variables))
  params = {'scale': jnp.linspace(0.5, 2.0, 8), 'bias': jnp.linspace(-1, 1, 8)}
  stats = {'mean': jnp.full(8, 0.5), 'var': jnp.full(8, 2.0)}

  def train(module, params, x):
    y, updates = module.apply({'params': params, 'batch_stats': stats}, x,
                              use_running_average=False,
                              mutable=['batch_stats'])
    return jnp.sum(y.astype(jnp.float32) * r), (y, updates['batch_stats'])

  results = [jax.jit(jax.value_and_grad(
      lambda p, x, m=m: train(m, p, x), (0, 1), has_aux=True))(params, x)
             for m in (ours, ref)]
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  (_, (y, new_stats)), (dparams, dx) = results[0]
  (_, (y_ref, new_stats_ref)), (dparams_ref, dx_ref) = results[1]
  assert y.dtype == y_ref.dtype == dtype and dx.dtype == dtype
  np.testing.assert_allclose(np.float32(y), np.float32(y_ref), atol=tol,
                             rtol=tol)
  for a, b in [(new_stats, new_stats_ref), (dparams, dparams_ref),
               (dx, dx_ref)]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        np.float32(a), np.float32(b), atol=tol * 10, rtol=tol), a, b)
  evaluated = [m.apply({'params': params, 'batch_stats': stats}, x,
                       use_running_average=True) for m in (ours, ref)]
  np.testing.assert_allclose(np.float32(evaluated[0]),
                             np.float32(evaluated[1]), atol=tol, rtol=tol)


def test_batch_norm_gradient_through_its_statistics():
  """The hand-written gradient also carries cotangents of the batch mean
  and variance it returns: same as autodiff of the same forward."""
  kx, ka, kb = jax.random.split(jax.random.key(2), 3)
  x = jax.random.normal(kx, (3, 4, 4, 5)) * 2 + 1
  a, b = jax.random.normal(ka, (5,)), jax.random.normal(kb, (5,))
  scale, bias = jnp.linspace(0.5, 1.5, 5), jnp.zeros(5)

  def loss(fn, x, scale, bias):
    y, mean, var = fn(x, scale, bias, 1e-5)
    return jnp.sum(jnp.sin(y)) + jnp.dot(a, mean) + jnp.dot(b, var)

  grads = [jax.grad(functools.partial(loss, fn), (0, 1, 2))(x, scale, bias)
           for fn in (lowering._batch_norm_fused, lowering._batch_norm)]
  for ours, ref in zip(*grads):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('shape,window,stride,pads', [
    ((2, 9, 9, 3), 3, 2, ((1, 1), (1, 1))),  # ResNet's stem pooling
    ((2, 7, 8, 3), 3, 2, 'SAME'), ((2, 8, 8, 3), 3, 2, 'SAME'),
    ((2, 7, 7, 3), 3, 1, ((1, 1), (1, 1))), ((2, 8, 8, 3), 2, 2, 'VALID')])
@pytest.mark.parametrize('ties', [False, True])
def test_shifted_max_pool_equals_flax(shape, window, stride, pads, ties):
  """Same maxima, and each window's gradient at its first maximum (ties
  are common after a ReLU), for every padding the models use."""
  x = jax.random.normal(jax.random.key(0), shape)
  if ties:
    x = jnp.maximum(jnp.round(x), 0)
  args = ((window, window), (stride, stride), pads)
  y_ref, vjp_ref = jax.vjp(lambda x: nn.max_pool(x, *args), x)
  y, vjp = jax.vjp(lambda x: lowering.max_pool_shifted(x, *args), x)
  np.testing.assert_array_equal(y, y_ref)
  dy = jax.random.normal(jax.random.key(1), y.shape)
  np.testing.assert_allclose(vjp(dy)[0], vjp_ref(dy)[0], atol=1e-6)


def test_unknown_activation_and_padding():
  with pytest.raises(ValueError, match="unknown activation 'mish'.*swish"):
    layers.get_activation('mish')
  with pytest.raises(ValueError, match="unknown padding 'full'"):
    layers.explicit_padding('full', (3, 3))


def _tiny(name, **fields):
  from dvl import models
  small = dict(width=0.25, depth=0.34, num_classes=5) if name.startswith(
      'efficientnet') else dict(width=0.25, stage_sizes=(1, 1, 1, 1),
                                num_classes=5)
  return models.build_model(name, **small, **fields)


@pytest.mark.parametrize('name', [
    pytest.param('efficientnet_b0', marks=pytest.mark.slow),  # ~40 s
    pytest.param('resnet50', marks=pytest.mark.slow)])
def test_remat_keeps_parameters_outputs_and_gradients(name):
  """Per-block rematerialisation changes memory, not the function: the same
  parameter tree, loss, gradients and BatchNorm statistics."""
  from dvl import flops
  plain, remat = _tiny(name), _tiny(name, remat=True)
  assert (flops.count(remat, (64, 64, 3)).macs
          == flops.count(plain, (64, 64, 3)).macs)
  x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  v = jax.jit(lambda: plain.init(jax.random.key(1), x, train=False))()
  assert (jax.tree_util.tree_structure(jax.eval_shape(
      lambda: remat.init(jax.random.key(1), x, train=False)))
          == jax.tree_util.tree_structure(v))

  def loss(model, params):
    (y, _), upd = model.apply({**v, 'params': params}, x, train=True,
                              mutable=['batch_stats'],
                              rngs={'dropout': jax.random.key(2)})
    return jnp.sum(jnp.sin(y)), upd

  grad = jax.jit(jax.value_and_grad(loss, 1, has_aux=True), static_argnums=0)
  (l0, u0), g0 = grad(plain, v['params'])
  (l1, u1), g1 = grad(remat, v['params'])
  np.testing.assert_allclose(l1, l0, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves((g1, u1)),
                  jax.tree_util.tree_leaves((g0, u0))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_remat_keeps_only_block_inputs_for_the_backward_pass():
  """What the backward pass holds: every intermediate of every block
  without remat, about the blocks' inputs with it. (XLA on CPU plans the
  same temporary memory either way; the saving shows on accelerators.)"""
  x = jnp.zeros((8, 96, 96, 3))

  def residual_bytes(model):
    def kept(v):
      def loss(params):
        (y, _), _ = model.apply({**v, 'params': params}, x, train=True,
                                mutable=['batch_stats'],
                                rngs={'dropout': jax.random.key(1)})
        return jnp.sum(y)
      # The vjp closure is a pytree of exactly what the backward pass keeps.
      return jax.tree_util.tree_leaves(jax.vjp(loss, v['params'])[1])
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1],
                                          train=False))
    return sum(a.size * a.dtype.itemsize for a in jax.eval_shape(kept, v))

  plain = residual_bytes(_tiny('efficientnet_b0'))
  remat = residual_bytes(_tiny('efficientnet_b0', remat=True))
  assert remat < 0.15 * plain, (remat, plain)
