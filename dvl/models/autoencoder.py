"""A convolutional autoencoder for image-to-image tasks: denoising (Vincent
et al. 2008, "Extracting and composing robust features with denoising
autoencoders"), colourisation (Zhang, Isola & Efros 2016, "Colorful image
colorization", here as plain regression) and super-resolution (Dong et al.
2016, "Image super-resolution using deep convolutional networks").

The encoder is a stack of 3×3 stride-2 convolutions (``widths``); the
decoder mirrors it with 4×4 stride-2 transposed convolutions, adds
``log2(upscale)`` more of them for super-resolution, and ends with a 3×3
convolution to ``out_channels`` and a sigmoid, so the output is an image in
[0, 1] of side ``input side × upscale``. Every hidden layer has BatchNorm and
ReLU. The modes are fields:

* denoising: noisy image in, clean image out (``out_channels=None`` keeps the
  input's channels, ``upscale=1``);
* colourisation: grey image in (1 channel), ``out_channels=3``;
* super-resolution: low-resolution image in, ``upscale=2`` or ``4``.

There is no class count: the output is an image. Input sides must be
divisible by ``2**len(widths)``.
"""

from typing import ClassVar, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec
from dvl.models.unet import check_divisible

MODES = {
    'denoise': dict(out_channels=None, upscale=1),
    'colorize': dict(out_channels=3, upscale=1),
    'super_resolution': dict(out_channels=None, upscale=2),
}


class UpConvBN(nn.Module):
  """A 4×4 stride-2 transposed convolution (doubling the sides), BatchNorm,
  ReLU."""
  features: int
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.ConvTranspose(self.features, (4, 4), (2, 2), padding='SAME',
                         use_bias=False, dtype=self.dtype, name='deconv')(x)
    x = layers.Norm(dtype=self.dtype, name='norm')(x, train=train)
    return nn.relu(x)


class ConvAutoencoder(nn.Module):
  """Strided-convolution encoder, transposed-convolution decoder, sigmoid.

  Features: ``stage1``… (encoder maps), ``latent`` (the bottleneck),
  ``pre_logits`` (the decoder's last hidden map).
  """
  widths: Sequence[int] = (32, 64, 128)
  out_channels: Optional[int] = None
  upscale: int = 1
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 64

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.upscale < 1 or self.upscale & (self.upscale - 1):
      raise ValueError(f'autoencoder: upscale must be a power of 2 (1 = same '
                       f'size); got {self.upscale}')
    depth = len(self.widths)
    check_divisible(x, factor=2 ** depth, depth=depth, model='autoencoder')
    out_channels = self.out_channels or x.shape[-1]
    x = x.astype(self.dtype)
    features = {}
    for i, c in enumerate(self.widths):
      x = layers.ConvBN(c, 3, 2, padding='same', dtype=self.dtype,
                        name=f'encoder{i + 1}')(x, train=train)
      features[f'stage{i + 1}'] = x
    features['latent'] = x
    extra = self.upscale.bit_length() - 1
    decoder = list(reversed(self.widths[:-1])) + [self.widths[0]] * (extra + 1)
    for i, c in enumerate(decoder):
      x = UpConvBN(c, self.dtype, name=f'decoder{i + 1}')(x, train=train)
    features['pre_logits'] = x
    x = nn.Conv(out_channels, (3, 3), dtype=self.dtype, name='output')(x)
    return nn.sigmoid(x), features


SPECS = tuple(
    spec.ModelSpec(f'autoencoder_{mode}', ConvAutoencoder, fields,
                   task='reconstruction', resolution=64)
    for mode, fields in MODES.items())
