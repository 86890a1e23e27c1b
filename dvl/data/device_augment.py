"""Batched augmentations in JAX, for the device pipeline.

The JAX counterparts of the operations of ``dvl.data.augment`` that the device
pipeline supports: the crop window (pad-and-random-crop, random-resized crop,
centre crop, horizontal flip) sampled by one bilinear ``crop_resize``, colour
jitter, mixup and CutMix. Each draws the same distribution of per-example
parameters as its tf.data counterpart, from a JAX key instead of a TF
stateless seed (so the numbers differ; ``tests/test_device_pipeline.py``
compares the distributions). Images are float32 NHWC; ``crop_resize`` also
takes uint8 and returns [0, 255] floats.

Every function is traceable: the device pipeline jits one program per batch
shape that gathers, augments and normalises a batch.
"""

import math

import jax
import jax.numpy as jnp

# The luma weights of tf.image.rgb_to_grayscale (ITU-R BT.601).
_LUMA = (0.2989, 0.5870, 0.1140)


def centre_windows(batch_size, src_hw, fraction=1.0):
  """Centred square windows of side ``fraction`` times the shorter side."""
  height, width = (float(s) for s in src_hw)
  side = fraction * min(height, width)
  full = lambda v: jnp.full((batch_size,), v, jnp.float32)
  return dict(top=full((height - side) / 2), left=full((width - side) / 2),
              height=full(side), width=full(side),
              flip=jnp.zeros((batch_size,), bool))


def pad_crop_windows(key, batch_size, src_hw, out_hw, padding):
  """Random shifts by up to ``padding`` output pixels (zero padding), as in
  the standard CIFAR augmentation; each shift uniform in [-padding, padding]."""
  windows = centre_windows(batch_size, src_hw)
  shift = jax.random.randint(key, (2, batch_size), -padding, padding + 1)
  shift = shift.astype(jnp.float32)
  windows['top'] += shift[0] * windows['height'] / out_hw[0]
  windows['left'] += shift[1] * windows['width'] / out_hw[1]
  return windows


def inception_windows(key, batch_size, src_hw, scale=(0.08, 1.0),
                      ratio=(3 / 4, 4 / 3), attempts=10):
  """Random-resized-crop windows (Szegedy et al. 2015, "Going deeper with
  convolutions"): area a uniform fraction in ``scale`` of the image, aspect
  ratio log-uniform in ``ratio``; the first of ``attempts`` draws that fits is
  kept, else the centred square."""
  height, width = (float(s) for s in src_hw)
  area_key, ratio_key, where_key = jax.random.split(key, 3)
  shape = (batch_size, attempts)
  area = jax.random.uniform(area_key, shape, minval=scale[0],
                            maxval=scale[1]) * height * width
  log_ratio = jax.random.uniform(ratio_key, shape, minval=math.log(ratio[0]),
                                 maxval=math.log(ratio[1]))
  crop_w = jnp.sqrt(area * jnp.exp(log_ratio))
  crop_h = jnp.sqrt(area / jnp.exp(log_ratio))
  fits = (crop_w <= width) & (crop_h <= height)
  first = jnp.argmax(fits, axis=1)
  found = fits.any(axis=1)
  pick = lambda v: jnp.take_along_axis(v, first[:, None], axis=1)[:, 0]
  fallback = centre_windows(batch_size, src_hw)
  crop_h = jnp.where(found, pick(crop_h), fallback['height'])
  crop_w = jnp.where(found, pick(crop_w), fallback['width'])
  position = jax.random.uniform(where_key, (2, batch_size))
  return dict(top=position[0] * (height - crop_h),
              left=position[1] * (width - crop_w), height=crop_h,
              width=crop_w, flip=jnp.zeros((batch_size,), bool))


def random_flips(key, windows):
  """Mirrors each window horizontally with probability 1/2."""
  flip = jax.random.uniform(key, windows['top'].shape) < 0.5
  return dict(windows, flip=flip)


def _sample_weights(start, end, out_size, src_size):
  """(B, out_size, src_size) bilinear weights of ``out_size`` points spread
  from ``start`` to ``end`` (source pixel-centre coordinates); a point
  outside the source gets a row of zeros, as tf.image.crop_and_resize's
  extrapolation value 0 does."""
  if out_size > 1:
    steps = jnp.arange(out_size, dtype=jnp.float32) / (out_size - 1)
    points = start[:, None] + steps[None] * (end - start)[:, None]
  else:
    points = ((start + end) / 2)[:, None]
  inside = (points >= 0) & (points <= src_size - 1)
  pixels = jnp.arange(src_size, dtype=jnp.float32)
  tent = jnp.maximum(0.0, 1.0 - jnp.abs(points[..., None] - pixels))
  return jnp.where(inside[..., None], tent, 0.0)


def crop_resize(images, windows, out_hw):
  """Samples every window at ``out_hw``, bilinearly, as the tf.data
  pipeline's ``augment.crop_resize`` does: output pixel centres spread over
  the window like a half-pixel-aligned resize, so a full-image window at the
  source size is the identity and a flipped one an exact mirror; outside the
  source the image is 0.

  Bilinear sampling is separable, so each image is two small matrix
  products (rows, then columns), computed at full float32 precision.
  """
  src_h, src_w = images.shape[1:3]
  out_h, out_w = out_hw
  top, left = windows['top'], windows['left']
  y1 = top + 0.5 * windows['height'] / out_h - 0.5
  y2 = top + windows['height'] - 0.5 * windows['height'] / out_h - 0.5
  x1 = left + 0.5 * windows['width'] / out_w - 0.5
  x2 = left + windows['width'] - 0.5 * windows['width'] / out_w - 0.5
  x1, x2 = (jnp.where(windows['flip'], x2, x1),
            jnp.where(windows['flip'], x1, x2))
  rows = _sample_weights(y1, y2, out_h, src_h)
  cols = _sample_weights(x1, x2, out_w, src_w)
  high = jax.lax.Precision.HIGHEST
  out = jnp.einsum('boh,bhwc->bowc', rows, images.astype(jnp.float32),
                   precision=high)
  return jnp.einsum('bpw,bowc->bopc', cols, out, precision=high)


