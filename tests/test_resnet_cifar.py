"""The CIFAR networks' own parts: the patch-whitening stem and its data
initialisation, the airbench block, and test-time views."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dvl import flops, models
from dvl.models.resnet_cifar import whitening_kernel
from dvl.train.steps import eval_views
from model_variables import random_variables

AIRBENCH = dict(widths=(24, 32, 64, 64), residual=(False, False, False),
                double=True, whiten=2, act='gelu')


def _correlated_images(rng, count=64, side=12):
  """Images whose pixels and channels are strongly correlated."""
  smooth = rng.normal(size=(count, side + 1, side + 1, 1))
  smooth = (smooth[:, 1:, 1:] + smooth[:, :-1, :-1]) / 2
  mix = np.array([[1.0, 0.8, 0.5]])
  return smooth * mix + 0.1 * rng.normal(size=(count, side, side, 3))


def test_whitening_filters_decorrelate_the_patches():
  images = _correlated_images(np.random.default_rng(0))
  kernel = whitening_kernel(images, 2, epsilon=0.0)
  assert kernel.shape == (2, 2, 3, 24)
  np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
  out = jax.lax.conv_general_dilated(
      jnp.asarray(images, jnp.float32), jnp.asarray(kernel[..., :12]), (1, 1),
      'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  flat = np.asarray(out, np.float64).reshape(-1, 12)
  covariance = np.cov(flat, rowvar=False, bias=True)
  np.testing.assert_allclose(covariance, np.eye(12), atol=2e-3)
  # Before whitening the patch covariance is far from the identity.
  raw = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
  raw = raw.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
  assert np.abs(np.cov(raw, rowvar=False) - np.eye(12)).max() > 0.5


def test_whitening_epsilon_damps_the_weakest_directions():
  images = _correlated_images(np.random.default_rng(1))
  sharp = whitening_kernel(images, 2, epsilon=0.0).reshape(12, 24)
  damped = whitening_kernel(images, 2, epsilon=1.0).reshape(12, 24)
  norms_sharp = np.linalg.norm(sharp[:, :12], axis=0)
  norms_damped = np.linalg.norm(damped[:, :12], axis=0)
  assert np.all(norms_damped < norms_sharp)
  # Filters come strongest component first: their gain grows down the list.
  assert np.all(np.diff(norms_sharp) > 0)


def test_data_init_fits_only_the_stem():
  model = models.build_model('resnet9', num_classes=10, **AIRBENCH)
  x = jnp.zeros((1, 32, 32, 3))
  variables = random_variables(model, x)
  images = _correlated_images(np.random.default_rng(2), count=16, side=32)
  calls = []

  def sample():
    calls.append(1)
    return images

  fitted = model.data_init(variables, sample)
  assert calls == [1]
  before = traverse_util.flatten_dict(variables['params'], sep='/')
  after = traverse_util.flatten_dict(fitted['params'], sep='/')
  changed = [k for k in before if not np.array_equal(before[k], after[k])]
  assert changed == ['prep/kernel']
  np.testing.assert_allclose(after['prep/kernel'],
                             whitening_kernel(images, 2, 5e-4), rtol=1e-6)
  # Without a whitening stem nothing is sampled or changed.
  plain = models.build_model('resnet9', num_classes=10)
  plain_vars = random_variables(plain, x)
  assert plain.data_init(plain_vars, sample) is plain_vars
  assert calls == [1]


def test_airbench_layout_shapes_and_cost():
  model = models.build_model('resnet9', num_classes=10, **AIRBENCH)
  variables = random_variables(model, jnp.zeros((1, 32, 32, 3)))
  logits, features = model.apply(variables, jnp.ones((2, 32, 32, 3)),
                                 train=False)
  assert logits.shape == (2, 10)
  # A 2x2 VALID stem: 31x31 with 24 channels, then three poolings.
  assert features['stem'].shape == (2, 31, 31, 24)
  assert [features[f'stage{i}'].shape[1] for i in (1, 2, 3)] == [15, 7, 3]
  cost = flops.count(model, (32, 32, 3))
  layers = {c.path: c.macs for c in cost.layers}
  assert layers['prep'] == 31 * 31 * 12 * 24
  assert layers['stage1_conv2/conv'] == 15 * 15 * 9 * 32 * 32


def test_whitening_needs_the_plain_stem():
  with pytest.raises(ValueError, match='set stem_stride = 1'):
    models.build_model('resnet9', whiten=2, stem_stride=2).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)


def test_eval_views_shift_and_mirror():
  images = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
  assert len(eval_views(images, flip=False, translate=0)) == 1
  views = eval_views(images, flip=True, translate=1)
  assert len(views) == 6
  original, up_left, down_right = views[:3]
  np.testing.assert_array_equal(original, images)
  # Shifted down-right by one pixel: the interior moves, the edge reflects.
  np.testing.assert_array_equal(up_left[:, 1:, 1:], images[:, :-1, :-1])
  np.testing.assert_array_equal(up_left[:, 0, 1:], images[:, 1, :-1])
  np.testing.assert_array_equal(down_right[:, :-1, :-1], images[:, 1:, 1:])
  for plain, mirrored in zip(views[:3], views[3:]):
    np.testing.assert_array_equal(mirrored, plain[:, :, ::-1])


def test_dirac_init_passes_the_first_channels_through():
  from dvl.models.resnet_cifar import dirac_init  # noqa: PLC0415
  init = dirac_init(lambda key, shape, dtype: jnp.full(shape, 7.0, dtype))
  kernel = init(jax.random.key(0), (3, 3, 4, 6), jnp.float32)
  x = jax.random.normal(jax.random.key(1), (1, 5, 5, 4))
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(y[..., :4], x, rtol=1e-6)
  assert np.all(np.asarray(kernel[..., 4:]) == 7.0)
  model = models.build_model('resnet9', num_classes=10, dirac=True,
                             **AIRBENCH)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                         train=False)
  conv2 = variables['params']['stage2_conv2']['conv']['kernel']
  np.testing.assert_array_equal(conv2[1, 1], np.eye(64))
