"""Batched, seeded augmentations that run inside the tf.data pipeline.

Every function takes a whole batch and a stateless ``seed`` (an int tensor of
shape [2]) and draws per-example parameters from it, so the same seed always
gives the same batch, whatever the parallelism. Images are float32 NHWC in
[0, 1] (``crop_resize`` also takes uint8). A batch is a dict with ``image`` and
optionally ``mask`` (B, H, W, 1) uint8, ``boxes`` (B, K, 4) float32
``[xmin, ymin, xmax, ymax]`` in pixel-edge coordinates and ``box_label``
(B, K) int32 with -1 for empty slots; geometric operations move masks and
boxes with the image, and boxes pushed out of the image become empty slots.

These run on the host, in the tf.data pipeline (``config.input.pipeline =
'tfdata'``), which supports every option. ``dvl.data.device_augment`` holds
the JAX counterparts of the crops, flips, colour jitter, mixup and CutMix,
which the device pipeline runs on the accelerator (``'device'``; ``'auto'``
picks it there when it can; ``benchmarks/input_pipeline.py`` compares the two
against the train step).

Geometric operations are expressed in two forms:
  * a crop *window* per example (top, left, height, width in source pixels,
    plus a horizontal flip), applied by one ``crop_and_resize`` that also
    resizes to the model's resolution: resize, centre crop, pad-and-random-crop
    and Inception-style random-resized-crop (Szegedy et al. 2015) are all
    windows;
  * an affine *warp* per example (3x3 matrix, pixel-edge coordinates), used by
    the small affine distortions and by RandAugment's geometric operations.
"""

import math

import tensorflow as tf


