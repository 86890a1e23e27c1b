"""PSNR and SSIM (Wang et al. 2004) against hand computations and a direct
evaluation of the SSIM formula with the full 2-D window."""

import numpy as np
import pytest

from dvl import draw, image_metrics


def test_psnr_of_a_known_mse():
  a = np.zeros((2, 8, 8, 3), np.float32)
  b = a + 0.1  # MSE 0.01: 10 log10(1 / 0.01) = 20 dB
  np.testing.assert_allclose(image_metrics.psnr(a, b), [20.0, 20.0],
                             rtol=1e-5)
  # The same error on the 0..255 scale: MSE 25.5^2 with range 255.
  np.testing.assert_allclose(
      image_metrics.psnr(a * 255, b * 255, data_range=255.0), [20.0, 20.0],
      rtol=1e-5)
  # Half the pixels off by 0.2: MSE 0.02, 10 log10(50) = 16.9897 dB.
  c = a.copy()
  c[:, :4] = 0.2
  np.testing.assert_allclose(image_metrics.psnr(a, c), 16.9897, rtol=1e-4)
  assert np.isinf(image_metrics.psnr(a, a)).all()


def test_ssim_of_identical_images_is_one():
  x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(image_metrics.ssim(x, x), [1.0, 1.0], rtol=1e-5)


def test_ssim_of_two_flat_images_is_the_luminance_term():
  # No variance: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) * C2/C2.
  a = np.full((1, 12, 12, 1), 0.2, np.float32)
  b = np.full((1, 12, 12, 1), 0.4, np.float32)
  c1 = (0.01 * 1.0) ** 2
  expected = (2 * 0.2 * 0.4 + c1) / (0.2 ** 2 + 0.4 ** 2 + c1)
  np.testing.assert_allclose(image_metrics.ssim(a, b), [expected], rtol=1e-4)


def _ssim_direct(a, b, data_range=1.0):
  """SSIM of one channel, written out: the 11x11 window at every place it
  fits, the weighted statistics, Eq. 13, then the mean."""
  g = image_metrics.gaussian_window(11, 1.5).astype(np.float64)
  w = np.outer(g, g)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  values = []
  for i in range(a.shape[0] - 10):
    for j in range(a.shape[1] - 10):
      x, y = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
      mx, my = np.sum(w * x), np.sum(w * y)
      vx, vy = np.sum(w * (x - mx) ** 2), np.sum(w * (y - my) ** 2)
      cov = np.sum(w * (x - mx) * (y - my))
      values.append((2 * mx * my + c1) * (2 * cov + c2)
                    / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
  return np.mean(values)


def test_ssim_equals_the_formula_written_out_per_channel():
  rng = np.random.default_rng(1)
  a = rng.uniform(size=(1, 14, 13, 2))
  b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
  expected = np.mean([_ssim_direct(a[0, ..., c], b[0, ..., c])
                      for c in range(2)])
  np.testing.assert_allclose(image_metrics.ssim(a, b), [expected], rtol=1e-4)
  g = image_metrics.gaussian_window()
  assert g.shape == (11,) and abs(g.sum() - 1) < 1e-6 and g.argmax() == 5


def test_ssim_refuses_images_smaller_than_the_window():
  with pytest.raises(ValueError, match='smaller than the 11x11 window'):
    image_metrics.ssim(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1)))


def test_triples_are_written(tmp_path):
  rng = np.random.default_rng(0)
  path = draw.save_triples(tmp_path / 'sr.png', rng.uniform(size=(2, 8, 8, 1)),
                           rng.uniform(size=(2, 16, 16, 3)),
                           rng.uniform(size=(2, 16, 16, 3)))
  assert path.read_bytes()[:4] == b'\x89PNG'
