"""Fully convolutional networks (Long, Shelhamer & Darrell 2015, "Fully
convolutional networks for semantic segmentation", Fig. 3): FCN-32s, FCN-16s
and FCN-8s on any registered backbone.

The backbone gives three maps at strides 8, 16 and 32, the paper's pool3,
pool4 and pool5: ``stage3``/``stage4``/``stage5`` of VGG (taken before
VGG's pooling, so they are max-pooled 2×2 here) and ``stage2``/``stage3``/
``stage4`` of ResNet; ``skip_features`` names others. A map at half its
stride is max-pooled to it; any other stride is an error.

On VGG the classifier is *convolutionalised* (Sec. 3.1): the backbone's own
``fc1`` and ``fc2`` weights become a k×k convolution (k×k = VGG's pooled
grid, 7×7) and a 1×1 convolution on pool5 (fc6 and fc7), with ReLU and
dropout, so ImageNet weights carry over unchanged. Other backbones have no
such layers and score their stride-32 map directly.

A 1×1 convolution scores each map; coarser scores are upsampled 2× by a
transposed convolution and summed with the next finer ones (the skips' score
layers start at zero, Sec. 4.2, so FCN-16s and FCN-8s start as FCN-32s);
the last upsampling (32×, 16× or 8×) returns to the input resolution. Every
transposed convolution starts as bilinear interpolation and is learned
(Sec. 3.3). The input is padded at the bottom and right to a multiple of 32
(the Caffe models padded 100 pixels for the same reason) and the scores are
cropped back, so any input size works.
"""

from typing import ClassVar, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dvl import layers
from dvl.models import spec
from dvl.models.yolo import registered_backbone

VARIANTS = {'fcn32s': 32, 'fcn16s': 16, 'fcn8s': 8}


def bilinear_kernel(factor: int) -> np.ndarray:
  """The ``k×k`` bilinear interpolation kernel of an upsampling by
  ``factor``, with ``k = 2·factor − factor mod 2`` (the FCN code's rule)."""
  size = 2 * factor - factor % 2
  centre = factor - 1 if size % 2 else factor - 0.5
  taps = 1 - np.abs(np.arange(size) - centre) / factor
  return np.outer(taps, taps).astype(np.float32)


