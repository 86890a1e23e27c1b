"""Input preprocessing of imported models, as data.

A pretrained model expects its inputs scaled the way its trainer scaled
them. An imported model carries that as a *spec*, a small JSON-ready dict::

    {'name': 'caffe', 'channel_order': 'bgr', 'scale': 1.0,
     'mean': [103.939, 116.779, 123.68], 'std': [1.0, 1.0, 1.0]}

``apply(spec, images)`` maps raw RGB images (floats in 0–255, NHWC) to
``(images[..., order] * scale - mean) / std``. The named presets are the
modes of ``keras.applications.imagenet_utils.preprocess_input``:

- ``'tf'``: to [-1, 1] (MobileNet, MobileNetV2).
- ``'caffe'``: RGB to BGR, minus the ImageNet BGR means (ResNet50, VGG).
- ``'torch'``: to [0, 1], minus the ImageNet RGB means, over their
  standard deviations.

Keras's EfficientNet normalises inside the model instead, with statistics
stored in its weight file; ``keras_layers`` turns those layers into a spec.
"""

import math
from typing import Mapping

import numpy as np

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# Keras's Normalization layer divides by max(sqrt(variance), this).
KERAS_EPSILON = 1e-7

PRESETS = {
    'tf': dict(channel_order='rgb', scale=1 / 127.5, mean=[1.0] * 3,
               std=[1.0] * 3),
    'caffe': dict(channel_order='bgr', scale=1.0, mean=list(CAFFE_MEAN_BGR),
                  std=[1.0] * 3),
    'torch': dict(channel_order='rgb', scale=1 / 255, mean=list(
        IMAGENET_MEAN_RGB), std=list(IMAGENET_STD_RGB)),
}
_KEYS = ('channel_order', 'scale', 'mean', 'std')


def spec(name_or_spec: str | Mapping) -> dict:
  """The validated spec dict of a preset name or of a spec."""
  if isinstance(name_or_spec, str):
    if name_or_spec not in PRESETS:
      raise ValueError(f'unknown preprocessing {name_or_spec!r}; choose one '
                       f'of: {", ".join(PRESETS)}, or pass a spec dict with '
                       f'the keys {", ".join(_KEYS)}')
    return {'name': name_or_spec, **PRESETS[name_or_spec]}
  missing = [k for k in _KEYS if k not in name_or_spec]
  if missing:
    raise ValueError(f'preprocessing spec lacks {missing}; a spec has the '
                     f'keys {", ".join(_KEYS)} (and an optional name)')
  out = {'name': str(name_or_spec.get('name', 'custom')),
         'channel_order': name_or_spec['channel_order'],
         'scale': float(name_or_spec['scale']),
         'mean': [float(v) for v in name_or_spec['mean']],
         'std': [float(v) for v in name_or_spec['std']]}
  if out['channel_order'] not in ('rgb', 'bgr'):
    raise ValueError(f"preprocessing channel_order must be 'rgb' or 'bgr'; "
                     f"got {out['channel_order']!r}")
  if len(out['mean']) != 3 or len(out['std']) != 3:
    raise ValueError('preprocessing mean and std need one value per RGB '
                     f"channel; got {out['mean']} and {out['std']}")
  if not all(s > 0 for s in out['std']):
    raise ValueError(f"preprocessing std must be positive; got {out['std']}")
  return out


def apply(name_or_spec: str | Mapping, images):
  """Preprocesses raw RGB images (0–255 floats, channels last).

  Works on numpy and JAX arrays alike and returns float32.
  """
  s = spec(name_or_spec)
  if images.shape[-1] != 3:
    raise ValueError(f'preprocessing takes RGB images with 3 channels last; '
                     f'got shape {tuple(images.shape)}')
  x = images.astype(np.float32)
  if s['channel_order'] == 'bgr':
    x = x[..., ::-1]
  mean = np.asarray(s['mean'], np.float32)
  std = np.asarray(s['std'], np.float32)
  return (x * np.float32(s['scale']) - mean) / std


def keras_layers(scale: float, offset: float, mean, variance,
                 channel_scale=None) -> dict:
  """The spec of Keras's in-model preprocessing: ``Rescaling(scale,
  offset)``, ``Normalization(mean, variance)``, then an optional per-channel
  ``Rescaling(channel_scale)`` (EfficientNet's stem)."""
  channel_scale = [1.0] * 3 if channel_scale is None else channel_scale
  std = [max(math.sqrt(float(v)), KERAS_EPSILON) / float(c)
         for v, c in zip(variance, channel_scale)]
  return spec({'name': 'keras_normalization', 'channel_order': 'rgb',
               'scale': scale, 'mean': [float(m) - offset for m in mean],
               'std': std})
