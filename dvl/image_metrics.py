"""Image quality metrics for reconstruction tasks, as jnp functions: PSNR and
SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from
error visibility to structural similarity").

Both take NHWC batches and return one value per image ``[N]``; average them
over the dataset. ``data_range`` is the span of the pixel values: 1.0 for
images in [0, 1] (the autoencoder's sigmoid output), 255 for uint8.
"""

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _check_pair(a, b, what):
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(f'{what} compares two NHWC batches of the same shape; '
                     f'got {tuple(a.shape)} and {tuple(b.shape)}')


def mse(a, b) -> Array:
  """Mean squared error per image ``[N]``."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check_pair(a, b, 'mse')
  return jnp.mean(jnp.square(a - b), axis=(1, 2, 3))


def psnr(a, b, *, data_range: float = 1.0) -> Array:
  """Peak signal-to-noise ratio per image, in dB: ``10 log10(R² / MSE)``
  with ``R = data_range``; identical images give +inf."""
  return 10.0 * jnp.log10(data_range ** 2 / mse(a, b))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """The normalised 1-D Gaussian of ``size`` taps (SSIM's window is its
  outer product with itself)."""
  taps = np.arange(size) - (size - 1) / 2
  window = np.exp(-taps ** 2 / (2 * sigma ** 2))
  return (window / window.sum()).astype(np.float32)


def _filter(x, window):
  """Separable 'valid' filtering of every channel of NHWC ``x``."""
  n, h, w, c = x.shape
  x = x.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1)
  size = window.shape[0]
  for kernel in (window.reshape(size, 1, 1, 1), window.reshape(1, size, 1, 1)):
    x = jax.lax.conv_general_dilated(x, jnp.asarray(kernel), (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return x.reshape(n, c, *x.shape[1:3])


def ssim(a, b, *, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> Array:
  """Mean structural similarity per image (Wang et al. 2004, Eq. 13).

  Local means, variances and covariance are weighted by a ``window_size``
  Gaussian of standard deviation ``sigma``, evaluated where the window fits
  inside the image (as the authors' MATLAB code does); ``C1 = (k1·R)²``,
  ``C2 = (k2·R)²``. The SSIM map is averaged per channel, then over the
  channels. Identical images give 1.
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check_pair(a, b, 'ssim')
  if min(a.shape[1:3]) < window_size:
    raise ValueError(f'ssim: images of {a.shape[1]}x{a.shape[2]} are smaller '
                     f'than the {window_size}x{window_size} window; use a '
                     'smaller window_size or larger images')
  window = gaussian_window(window_size, sigma)
  mu_a, mu_b = _filter(a, window), _filter(b, window)
  var_a = _filter(a * a, window) - mu_a ** 2
  var_b = _filter(b * b, window) - mu_b ** 2
  cov = _filter(a * b, window) - mu_a * mu_b
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
      (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return jnp.mean(ssim_map, axis=(1, 2, 3))
