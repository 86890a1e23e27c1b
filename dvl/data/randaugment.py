"""RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data
augmentation with a reduced search space"), batched.

Each example gets ``layers`` operations drawn uniformly from the paper's 14
(identity, autocontrast, equalize, rotate, solarize, color, posterize,
contrast, brightness, sharpness, shear-x, shear-y, translate-x, translate-y),
all at one global ``magnitude`` on the paper's 0-10 scale; the sign of signed
operations is random. Maximum strengths at magnitude 10 follow AutoAugment:
30 degrees of rotation, shear 0.3, translation 45% of the size, enhancement
factors 1 +- 0.9, solarize threshold 0, posterize to 4 bits.

One deliberate difference from applying the ops one after another: the
geometric ops of every layer are composed into a single affine matrix that
the caller applies once, with masks and boxes, after the photometric ops
(``dvl.data.augment.warp``). Photometric ops commute with warps up to the
fill colour, and one resampling blurs less than several.
"""

import math

import tensorflow as tf

from dvl.data import augment

OPS = ('identity', 'autocontrast', 'equalize', 'rotate', 'solarize', 'color',
       'posterize', 'contrast', 'brightness', 'sharpness', 'shear_x',
       'shear_y', 'translate_x', 'translate_y')
_GEOMETRIC = ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')


def autocontrast(images):
  """Stretches each channel of each image to the full [0, 1] range."""
  low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
  high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
  stretched = (images - low) / tf.maximum(high - low, 1e-6)
  return tf.where(high > low, stretched, images)


def equalize(images):
  """Histogram equalisation of each channel of each image, on 256 levels."""
  shape = tf.shape(images)
  levels = tf.cast(tf.round(images * 255), tf.int32)
  flat = tf.reshape(tf.transpose(levels, [0, 3, 1, 2]),
                    [shape[0] * shape[3], -1])
  hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1)
  cdf = tf.cast(tf.cumsum(hist, axis=-1), tf.float32)
  cdf_min = tf.reduce_min(tf.where(hist > 0, cdf, tf.float32.max), axis=-1,
                          keepdims=True)
  total = tf.cast(tf.shape(flat)[1], tf.float32)
  lut = (cdf - cdf_min) / tf.maximum(total - cdf_min, 1.0)
  mapped = tf.gather(lut, flat, batch_dims=1)
  mapped = tf.transpose(tf.reshape(mapped, [shape[0], shape[3], shape[1],
                                            shape[2]]), [0, 2, 3, 1])
  return mapped


def solarize(images, threshold):
  return tf.where(images >= threshold, 1.0 - images, images)


def posterize(images, bits):
  step = 2.0 ** (8 - bits)
  return tf.floor(tf.round(images * 255) / step) * step / 255


def sharpen(images, factor):
  """Blends towards PIL's smoothing filter (factor < 1) or away from it."""
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13
  channels = images.shape[-1]
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
  smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], 'SAME')
  # Borders keep their pixels, as in PIL.
  inner = tf.pad(tf.ones_like(images[:, 1:-1, 1:-1, :1]),
                 [[0, 0], [1, 1], [1, 1], [0, 0]])
  smooth = inner * smooth + (1 - inner) * images
  return augment.blend(smooth, images, factor)


def _photometric(images, op, sign, strength):
  """Applies to each example the photometric op named by its ``op`` id; each
  op runs only on the examples that drew it."""
  enhance = 1.0 + 0.9 * strength * sign
  candidates = {
      'autocontrast': lambda x, f: autocontrast(x),
      'equalize': lambda x, f: equalize(x),
      'solarize': lambda x, f: solarize(x, 1.0 - strength),
      'color': augment.adjust_saturation,
      'posterize': lambda x, f: posterize(x, 8 - round(4 * strength)),
      'contrast': augment.adjust_contrast,
      'brightness': augment.adjust_brightness,
      'sharpness': sharpen,
  }
  out = images
  for name, apply in candidates.items():
    chosen = tf.where(tf.equal(op, OPS.index(name)))
    result = apply(tf.gather_nd(images, chosen), tf.gather_nd(enhance, chosen))
    out = tf.tensor_scatter_nd_update(out, chosen, result)
  return out


def _geometric(op, sign, strength, hw):
  """Per-example affine matrices of the geometric op named by ``op``."""
  signed = sign * strength
  identity = tf.eye(3, batch_shape=tf.shape(op))
  zero = tf.zeros_like(signed)
  candidates = {
      'rotate': augment.about_centre(
          augment.rotation(signed * 30 * math.pi / 180), hw),
      'shear_x': augment.about_centre(augment.shear_x(0.3 * signed), hw),
      'shear_y': augment.about_centre(augment.shear_y(0.3 * signed), hw),
      'translate_x': augment.translation(0.45 * hw[1] * signed, zero),
      'translate_y': augment.translation(zero, 0.45 * hw[0] * signed),
  }
  matrix = identity
  for name in _GEOMETRIC:
    chosen = tf.equal(op, OPS.index(name))[:, None, None]
    matrix = tf.where(chosen, candidates[name], matrix)
  return matrix


def randaugment(seed, images, layers=2, magnitude=9.0):
  """Applies the photometric ops; returns ``(images, matrices)`` where the
  (B, 3, 3) matrices hold the composed geometric ops, for ``augment.warp``."""
  batch_size = tf.shape(images)[0]
  hw = images.shape[1:3]
  strength = float(magnitude) / 10
  matrices = tf.eye(3, batch_shape=[batch_size])
  for layer_seed in augment.split_seed(seed, layers):
    op_seed, sign_seed = augment.split_seed(layer_seed, 2)
    op = tf.random.stateless_uniform([batch_size], op_seed, 0, len(OPS),
                                     tf.int32)
    sign = tf.where(tf.random.stateless_uniform([batch_size], sign_seed) < 0.5,
                    -1.0, 1.0)
    images = _photometric(images, op, sign, strength)
    matrices = _geometric(op, sign, strength, hw) @ matrices
  return images, matrices