def bilinear_init(key, shape, dtype=jnp.float32):
  """Initialiser for a ``(k, k, C, C)`` transposed-convolution kernel:
  bilinear upsampling of every channel on its own (zero across channels).

  The upsampling factor is ``k // 2``; ``k`` must be even (factor ≥ 1 with
  ``k = 2·factor``) and the input and output channels equal.
  """
  del key
  kh, kw, cin, cout = shape
  if kh != kw or kh % 2 or cin != cout:
    raise ValueError(f'bilinear_init takes an even square (k, k, C, C) kernel;'
                     f' got {shape}')
  kernel = bilinear_kernel(kh // 2)
  return jnp.asarray(kernel[:, :, None, None] * np.eye(cin)[None, None],
                     dtype)


class BilinearUpsample(nn.Module):
  """Learned ``factor``× upsampling started as bilinear interpolation.

  A transposed convolution (kernel ``2·factor``, stride ``factor``, no
  bias); its full output is cropped by ``factor/2`` on each side so that
  output pixel ``o`` sits at input coordinate ``(o + ½)/factor − ½``, the
  half-pixel convention of ``jax.image.resize``. Output side = input ×
  ``factor``.
  """
  factor: int
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x):
    f = self.factor
    if f < 2 or f % 2:
      raise ValueError(f'BilinearUpsample factor must be even; got {f}')
    y = nn.ConvTranspose(x.shape[-1], (2 * f, 2 * f), (f, f), padding='VALID',
                         use_bias=False, kernel_init=bilinear_init,
                         dtype=self.dtype, name='deconv')(x)
    h, w = x.shape[1] * f, x.shape[2] * f
    return y[:, f // 2:f // 2 + h, f // 2:f // 2 + w]


class FoldedConv(nn.Conv):
  """A convolution whose kernel and bias are given, not owned: a dense
  layer's weights folded into a ``k×k`` convolution (Sec. 3.1). Being an
  ``nn.Conv`` (with ``features`` and ``kernel_size`` set to match), MAC
  counting sees it; it creates no parameters."""

  def __call__(self, x, kernel, bias):  # pylint: disable=arguments-differ
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(self.dtype), (1, 1),
        layers.explicit_padding('symmetric', kernel.shape[:2]),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias.astype(self.dtype)


def _align_stride(x, input_height: int, stride: int, name: str):
  """Max-pools ``x`` 2×2 when it sits at half of ``stride``."""
  actual = input_height // x.shape[1]
  if actual * 2 == stride:
    return layers.max_pool(x, 2, 2, padding='valid')
  if actual != stride:
    raise ValueError(
        f'fcn: feature {name!r} has stride {actual}, but it must give the '
        f'stride-{stride} scores (or stride {stride // 2}, pooled here); '
        'name the right maps with skip_features')
  return x


class FCN(nn.Module):
  """FCN-32s/16s/8s: ``stride`` is 32, 16 or 8.

  Returns logits ``[N, H, W, num_classes]`` at the input size, and the
  backbone's features plus ``score32`` (and ``score16``, ``score8``),
  ``pre_logits`` (the stride-32 map that is scored).
  """
  num_classes: int = 21
  stride: int = 8
  backbone: str = 'vgg16'
  backbone_fields: Optional[Mapping] = None
  skip_features: Optional[Sequence[str]] = None
  dropout: float = 0.5
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.stride not in (8, 16, 32):
      raise ValueError(f'fcn: stride must be 32, 16 or 8 (FCN-32s/16s/8s); '
                       f'got {self.stride}')
    if x.ndim != 4:
      raise ValueError(f'fcn takes NHWC batches; got shape {tuple(x.shape)}')
    height, width = x.shape[1:3]
    padded = -(-height // 32) * 32
    x = jnp.pad(x.astype(self.dtype), [(0, 0), (0, padded - height),
                                       (0, -(-width // 32) * 32 - width),
                                       (0, 0)])
    net = registered_backbone(self, self.backbone, self.backbone_fields)
    _, features = net(x, train=train)
    maps = [_align_stride(features[n], padded, s, n)
            for n, s in zip(self._skip_names(features), (8, 16, 32))]
    top = self._classifier(net, maps[2], train=train)
    features = {**features, 'pre_logits': top}
    score = self._score(top, 'score32')
    features['score32'] = score
    fusions = {32: (), 16: ((maps[1], 16),),
               8: ((maps[1], 16), (maps[0], 8))}[self.stride]
    for skip, s in fusions:
      score = BilinearUpsample(2, self.dtype, name=f'upscore{s}')(score)
      score = score + self._score(skip, f'score_skip{s}', zero=True)
      features[f'score{s}'] = score
    logits = BilinearUpsample(self.stride, self.dtype, name='upscore')(score)
    return logits[:, :height, :width], features

  def _skip_names(self, features):
    names = self.skip_features or (
        ('stage3', 'stage4', 'stage5') if self.backbone.startswith('vgg')
        else ('stage2', 'stage3', 'stage4'))
    missing = [n for n in names if n not in features]
    if len(names) != 3 or missing:
      raise ValueError(f'fcn: skip_features must name three backbone maps '
                       f'(strides 8, 16, 32); missing {missing}; the backbone '
                       f'has: {", ".join(features)}')
    return names

  def _score(self, x, name, zero=False):
    init = nn.initializers.zeros if zero else nn.initializers.lecun_normal()
    return nn.Conv(self.num_classes, (1, 1), kernel_init=init,
                   dtype=self.dtype, name=name)(x)

  def _classifier(self, net, x, *, train):
    """fc6 and fc7 as convolutions from the backbone's dense layers (VGG)."""
    params = net.variables.get('params', {})
    if 'fc1' not in params or 'fc2' not in params:
      return x
    drop = nn.Dropout(self.dropout, deterministic=not train)
    for name, fc in (('fc6', 'fc1'), ('fc7', 'fc2')):
      kernel, bias = params[fc]['kernel'], params[fc]['bias']
      k = int(round((kernel.shape[0] / x.shape[-1]) ** 0.5))
      if k * k * x.shape[-1] != kernel.shape[0]:
        raise ValueError(f'fcn: cannot fold {fc} of shape {kernel.shape} '
                         f'into a convolution on {x.shape[-1]} channels')
      x = FoldedConv(kernel.shape[1], (k, k), dtype=self.dtype, name=name)(
          x, kernel.reshape(k, k, x.shape[-1], -1), bias)
      x = drop(nn.relu(x))
    return x


SPECS = tuple(spec.ModelSpec(name, FCN, dict(stride=stride), task='segmentation')
              for name, stride in VARIANTS.items())
