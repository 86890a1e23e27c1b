"""Small, fast networks for 32x32 images: the ResNet-9 family.

Page 2018 ("How to train your ResNet", the DAWNBench CIFAR-10 entry): a
``prep`` convolution, then three stages of a 3x3 convolution followed by 2x2
max pooling, the first and last stages with a residual block of two more
convolutions, global max pooling and a linear classifier whose logits are
scaled by ``logit_scale`` (0.125). Its widths are (64, 128, 256, 512).

Two options come from airbench (Jordan 2024, "94% on CIFAR-10 in 3.29
seconds on a single GPU"):

* ``whiten = k`` replaces the prep convolution by a k x k patch-whitening
  layer: its filters are the eigenvectors of the covariance of the training
  set's k x k patches, scaled by the inverse square root of their
  eigenvalues, each once with each sign, so that the first layer starts
  with decorrelated inputs. ``data_init`` fits them to a sample of training
  images; freeze them with ``config.optim.freeze = 'prep/kernel'``.
* ``double`` gives each stage a second 3x3 convolution after the pooled one
  (airbench's block, without a residual connection).
* ``dirac`` initialises the stages' convolutions so that their first
  min(C_in, C_out) filters pass their input channels through (airbench's
  identity initialisation, which lets a plain network start as a shallow
  one).

Each stage pools right after its convolution, before BatchNorm, which
normalises a map four times smaller; pooling is a reshape and a maximum,
which XLA differentiates faster on CPU than a reduce-window. ``stem_stride``
2 makes the prep layer a 2x2 patch embedding (space-to-depth), so the
network runs at half the resolution for a quarter of the MACs.
"""

from typing import Callable, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dvl import layers
from dvl.models import spec
from dvl.models.common import check_input


