"""Each augmentation does what its name promises, on small synthetic batches."""

import numpy as np
import pytest
import tensorflow as tf

from dvl.data import augment
from dvl.data import normalize
from dvl.data import randaugment

SEED = tf.constant([3, 7], tf.int64)


def _images(batch=4, size=16, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(0, 1, (batch, size, size, channels)).astype(np.float32)


def _batch_with_boxes(size=16):
  """One image with a 1-valued rectangle, its mask and its box."""
  image = np.zeros((1, size, size, 1), np.float32)
  image[0, 2:6, 3:9] = 1.0
  return dict(image=image, mask=image.astype(np.uint8),
              boxes=np.array([[[3, 2, 9, 6], [0, 0, 0, 0]]], np.float32),
              box_label=np.array([[1, -1]], np.int32))


def test_full_window_is_identity_and_flip_is_mirror():
  images = _images()
  windows = augment.centre_windows(4, (16, 16))
  same = augment.crop_resize(dict(image=images), windows, (16, 16))['image']
  np.testing.assert_allclose(same, images, atol=1e-5)
  flipped = dict(windows, flip=tf.constant([True, False, True, False]))
  out = augment.crop_resize(dict(image=images), flipped, (16, 16))['image']
  np.testing.assert_allclose(out[0], images[0, :, ::-1], atol=1e-5)
  np.testing.assert_allclose(out[1], images[1], atol=1e-5)


def test_flip_moves_boxes_and_masks():
  batch = _batch_with_boxes()
  windows = dict(augment.centre_windows(1, (16, 16)), flip=tf.constant([True]))
  out = augment.crop_resize(batch, windows, (16, 16))
  np.testing.assert_allclose(out['boxes'][0, 0], [16 - 9, 2, 16 - 3, 6])
  assert out['box_label'].numpy().tolist() == [[1, -1]]
  np.testing.assert_array_equal(out['mask'][0], batch['mask'][0, :, ::-1])


def test_pad_crop_keeps_size_and_shifts_by_whole_pixels():
  images = _images(batch=8)
  windows = augment.pad_crop_windows(SEED, 8, (16, 16), (16, 16), padding=4)
  out = augment.crop_resize(dict(image=images), windows, (16, 16))['image']
  assert out.shape == images.shape
  padded = np.pad(images, [(0, 0), (4, 4), (4, 4), (0, 0)])
  dy = windows['top'].numpy().round().astype(int)
  dx = windows['left'].numpy().round().astype(int)
  assert np.abs(dy).max() <= 4 and len(set(zip(dy, dx))) > 1
  for i in range(8):
    crop = padded[i, 4 + dy[i]:20 + dy[i], 4 + dx[i]:20 + dx[i]]
    np.testing.assert_allclose(out[i], crop, atol=1e-4)


def test_inception_windows_respect_scale_and_ratio():
  windows = augment.inception_windows(SEED, 256, (40, 30), scale=(0.2, 0.6),
                                      ratio=(0.5, 2.0))
  top, left = windows['top'].numpy(), windows['left'].numpy()
  height, width = windows['height'].numpy(), windows['width'].numpy()
  area = height * width / (40 * 30)
  square = np.isclose(height, 30) & np.isclose(width, 30)  # Fallback windows.
  assert np.all((area[~square] > 0.2 - 1e-4) & (area[~square] < 0.6 + 1e-4))
  assert np.all((width / height > 0.5 - 1e-4) & (width / height < 2 + 1e-4))
  assert np.all((top >= 0) & (top + height <= 40 + 1e-3))
  assert np.all((left >= 0) & (left + width <= 30 + 1e-3))
  out = augment.crop_resize(dict(image=_images(256, 40)[:, :, :30]), windows,
                            (24, 24))
  assert out['image'].shape == (256, 24, 24, 3)


def test_crop_moves_boxes_into_window_coordinates():
  batch = _batch_with_boxes()
  windows = dict(top=tf.constant([2.0]), left=tf.constant([4.0]),
                 height=tf.constant([8.0]), width=tf.constant([8.0]),
                 flip=tf.constant([False]))
  out = augment.crop_resize(batch, windows, (16, 16))
  # x: (3 - 4) * 2 clipped to 0, (9 - 4) * 2; y: (2 - 2) * 2, (6 - 2) * 2.
  np.testing.assert_allclose(out['boxes'][0, 0], [0, 0, 10, 8])


def test_warp_by_whole_pixels_translates_image_boxes_and_masks():
  batch = _batch_with_boxes()
  shift = augment.translation(tf.constant([2.0]), tf.constant([3.0]))
  out = augment.warp(batch, shift)
  expected = np.zeros_like(batch['image'])
  expected[0, 5:9, 5:11] = 1.0
  np.testing.assert_allclose(out['image'], expected, atol=1e-5)
  np.testing.assert_array_equal(out['mask'], expected.astype(np.uint8))
  np.testing.assert_allclose(out['boxes'][0, 0], [5, 5, 11, 9])


def test_random_affine_matrices_fix_the_centre_without_translation():
  matrices = augment.affine_matrices(SEED, 16, (32, 32), degrees=20,
                                     scale=0.1, shear=10)
  centre = np.array([16.0, 16.0, 1.0])
  np.testing.assert_allclose(matrices.numpy() @ centre,
                             np.tile(centre, (16, 1)), atol=1e-4)


def test_color_jitter_is_identity_at_zero_and_stays_in_range():
  images = _images()
  np.testing.assert_allclose(augment.color_jitter(SEED, images, 0.0), images,
                             atol=1e-5)
  out = augment.color_jitter(SEED, images, 0.8).numpy()
  assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, images)


