"""Detection, segmentation and encoder-decoder models: their special layers
against hand examples, output shapes, bad sizes, and a short training run of
each (a few Adam steps on a tiny shapes-like batch must lower the loss)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dvl import detection, image_metrics, losses
from dvl.models import autoencoder, fcn, segnet, unet, yolo
from model_variables import random_variables

TINY_VGG = dict(widths=(8, 8, 16, 16, 16), fc_width=16, dropout=0.0)
TINY_RESNET = dict(widths=(8, 8, 16, 16), stem_width=8)


def _shape_of(model, x):
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x,
                                                train=False))
  out, features = jax.eval_shape(
      lambda v: model.apply(v, x, train=False), variables)
  return out.shape, features, variables


# SegNet: pooling that remembers where the maxima were (Fig. 3).

LECTURE = np.array([[1, 2, 6, 3],
                    [3, 5, 2, 1],
                    [1, 2, 2, 1],
                    [7, 3, 4, 8]], np.float32)


def test_max_pool_records_where_each_maximum_was():
  pooled, indices = segnet.max_pool_with_indices(LECTURE[None, :, :, None])
  np.testing.assert_array_equal(pooled[0, :, :, 0], [[5, 6], [7, 8]])
  # Flat positions row * 4 + col: (1,1), (0,2), (3,0), (3,3).
  np.testing.assert_array_equal(indices[0, :, :, 0], [[5, 2], [12, 15]])


def test_max_unpool_puts_values_back_at_the_recorded_positions():
  _, indices = segnet.max_pool_with_indices(LECTURE[None, :, :, None])
  a, b, c, d = 10.0, 20.0, 30.0, 40.0
  out = segnet.max_unpool(jnp.array([[a, b], [c, d]])[None, :, :, None],
                          indices)
  expected = np.zeros((4, 4))
  expected[1, 1], expected[0, 2], expected[3, 0], expected[3, 3] = a, b, c, d
  np.testing.assert_array_equal(out[0, :, :, 0], expected)


def test_pooling_and_unpooling_are_differentiable_per_channel():
  x = jnp.stack([LECTURE, -LECTURE], -1)[None]  # second channel: other maxima
  grad = jax.grad(lambda x: jnp.sum(segnet.max_pool_with_indices(x)[0]))(x)
  at_maxima = np.zeros((4, 4))
  at_maxima[1, 1] = at_maxima[0, 2] = at_maxima[3, 0] = at_maxima[3, 3] = 1
  np.testing.assert_array_equal(grad[0, ..., 0], at_maxima)
  assert float(grad[0, 0, 0, 1]) == 1.0  # -1 is the max of -[[1,2],[3,5]]
  _, indices = segnet.max_pool_with_indices(x)
  vgrad = jax.grad(lambda v: jnp.sum(segnet.max_unpool(v, indices) * x))(
      jnp.ones((1, 2, 2, 2)))
  np.testing.assert_array_equal(vgrad[0, ..., 0], [[5, 6], [7, 8]])


# FCN: transposed convolutions started as bilinear upsampling (Sec. 3.3).


def test_bilinear_kernel_of_factor_two():
  taps = np.array([0.25, 0.75, 0.75, 0.25])
  np.testing.assert_allclose(fcn.bilinear_kernel(2), np.outer(taps, taps))
  kernel = fcn.bilinear_init(None, (4, 4, 3, 3))
  np.testing.assert_array_equal(kernel[:, :, 0, 1], 0)  # channels stay apart
  with pytest.raises(ValueError, match='even square'):
    fcn.bilinear_init(None, (3, 3, 2, 2))


@pytest.mark.parametrize('factor', [2, 4, 8])
def test_bilinear_init_upsamples_a_ramp_and_a_constant(factor):
  n = 5
  i = np.arange(n, dtype=np.float32)
  ramp = i[:, None] + 2 * i[None, :]
  x = jnp.asarray(np.stack([ramp, np.full_like(ramp, 3.0)], -1))[None]
  layer = fcn.BilinearUpsample(factor)
  y = np.asarray(layer.apply(layer.init(jax.random.key(0), x), x))[0]
  assert y.shape == (n * factor, n * factor, 2)
  # Output pixel o sits at input coordinate (o + 1/2) / factor - 1/2; away
  # from the border (zero padding there) a ramp stays the same ramp.
  u = (np.arange(n * factor) + 0.5) / factor - 0.5
  inner = slice(factor // 2, n * factor - factor // 2)
  np.testing.assert_allclose(y[inner, inner, 0],
                             (u[:, None] + 2 * u[None, :])[inner, inner],
                             atol=1e-5)
  np.testing.assert_allclose(y[inner, inner, 1], 3.0, atol=1e-5)
  resized = jax.image.resize(x, (1, n * factor, n * factor, 2), 'bilinear')
  np.testing.assert_allclose(y[inner, inner], resized[0, inner, inner],
                             atol=1e-5)


# Output shapes and bad sizes.


@pytest.mark.parametrize('stride', [32, 16, 8])
@pytest.mark.parametrize('backbone,fields', [('vgg11', TINY_VGG),
                                             ('resnet18', TINY_RESNET)])
def test_fcn_scores_every_input_pixel(stride, backbone, fields):
  model = fcn.FCN(num_classes=5, stride=stride, backbone=backbone,
                  backbone_fields=fields)
  shape, features, variables = _shape_of(model, jnp.zeros((2, 70, 45, 3)))
  assert shape == (2, 70, 45, 5)
  fused = {32: ['score32'], 16: ['score32', 'score16'],
           8: ['score32', 'score16', 'score8']}[stride]
  assert sorted(k for k in features if k.startswith('score')) == sorted(fused)
  # Scores at strides 32/16/8 of the input padded to 96x64.
  for name in fused:
    s = int(name[5:])
    assert features[name].shape == (2, 96 // s, 64 // s, 5)
  if backbone == 'vgg11':  # fc6/fc7 are VGG's own fc1/fc2, convolutionalised
    assert features['pre_logits'].shape[-1] == TINY_VGG['fc_width']
    assert 'fc1' in variables['params']['backbone']


def test_fcn_rejects_an_unknown_stride():
  with pytest.raises(ValueError, match='32, 16 or 8'):
    _shape_of(fcn.FCN(stride=4, backbone='resnet18',
                      backbone_fields=TINY_RESNET), jnp.zeros((1, 32, 32, 3)))


def test_unet_keeps_the_input_size():
  model = unet.UNet(num_classes=3, depth=3, base_width=4)
  shape, features, _ = _shape_of(model, jnp.zeros((2, 40, 24, 1)))
  assert shape == (2, 40, 24, 3)
  assert features['bottom'].shape == (2, 5, 3, 32)


def test_unet_names_the_size_the_depth_and_the_nearest_valid_sizes():
  model = unet.UNet(num_classes=2, depth=4, base_width=4)
  with pytest.raises(ValueError, match=r'input size 100x96 .*depth 4.*'
                     r'2\*\*4 = 16.*Nearest valid sizes: 96 or 112'):
    _shape_of(model, jnp.zeros((1, 100, 96, 3)))


def test_segnet_keeps_the_input_size_and_checks_it():
  model = segnet.SegNet(num_classes=4, stage_sizes=(1, 2), widths=(8, 16))
  shape, features, _ = _shape_of(model, jnp.zeros((2, 12, 8, 3)))
  assert shape == (2, 12, 8, 4)
  assert features['stage2'].shape == (2, 6, 4, 16)
  with pytest.raises(ValueError, match='divisible by 2\\*\\*2 = 4'):
    _shape_of(model, jnp.zeros((1, 10, 8, 3)))


@pytest.mark.parametrize('mode,in_shape,out_shape', [
    ('denoise', (2, 16, 16, 3), (2, 16, 16, 3)),
    ('colorize', (2, 16, 16, 1), (2, 16, 16, 3)),
    ('super_resolution', (2, 8, 8, 3), (2, 16, 16, 3)),
])
def test_autoencoder_modes(mode, in_shape, out_shape):
  model = autoencoder.ConvAutoencoder(widths=(8, 16),
                                      **autoencoder.MODES[mode])
  shape, features, _ = _shape_of(model, jnp.zeros(in_shape))
  assert shape == out_shape
  assert features['latent'].shape == (2, in_shape[1] // 4, in_shape[2] // 4,
                                      16)


def test_autoencoder_upscale_must_be_a_power_of_two():
  model = autoencoder.ConvAutoencoder(widths=(8,), upscale=3)
  with pytest.raises(ValueError, match='power of 2'):
    _shape_of(model, jnp.zeros((1, 8, 8, 3)))


def test_yolo_paper_network_has_24_convolutions_and_a_7x7x30_output():
  layers_ = [yolo.parse_layer(t) for s in yolo.STAGES for t in s.split()]
  assert sum(l is not None for l in layers_) == 24
  assert sum(l is None for l in layers_) == 4
  shape, features, _ = _shape_of(yolo.YOLO(num_classes=20),
                                 jnp.zeros((1, 448, 448, 3)))
  assert shape == (1, 7, 7, 30)
  assert features['stage5'].shape == (1, 7, 7, 1024)


def test_yolo_on_a_registered_backbone_pools_to_the_grid():
  model = yolo.YOLO(num_classes=3, grid=3, backbone='resnet18',
                    backbone_fields=TINY_RESNET, fc_width=8)
  shape, features, _ = _shape_of(model, jnp.zeros((2, 192, 192, 3)))
  assert shape == (2, 3, 3, 13)
  assert features['stage4'].shape[1:3] == (6, 6)
  assert features['grid'].shape[1:3] == (3, 3)


def test_yolo_conv_head_and_own_stages_set_the_grid():
  stages = ('3x8', 'M 3x16', 'M 3x16s2')
  assert yolo.backbone_stride(stages) == 8
  model = yolo.YOLO(num_classes=4, grid=5, stages=stages, head='conv',
                    fc_width=16)
  shape, features, variables = _shape_of(model, jnp.zeros((2, 40, 40, 3)))
  assert shape == (2, 5, 5, 14)
  assert features['stage3'].shape == (2, 5, 5, 16)
  # One 3x3 and one 1x1 convolution, no dense layer.
  assert variables['params']['head_conv']['conv']['kernel'].shape == (
      3, 3, 16, 16)
  assert 'fc1' not in variables['params']
  with pytest.raises(ValueError, match="head must be 'dense'"):
    _shape_of(yolo.YOLO(num_classes=4, stages=stages, head='mlp'),
              jnp.zeros((1, 40, 40, 3)))
  with pytest.raises(ValueError, match='downsamples by 8'):
    _shape_of(model, jnp.zeros((1, 4, 4, 3)))


# Short training runs.


def _losses_while_training(model, x, loss_fn, steps, lr=1e-2):
  """Adam on one batch; the loss before each step."""
  variables = random_variables(model, x)
  params, stats = variables['params'], variables.get('batch_stats', {})
  tx = optax.adam(lr)

  @jax.jit
  def step(params, stats, opt_state):
    def loss(p):
      out, updates = model.apply({'params': p, 'batch_stats': stats}, x,
                                 train=True, mutable=['batch_stats'])
      return loss_fn(out[0]), updates.get('batch_stats', {})
    (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, value

  opt_state, history = tx.init(params), []
  for _ in range(steps):
    params, stats, opt_state, value = step(params, stats, opt_state)
    history.append(float(value))
  return history


def _squares(n, side, seed=0):
  """Bright squares on noisy dark images: boxes, labels and masks."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 0.3, (n, side, side, 3)).astype(np.float32)
  masks = np.zeros((n, side, side), np.int32)
  boxes = np.zeros((n, 1, 4), np.float32)
  labels = rng.integers(0, 2, (n, 1))
  for i in range(n):
    size = rng.integers(side // 4, side // 2)
    x0, y0 = rng.integers(0, side - size, 2)
    images[i, y0:y0 + size, x0:x0 + size, labels[i, 0]] = 1.0
    masks[i, y0:y0 + size, x0:x0 + size] = 1 + labels[i, 0]
    boxes[i, 0] = [x0, y0, x0 + size, y0 + size]
  return images, masks, boxes, labels


def _assert_learns(history):
  assert all(np.isfinite(history)), history
  assert history[-1] < 0.7 * history[0], history


def test_yolo_trains():
  images, _, boxes, labels = _squares(4, 64)
  target = detection.assign_targets(boxes, labels, image_hw=(64, 64), grid=2,
                                    num_classes=2)
  # The paper's layers (no BatchNorm), shrunk: 8 to 32 filters.
  model = yolo.YOLO(num_classes=2, grid=2, width=1 / 32, fc_width=32,
                    dropout=0.0, batch_norm=False)
  _assert_learns(_losses_while_training(
      model, images, lambda p: detection.yolo_loss(
          p, target, boxes_per_cell=2, num_classes=2), steps=12, lr=3e-3))


@pytest.mark.parametrize('name', ['fcn8s', 'segnet', 'unet'])
def test_segmentation_models_train(name):
  images, masks, _, _ = _squares(4, 32)
  model = {
      'fcn8s': fcn.FCN(num_classes=3, stride=8, backbone='vgg11',
                       backbone_fields=TINY_VGG, dropout=0.0),
      'segnet': segnet.SegNet(num_classes=3, stage_sizes=(1, 1),
                              widths=(8, 16)),
      'unet': unet.UNet(num_classes=3, depth=2, base_width=8),
  }[name]
  _assert_learns(_losses_while_training(
      model, images, lambda logits: losses.pixel_softmax_cross_entropy(
          logits, masks, ignore_label=255), steps=12))


def test_denoising_autoencoder_trains():
  clean, _, _, _ = _squares(4, 16)
  noisy = np.clip(clean + np.random.default_rng(1).normal(0, 0.1, clean.shape),
                  0, 1)
  model = autoencoder.ConvAutoencoder(widths=(8, 16))
  _assert_learns(_losses_while_training(
      model, noisy, lambda y: jnp.mean(image_metrics.mse(y, clean)), steps=10))