def _blend(a, b, factor):
  """``a + factor * (b - a)`` per example, clipped to [0, 1]."""
  return jnp.clip(a + factor[:, None, None, None] * (b - a), 0.0, 1.0)


def _grayscale(images):
  if images.shape[-1] == 1:
    return images
  return jnp.sum(images * jnp.asarray(_LUMA), axis=-1, keepdims=True)


def rgb_to_hsv(rgb):
  """Hue, saturation and value in [0, 1] of RGB in [0, 1] (last axis)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = rgb.max(-1)
  spread = value - rgb.min(-1)
  safe = jnp.where(spread > 0, spread, 1.0)
  hue = jnp.where(value == r, (g - b) / safe,
                  jnp.where(value == g, 2.0 + (b - r) / safe,
                            4.0 + (r - g) / safe))
  hue = jnp.where(spread > 0, jnp.mod(hue / 6.0, 1.0), 0.0)
  saturation = jnp.where(value > 0, spread / jnp.where(value > 0, value, 1.0),
                         0.0)
  return jnp.stack([hue, saturation, value], -1)


def hsv_to_rgb(hsv):
  """The inverse of ``rgb_to_hsv``."""
  hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  channel = lambda n: jnp.mod(n + hue * 6.0, 6.0)
  ramp = lambda n: value - value * saturation * jnp.clip(
      jnp.minimum(channel(n), 4.0 - channel(n)), 0.0, 1.0)
  return jnp.stack([ramp(5.0), ramp(3.0), ramp(1.0)], -1)


def color_jitter(key, images, strength):
  """Brightness, contrast and saturation factors uniform in 1 +- strength,
  and a hue shift uniform in +- strength / 4 of the colour wheel, in that
  order (as ``dvl.data.augment.color_jitter``)."""
  batch_size = images.shape[0]
  keys = jax.random.split(key, 4)
  factor = lambda k: jax.random.uniform(k, (batch_size,), minval=1 - strength,
                                        maxval=1 + strength)
  images = _blend(jnp.zeros_like(images), images, factor(keys[0]))
  mean = _grayscale(images).mean(axis=(1, 2, 3), keepdims=True)
  images = _blend(jnp.broadcast_to(mean, images.shape), images,
                  factor(keys[1]))
  images = _blend(jnp.broadcast_to(_grayscale(images), images.shape), images,
                  factor(keys[2]))
  if images.shape[-1] != 3:
    return images
  shift = jax.random.uniform(keys[3], (batch_size,), minval=-strength / 4,
                             maxval=strength / 4)
  hsv = rgb_to_hsv(images)
  hue = jnp.mod(hsv[..., 0] + shift[:, None, None], 1.0)
  return hsv_to_rgb(hsv.at[..., 0].set(hue))


def mixup(key, images, soft_labels, alpha):
  """mixup (Zhang et al. 2018, "mixup: Beyond empirical risk minimization"):
  blends the batch with a permutation of itself by lambda ~ Beta(alpha,
  alpha), and the soft labels alike."""
  lam_key, partner_key = jax.random.split(key)
  lam = jax.random.beta(lam_key, alpha, alpha)
  partner = jax.random.permutation(partner_key, images.shape[0])
  images = lam * images + (1 - lam) * images[partner]
  soft_labels = lam * soft_labels + (1 - lam) * soft_labels[partner]
  return images, soft_labels


def cutmix(key, images, soft_labels, alpha):
  """CutMix (Yun et al. 2019, "CutMix: Regularization strategy to train strong
  classifiers with localizable features"): pastes one random box from a
  permutation of the batch; label weights are the exact pasted area."""
  lam_key, partner_key, centre_key = jax.random.split(key, 3)
  lam = jax.random.beta(lam_key, alpha, alpha)
  partner = jax.random.permutation(partner_key, images.shape[0])
  size = jnp.asarray(images.shape[1:3], jnp.float32)
  centre = jax.random.uniform(centre_key, (2,)) * size
  half = jnp.sqrt(1.0 - lam) * size / 2
  low = jnp.round(jnp.clip(centre - half, 0, size))
  high = jnp.round(jnp.clip(centre + half, 0, size))
  rows = jnp.arange(images.shape[1])
  cols = jnp.arange(images.shape[2])
  inside = (((rows >= low[0]) & (rows < high[0]))[:, None]
            & ((cols >= low[1]) & (cols < high[1]))[None, :])
  images = jnp.where(inside[None, :, :, None], images[partner], images)
  kept = 1.0 - inside.mean()
  soft_labels = kept * soft_labels + (1 - kept) * soft_labels[partner]
  return images, soft_labels


def mix(key, images, labels, num_classes, mixup_alpha, cutmix_alpha):
  """mixup or CutMix (one of the two, evenly, when both alphas are set);
  returns the images and (B, num_classes) soft labels that sum to 1."""
  soft = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  choose_key, mix_key = jax.random.split(key)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = jax.random.uniform(choose_key) < 0.5
    return jax.lax.cond(
        use_cutmix, lambda: cutmix(mix_key, images, soft, cutmix_alpha),
        lambda: mixup(mix_key, images, soft, mixup_alpha))
  if cutmix_alpha > 0:
    return cutmix(mix_key, images, soft, cutmix_alpha)
  return mixup(mix_key, images, soft, mixup_alpha)