def split_seed(seed, num):
  """``num`` independent stateless seeds derived from ``seed``."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def _float_hw(hw):
  return tf.cast(hw[0], tf.float32), tf.cast(hw[1], tf.float32)


def _uniform(seed, shape, low, high):
  return tf.random.stateless_uniform(shape, seed, low, high, tf.float32)


def centre_windows(batch_size, src_hw, fraction=1.0):
  """Centred square windows of side ``fraction`` times the shorter side."""
  height, width = _float_hw(src_hw)
  side = fraction * tf.minimum(height, width)
  full = lambda v: tf.fill([batch_size], v)
  return dict(top=full((height - side) / 2), left=full((width - side) / 2),
              height=full(side), width=full(side),
              flip=tf.zeros([batch_size], tf.bool))


def pad_crop_windows(seed, batch_size, src_hw, out_hw, padding):
  """Random shifts by up to ``padding`` output pixels (zero padding), as in
  the standard CIFAR augmentation."""
  windows = centre_windows(batch_size, src_hw)
  shift = tf.random.stateless_uniform([2, batch_size], seed, -padding,
                                      padding + 1, tf.int32)
  shift = tf.cast(shift, tf.float32)
  windows['top'] += shift[0] * windows['height'] / out_hw[0]
  windows['left'] += shift[1] * windows['width'] / out_hw[1]
  return windows


def inception_windows(seed, batch_size, src_hw, scale=(0.08, 1.0),
                      ratio=(3 / 4, 4 / 3), attempts=10):
  """Random-resized-crop windows (Szegedy et al. 2015, "Going deeper with
  convolutions"): area a uniform fraction in ``scale`` of the image, aspect
  ratio log-uniform in ``ratio``; the first of ``attempts`` draws that fits is
  kept, else the centred square."""
  height, width = _float_hw(src_hw)
  seeds = split_seed(seed, 4)
  shape = [batch_size, attempts]
  area = _uniform(seeds[0], shape, *scale) * height * width
  log_ratio = _uniform(seeds[1], shape, math.log(ratio[0]), math.log(ratio[1]))
  crop_w = tf.sqrt(area * tf.exp(log_ratio))
  crop_h = tf.sqrt(area / tf.exp(log_ratio))
  fits = (crop_w <= width) & (crop_h <= height)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  found = tf.reduce_any(fits, axis=1)
  pick = lambda v: tf.gather(v, first, axis=1, batch_dims=1)
  fallback = centre_windows(batch_size, src_hw)
  crop_h = tf.where(found, pick(crop_h), fallback['height'])
  crop_w = tf.where(found, pick(crop_w), fallback['width'])
  position = _uniform(seeds[2], [2, batch_size], 0.0, 1.0)
  return dict(top=position[0] * (height - crop_h),
              left=position[1] * (width - crop_w), height=crop_h,
              width=crop_w, flip=tf.zeros([batch_size], tf.bool))


def random_flips(seed, windows):
  """Mirrors each window horizontally with probability 1/2."""
  batch_size = tf.shape(windows['top'])[0]
  flip = tf.random.stateless_uniform([batch_size], seed) < 0.5
  return dict(windows, flip=flip)


def crop_resize(batch, windows, out_hw):
  """Samples every window at ``out_hw`` (bilinear; nearest for masks).

  Output pixel centres are spread over the window like a half-pixel-aligned
  resize, so a full-image window at the source size is the identity and a
  flipped one an exact mirror. Outside the source the image is 0.
  """
  src_h = tf.cast(tf.shape(batch['image'])[1], tf.float32)
  src_w = tf.cast(tf.shape(batch['image'])[2], tf.float32)
  out_h, out_w = (float(s) for s in out_hw)
  top, left = windows['top'], windows['left']
  y1 = top + 0.5 * windows['height'] / out_h - 0.5
  y2 = top + windows['height'] - 0.5 * windows['height'] / out_h - 0.5
  x1 = left + 0.5 * windows['width'] / out_w - 0.5
  x2 = left + windows['width'] - 0.5 * windows['width'] / out_w - 0.5
  x1, x2 = tf.where(windows['flip'], x2, x1), tf.where(windows['flip'], x1, x2)
  boxes = tf.stack([y1 / tf.maximum(src_h - 1, 1), x1 / tf.maximum(src_w - 1, 1),
                    y2 / tf.maximum(src_h - 1, 1), x2 / tf.maximum(src_w - 1, 1)],
                   axis=1)
  index = tf.range(tf.shape(boxes)[0])
  sample = lambda x, method: tf.image.crop_and_resize(
      tf.cast(x, tf.float32), boxes, index, list(out_hw), method=method)
  out = dict(batch, image=sample(batch['image'], 'bilinear'))
  if 'mask' in batch:
    out['mask'] = tf.cast(tf.round(sample(batch['mask'], 'nearest')), tf.uint8)
  if 'boxes' in batch:
    out['boxes'], out['box_label'] = _window_boxes(
        batch['boxes'], batch['box_label'], windows, out_hw)
  return out


def _window_boxes(boxes, labels, windows, out_hw):
  """Moves boxes into window coordinates, then clips and mirrors them."""
  out_h, out_w = (float(s) for s in out_hw)
  col = lambda v: v[:, None]
  sx, sy = out_w / col(windows['width']), out_h / col(windows['height'])
  x1 = (boxes[..., 0] - col(windows['left'])) * sx
  x2 = (boxes[..., 2] - col(windows['left'])) * sx
  y1 = (boxes[..., 1] - col(windows['top'])) * sy
  y2 = (boxes[..., 3] - col(windows['top'])) * sy
  flip = col(windows['flip'])
  x1, x2 = tf.where(flip, out_w - x2, x1), tf.where(flip, out_w - x1, x2)
  return _clip_boxes(tf.stack([x1, y1, x2, y2], -1), labels, out_hw)


def _clip_boxes(boxes, labels, hw):
  """Clips boxes to the image; boxes left empty become zero with label -1."""
  limit = tf.constant([hw[1], hw[0], hw[1], hw[0]], tf.float32)
  boxes = tf.clip_by_value(boxes, 0.0, limit)
  keep = ((boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
          & (labels >= 0))
  boxes = tf.where(keep[..., None], boxes, 0.0)
  return boxes, tf.where(keep, labels, -1)


def affine_matrices(seed, batch_size, hw, degrees=0.0, translate=0.0,
                    scale=0.0, shear=0.0):
  """Random affine maps about the image centre, as (B, 3, 3) matrices.

  Rotation uniform in +-``degrees``, x-shear in +-``shear`` degrees, zoom
  uniform in 1 +- ``scale`` and shift uniform in +-``translate`` of the size.
  """
  seeds = split_seed(seed, 4)
  angle = _uniform(seeds[0], [batch_size], -degrees, degrees) * math.pi / 180
  shear_angle = _uniform(seeds[1], [batch_size], -shear, shear) * math.pi / 180
  zoom = _uniform(seeds[2], [batch_size], 1 - scale, 1 + scale)
  shift = _uniform(seeds[3], [2, batch_size], -translate, translate)
  linear = rotation(angle) @ shear_x(tf.tan(shear_angle)) @ scaling(zoom)
  moved = translation(shift[0] * hw[1], shift[1] * hw[0])
  return moved @ about_centre(linear, hw)


def _matrix(rows):
  return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def rotation(angle):
  zero, one = tf.zeros_like(angle), tf.ones_like(angle)
  cos, sin = tf.cos(angle), tf.sin(angle)
  return _matrix([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])


def shear_x(factor):
  zero, one = tf.zeros_like(factor), tf.ones_like(factor)
  return _matrix([[one, factor, zero], [zero, one, zero], [zero, zero, one]])


def shear_y(factor):
  zero, one = tf.zeros_like(factor), tf.ones_like(factor)
  return _matrix([[one, zero, zero], [factor, one, zero], [zero, zero, one]])


def scaling(zoom):
  zero, one = tf.zeros_like(zoom), tf.ones_like(zoom)
  return _matrix([[zoom, zero, zero], [zero, zoom, zero], [zero, zero, one]])


def translation(dx, dy):
  zero, one = tf.zeros_like(dx), tf.ones_like(dx)
  return _matrix([[one, zero, dx], [zero, one, dy], [zero, zero, one]])


def about_centre(linear, hw):
  """Conjugates a linear map so that it fixes the image centre."""
  batch = tf.shape(linear)[0]
  cx = tf.fill([batch], hw[1] / 2.0)
  cy = tf.fill([batch], hw[0] / 2.0)
  return translation(cx, cy) @ linear @ translation(-cx, -cy)


def warp(batch, matrices):
  """Applies per-example affine maps (input to output, pixel-edge coords)."""
  hw = batch['image'].shape[1:3]
  half = tf.fill([tf.shape(matrices)[0]], 0.5)
  # TF samples at pixel centres with integer coordinates: shift by half a pixel
  # and invert, since the op maps output points to input points.
  centred = translation(-half, -half) @ matrices @ translation(half, half)
  inverse = tf.linalg.inv(centred)
  params = tf.reshape(inverse, [-1, 9])[:, :8] / inverse[:, 2:3, 2]
  transform = lambda x, how: tf.raw_ops.ImageProjectiveTransformV3(
      images=x, transforms=params, output_shape=list(hw), fill_value=0.0,
      interpolation=how, fill_mode='CONSTANT')
  out = dict(batch, image=transform(batch['image'], 'BILINEAR'))
  if 'mask' in batch:
    out['mask'] = tf.cast(transform(tf.cast(batch['mask'], tf.float32),
                                    'NEAREST'), tf.uint8)
  if 'boxes' in batch:
    out['boxes'], out['box_label'] = _warp_boxes(
        batch['boxes'], batch['box_label'], matrices, hw)
  return out


def _warp_boxes(boxes, labels, matrices, hw):
  """The enclosing box of each warped box's four corners, clipped."""
  x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
  corners_x = tf.stack([x1, x2, x1, x2], -1)
  corners_y = tf.stack([y1, y1, y2, y2], -1)
  m = matrices[:, None, None, :, :]
  new_x = m[..., 0, 0] * corners_x + m[..., 0, 1] * corners_y + m[..., 0, 2]
  new_y = m[..., 1, 0] * corners_x + m[..., 1, 1] * corners_y + m[..., 1, 2]
  warped = tf.stack([tf.reduce_min(new_x, -1), tf.reduce_min(new_y, -1),
                     tf.reduce_max(new_x, -1), tf.reduce_max(new_y, -1)], -1)
  return _clip_boxes(warped, labels, hw)


def blend(a, b, factor):
  """``a + factor * (b - a)`` per example, clipped to [0, 1]."""
  return tf.clip_by_value(a + factor[:, None, None, None] * (b - a), 0.0, 1.0)


def grayscale(images):
  if images.shape[-1] == 1:
    return images
  return tf.image.rgb_to_grayscale(images)


def adjust_brightness(images, factor):
  return blend(tf.zeros_like(images), images, factor)


def adjust_contrast(images, factor):
  mean = tf.reduce_mean(grayscale(images), axis=[1, 2, 3], keepdims=True)
  return blend(tf.broadcast_to(mean, tf.shape(images)), images, factor)


def adjust_saturation(images, factor):
  gray = tf.broadcast_to(grayscale(images), tf.shape(images))
  return blend(gray, images, factor)


def adjust_hue(images, delta):
  if images.shape[-1] != 3:
    return images
  hsv = tf.image.rgb_to_hsv(images)
  hue = tf.math.floormod(hsv[..., :1] + delta[:, None, None, None], 1.0)
  return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], -1))