def test_standardize_gives_zero_mean_unit_std():
  rng = np.random.default_rng(0)
  images = rng.beta(2, 5, (64, 8, 8, 3)).astype(np.float32) * [1, 0.5, 0.2]
  mean, std = normalize.channel_stats(images)
  out = normalize.standardize(images, mean, std)
  np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_zca_whitens_its_fitting_data():
  rng = np.random.default_rng(0)
  mixing = rng.normal(size=(12, 12))
  features = rng.normal(size=(4000, 12)) @ mixing + 3.0
  mean, matrix = normalize.fit_zca(features, epsilon=1e-6)
  images = tf.constant(features.reshape(4000, 2, 2, 3), tf.float32)
  white = normalize.apply_zca(images, mean, matrix).numpy().reshape(4000, 12)
  np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(12),
                             atol=1e-3)
  np.testing.assert_allclose(matrix, matrix.T, atol=1e-4)  # ZCA is symmetric.


def test_zca_refuses_huge_inputs():
  with pytest.raises(ValueError, match='ZCA over 12288 features'):
    normalize.fit_zca(np.zeros((10, 64 * 64 * 3)), 0.1)


def _labelled_constant_images(batch=8, size=16):
  """Image i is the constant i; its label is i (one class per image)."""
  values = np.arange(batch, dtype=np.float32)
  images = np.broadcast_to(values[:, None, None, None], (batch, size, size, 1))
  return tf.constant(images), tf.one_hot(np.arange(batch), batch)


def test_mixup_labels_sum_to_one_and_match_the_images():
  images, soft = _labelled_constant_images()
  mixed, labels = augment.mixup(SEED, images, soft, alpha=0.4)
  labels = labels.numpy()
  np.testing.assert_allclose(labels.sum(axis=1), 1, atol=1e-6)
  # A constant image i mixed with j equals the label-weighted mean of i and j.
  np.testing.assert_allclose(mixed.numpy()[:, 0, 0, 0],
                             labels @ np.arange(8), atol=1e-4)


def test_cutmix_area_matches_label_weights():
  images, soft = _labelled_constant_images(size=32)
  for seed in range(5):
    mixed, labels = augment.cutmix(tf.constant([seed, 1], tf.int64), images,
                                   soft, alpha=1.0)
    mixed, labels = mixed.numpy()[..., 0], labels.numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1, atol=1e-6)
    for i in range(8):
      own = np.mean(mixed[i] == i)
      assert labels[i, i] == pytest.approx(own, abs=1e-6)


def test_mix_returns_soft_labels_for_integer_labels():
  images = tf.constant(_images(batch=6))
  out, soft = augment.mix(SEED, images, tf.constant([0, 1, 2, 0, 1, 2]), 3,
                          mixup_alpha=0.2, cutmix_alpha=1.0)
  assert out.shape == images.shape and soft.shape == (6, 3)
  np.testing.assert_allclose(soft.numpy().sum(axis=1), 1, atol=1e-6)


def test_equalize_flattens_the_histogram():
  rng = np.random.default_rng(0)
  images = (rng.beta(5, 2, (2, 64, 64, 1)) * 0.5).astype(np.float32)
  out = randaugment.equalize(tf.constant(images)).numpy()
  assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(0.0)
  assert abs(np.median(out) - 0.5) < 0.05


def test_randaugment_is_seeded_and_keeps_the_range():
  images = tf.constant(_images(batch=16))
  first, matrices = randaugment.randaugment(SEED, images, layers=2,
                                            magnitude=9)
  again, _ = randaugment.randaugment(SEED, images, layers=2, magnitude=9)
  other, _ = randaugment.randaugment(tf.constant([4, 7], tf.int64), images,
                                     layers=2, magnitude=9)
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  assert first.numpy().min() >= 0 and first.numpy().max() <= 1
  assert matrices.shape == (16, 3, 3)
  np.testing.assert_allclose(matrices.numpy()[:, 2], np.tile([0, 0, 1],
                                                             (16, 1)))


@pytest.mark.parametrize('op', randaugment.OPS)
def test_every_randaugment_op_runs_at_full_magnitude(op):
  images = tf.constant(_images(batch=2))
  index = tf.fill([2], randaugment.OPS.index(op))
  out = randaugment._photometric(images, index, tf.constant([1.0, -1.0]), 1.0)
  matrix = randaugment._geometric(index, tf.constant([1.0, -1.0]), 1.0,
                                  (16, 16))
  changed = not np.allclose(out, images) or not np.allclose(matrix, np.eye(3))
  assert changed == (op != 'identity')
