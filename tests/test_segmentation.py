"""Segmentation metrics (Long et al. 2015, Sec. 5) and labels against hand
computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvl import draw, losses, segmentation

IGNORE = segmentation.IGNORE_LABEL
LABELS = np.array([[[0, 0, 1, 2],
                    [1, IGNORE, 2, 2]]])
PREDS = np.array([[[0, 1, 1, 2],
                   [1, 0, 0, 2]]])
# Counted (true, predicted) pairs: (0,0) (0,1) (1,1) (2,2) (1,1) (2,0) (2,2);
# the ignored pixel (predicted 0) counts nowhere.
CM = np.array([[1, 1, 0],
               [0, 2, 0],
               [1, 0, 2]])


def test_confusion_matrix_leaves_out_the_ignore_label():
  cm = segmentation.confusion_matrix(PREDS, LABELS, num_classes=3)
  np.testing.assert_array_equal(cm, CM)
  logits = jax.nn.one_hot(PREDS, 3) * 5.0
  np.testing.assert_array_equal(
      segmentation.confusion_matrix(logits, LABELS, num_classes=3), CM)


def test_accuracy_and_iou_equal_the_hand_computation():
  np.testing.assert_allclose(segmentation.pixel_accuracy(CM), 5 / 7, rtol=1e-6)
  # IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1), class 1: 2 / (2 + 1),
  # class 2: 2 / (2 + 1).
  np.testing.assert_allclose(segmentation.class_iou(CM), [1 / 3, 2 / 3, 2 / 3],
                             rtol=1e-6)
  np.testing.assert_allclose(segmentation.mean_iou(CM), 5 / 9, rtol=1e-6)
  # Foreground = classes 1 and 2 merged: TP 4, FP 1 (true 0 -> 1), FN 1.
  np.testing.assert_allclose(segmentation.foreground_iou(CM), 4 / 6,
                             rtol=1e-6)


def test_absent_classes_are_left_out_of_the_mean():
  cm = segmentation.confusion_matrix(PREDS, LABELS, num_classes=4)
  iou = np.asarray(segmentation.class_iou(cm))
  assert np.isnan(iou[3])
  np.testing.assert_allclose(segmentation.mean_iou(cm), 5 / 9, rtol=1e-6)


def test_matrices_add_up_over_batches_under_jit():
  fn = jax.jit(lambda p, l: segmentation.confusion_matrix(p, l, num_classes=3))
  total = fn(PREDS[:, :1], LABELS[:, :1]) + fn(PREDS[:, 1:], LABELS[:, 1:])
  np.testing.assert_array_equal(total, CM)


def test_trimap_becomes_pet_background_and_ignored_boundary():
  trimap = np.array([[[1], [2], [3], [0]]], np.uint8).reshape(1, 1, 4, 1)
  labels = segmentation.trimap_to_labels(trimap)
  np.testing.assert_array_equal(labels, [[[1, 0, IGNORE, IGNORE]]])


def test_pixel_loss_on_trimap_labels_skips_the_boundary():
  trimap = np.array([[[1, 2, 3]]])
  logits = jnp.array([[[[0.0, 2.0], [1.0, 0.0], [9.0, -9.0]]]])
  loss = losses.pixel_softmax_cross_entropy(
      logits, segmentation.trimap_to_labels(trimap), ignore_label=IGNORE)
  # Only the pet pixel (label 1) and the background pixel (label 0) count.
  expected = (np.log(1 + np.exp(-2.0)) + np.log(1 + np.exp(-1.0))) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_mask_of_the_wrong_size_names_the_example():
  images = [np.zeros((8, 8, 3)), np.zeros((8, 8, 3))]
  masks = [np.zeros((8, 8), np.int32), np.zeros((8, 6), np.int32)]
  with pytest.raises(ValueError, match=r'example 1: mask .*\(8, 6\).*resize'):
    segmentation.validate_masks(images, masks, num_classes=2)


def test_out_of_range_label_names_the_example_and_pixel():
  masks = np.zeros((2, 4, 4, 1), np.int32)
  masks[1, 2, 3] = 5
  masks[0, 0, 0] = IGNORE
  with pytest.raises(ValueError,
                     match=r'example 1: label 5 at pixel \(2, 3\) .*\[0, 3\)'):
    segmentation.validate_masks(np.zeros((2, 4, 4, 3)), masks, num_classes=3)
  masks[1, 2, 3] = 2
  segmentation.validate_masks(np.zeros((2, 4, 4, 3)), masks, num_classes=3)


def test_segmentation_grid_is_written(tmp_path):
  images = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
  path = draw.save_segmentations(tmp_path / 'seg.png', images,
                                 np.zeros((2, 8, 8, 3)),
                                 np.full((2, 8, 8), IGNORE), num_classes=3)
  assert path.read_bytes()[:4] == b'\x89PNG'