def color_jitter(seed, images, strength):
  """Brightness, contrast and saturation factors uniform in 1 +- strength,
  and a hue shift uniform in +- strength / 4 of the colour wheel."""
  batch_size = tf.shape(images)[0]
  seeds = split_seed(seed, 4)
  factor = lambda s: _uniform(s, [batch_size], 1 - strength, 1 + strength)
  images = adjust_brightness(images, factor(seeds[0]))
  images = adjust_contrast(images, factor(seeds[1]))
  images = adjust_saturation(images, factor(seeds[2]))
  hue = _uniform(seeds[3], [batch_size], -strength / 4, strength / 4)
  return adjust_hue(images, hue)


def _sample_beta(seed, alpha):
  """One Beta(alpha, alpha) draw from two Gamma draws."""
  gammas = tf.random.stateless_gamma([2], seed, alpha)
  return gammas[0] / (gammas[0] + gammas[1])


def mixup(seed, images, soft_labels, alpha):
  """mixup (Zhang et al. 2018, "mixup: Beyond empirical risk minimization"):
  blends the batch with a permutation of itself by lambda ~ Beta(alpha,
  alpha), and the soft labels alike."""
  seeds = split_seed(seed, 2)
  lam = _sample_beta(seeds[0], alpha)
  partner = _partners(seeds[1], images)
  images = lam * images + (1 - lam) * tf.gather(images, partner)
  soft_labels = lam * soft_labels + (1 - lam) * tf.gather(soft_labels, partner)
  return images, soft_labels