def max_pool_2x2(x):
  """2x2 max pooling with stride 2 (odd trailing rows/columns dropped)."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def whitening_kernel(images: np.ndarray, size: int,
                     epsilon: float) -> np.ndarray:
  """A (size, size, C, 2 size^2 C) kernel that whitens size x size patches.

  Column j of the eigenvector matrix of the patch covariance, divided by
  sqrt(eigenvalue_j + epsilon), is filter j (largest eigenvalue first) and
  its negation is filter j + size^2 C: the activation after the layer then
  sees both signs of every whitened component.
  """
  images = np.asarray(images, np.float64)
  channels = images.shape[-1]
  windows = np.lib.stride_tricks.sliding_window_view(
      images, (size, size), axis=(1, 2))  # (N, H', W', C, size, size)
  patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(
      -1, size * size * channels)
  patches = patches - patches.mean(axis=0)
  covariance = patches.T @ patches / len(patches)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  order = np.argsort(eigenvalues)[::-1]
  filters = eigenvectors[:, order] / np.sqrt(
      np.maximum(eigenvalues[order], 0.0) + epsilon)
  filters = np.concatenate([filters, -filters], axis=1)
  return filters.reshape(size, size, channels, -1).astype(np.float32)


def dirac_init(base: Callable) -> Callable:
  """``base``, with the first min(C_in, C_out) filters replaced by identity
  filters (a 1 at the centre tap of their own input channel): the layer
  starts by passing those channels through."""
  def init(key, shape, dtype=jnp.float32):
    kernel = base(key, shape, dtype)
    kh, kw, c_in, c_out = shape
    n = min(c_in, c_out)
    identity = jnp.zeros((kh, kw, c_in, n), dtype).at[
        kh // 2, kw // 2, jnp.arange(n), jnp.arange(n)].set(1)
    return kernel.at[..., :n].set(identity)
  return init


class ConvNormAct(nn.Module):
  """3x3 convolution, optional 2x2 max pooling, BatchNorm, activation."""
  features: int
  pool: bool = False
  kernel_size: int = 3
  strides: int = 1
  act: str = 'relu'
  bn_momentum: float = 0.9
  dirac: bool = False
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    k = (self.kernel_size,) * 2
    padding = 'VALID' if self.strides > 1 else layers.explicit_padding(
        'symmetric', k)
    kernel_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
    if self.dirac:
      kernel_init = dirac_init(kernel_init)
    x = nn.Conv(self.features, k, (self.strides,) * 2, padding=padding,
                use_bias=False, dtype=self.dtype, kernel_init=kernel_init,
                name='conv')(x)
    if self.pool:
      x = max_pool_2x2(x)
    x = layers.Norm(self.bn_momentum, dtype=self.dtype, name='norm')(
        x, train=train)
    return layers.get_activation(self.act)(x)


class ResNetCifar(nn.Module):
  """ResNet-9 (Page 2018) and its narrower, shallower and airbench relatives.

  ``widths`` are the prep layer's and the three stages' channels (the prep
  entry is unused with ``whiten``); ``residual`` says which stages end with
  a residual block; ``whiten``, ``whiten_epsilon`` and ``double`` are
  described in the module docstring.
  """
  widths: Sequence[int] = (64, 128, 256, 512)
  residual: Sequence[bool] = (True, False, True)
  double: bool = False
  dirac: bool = False
  whiten: int = 0
  whiten_epsilon: float = 5e-4
  stem_stride: int = 1
  act: str = 'relu'
  bn_momentum: float = 0.9
  logit_scale: float = 0.125
  num_classes: int = 10
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 32
  min_resolution: ClassVar[int] = 16

  def _check(self):
    if len(self.widths) != 4 or len(self.residual) != 3:
      raise ValueError('resnet_cifar: widths needs 4 entries (prep and three '
                       f'stages) and residual 3; got {self.widths} and '
                       f'{self.residual}')
    if self.whiten < 0 or (self.whiten and self.stem_stride != 1):
      raise ValueError('resnet_cifar: whiten is a patch side >= 1 (0 is off) '
                       'and replaces the strided stem: set stem_stride = 1; '
                       f'got whiten={self.whiten}, '
                       f'stem_stride={self.stem_stride}')

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='resnet_cifar', min_resolution=self.min_resolution,
                stride=8 * self.stem_stride)
    self._check()
    block = dict(act=self.act, bn_momentum=self.bn_momentum, dtype=self.dtype)
    x = x.astype(self.dtype)
    stage_block = dict(block, dirac=self.dirac)
    if self.whiten:
      k = self.whiten
      x = nn.Conv(2 * k * k * x.shape[-1], (k, k), padding='VALID',
                  dtype=self.dtype, name='prep')(x)
      x = layers.get_activation(self.act)(x)
    else:
      stem = self.stem_stride
      x = ConvNormAct(self.widths[0], kernel_size=3 if stem == 1 else stem,
                      strides=stem, name='prep', **block)(x, train=train)
    features = {'stem': x}
    for i, (width, res) in enumerate(zip(self.widths[1:], self.residual)):
      name = f'stage{i + 1}'
      x = ConvNormAct(width, pool=True, name=name, **stage_block)(
          x, train=train)
      if self.double:
        x = ConvNormAct(width, name=f'{name}_conv2', **stage_block)(
            x, train=train)
      if res:
        y = ConvNormAct(width, name=f'{name}_res1', **block)(x, train=train)
        y = ConvNormAct(width, name=f'{name}_res2', **block)(y, train=train)
        x = x + y
      features[name] = x
    x = jnp.max(x, axis=(1, 2))
    features['pre_logits'] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='head')(x)
    return logits * self.logit_scale, features

  def data_init(self, variables: dict, sample) -> dict:
    """``variables`` with the whitening filters fitted to training images.

    ``sample()`` returns training images as the model sees them
    (normalised); without ``whiten`` the variables come back unchanged.
    """
    if not self.whiten:
      return variables
    kernel = whitening_kernel(sample(), self.whiten, self.whiten_epsilon)
    params = dict(variables['params'])
    params['prep'] = dict(params['prep'], kernel=jnp.asarray(kernel))
    return dict(variables, params=params)


SPECS = (spec.ModelSpec('resnet9', ResNetCifar, resolution=32),)