def _partners(seed, images):
  return tf.random.experimental.stateless_shuffle(
      tf.range(tf.shape(images)[0]), seed)


def cutmix(seed, images, soft_labels, alpha):
  """CutMix (Yun et al. 2019, "CutMix: Regularization strategy to train strong
  classifiers with localizable features"): pastes one random box from a
  permutation of the batch; label weights are the exact pasted area."""
  seeds = split_seed(seed, 3)
  lam = _sample_beta(seeds[0], alpha)
  partner = _partners(seeds[1], images)
  height, width = images.shape[1], images.shape[2]
  cut = tf.sqrt(1.0 - lam)
  centre = _uniform(seeds[2], [2], 0.0, 1.0) * [height, width]
  half = cut * tf.constant([height, width], tf.float32) / 2
  low = tf.cast(tf.round(tf.clip_by_value(centre - half, 0, [height, width])),
                tf.int32)
  high = tf.cast(tf.round(tf.clip_by_value(centre + half, 0, [height, width])),
                 tf.int32)
  rows = (tf.range(height) >= low[0]) & (tf.range(height) < high[0])
  cols = (tf.range(width) >= low[1]) & (tf.range(width) < high[1])
  inside = rows[:, None] & cols[None, :]
  images = tf.where(inside[None, :, :, None], tf.gather(images, partner),
                    images)
  kept = 1.0 - tf.reduce_mean(tf.cast(inside, tf.float32))
  soft_labels = kept * soft_labels + (1 - kept) * tf.gather(soft_labels,
                                                            partner)
  return images, soft_labels


def mix(seed, images, labels, num_classes, mixup_alpha, cutmix_alpha):
  """mixup or CutMix (one of the two, evenly, when both alphas are set);
  returns the images and (B, num_classes) soft labels that sum to 1."""
  soft = tf.one_hot(labels, num_classes, dtype=tf.float32)
  seeds = split_seed(seed, 2)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = tf.random.stateless_uniform([], seeds[0]) < 0.5
    return tf.cond(use_cutmix,
                   lambda: cutmix(seeds[1], images, soft, cutmix_alpha),
                   lambda: mixup(seeds[1], images, soft, mixup_alpha))
  if cutmix_alpha > 0:
    return cutmix(seeds[1], images, soft, cutmix_alpha)
  return mixup(seeds[1], images, soft, mixup_alpha)
