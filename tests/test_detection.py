"""YOLO v1 targets, loss, decoding, NMS and mAP against hand computations
(Redmon et al. 2016, Eq. 3; Pascal VOC all-point AP)."""

import jax
import numpy as np
import pytest

from dvl import detection, draw


def test_iou_of_known_boxes():
  a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 4, 2], [1, 1, 1, 3]],
               np.float32)
  b = np.array([[1, 1, 3, 3], [2, 2, 3, 3], [0, 0, 4, 2], [0, 0, 4, 4]],
               np.float32)
  # overlap 1x1 over 4 + 4 - 1; disjoint; identical; zero-area box.
  np.testing.assert_allclose(detection.box_iou(a, b), [1 / 7, 0, 1, 0],
                             rtol=1e-6)
  pair = detection.pairwise_iou(a[:2], b[:2])
  np.testing.assert_allclose(pair, [[1 / 7, 0], [0, 0]], rtol=1e-6)
  assert isinstance(pair, np.ndarray)
  np.testing.assert_allclose(detection.box_iou(jax.numpy.asarray(a), b),
                             [1 / 7, 0, 1, 0], rtol=1e-6)


# A 200 (wide) x 100 (high) image on a 2x2 grid: cells are 100x50 pixels.
BOXES = np.array([[[20, 20, 80, 60],      # centre (50, 40): cell row 0, col 0
                   [120, 55, 200, 95],    # centre (160, 75): row 1, col 1
                   [0, 0, 0, 0]]], np.float32)
LABELS = np.array([[1, 0, -1]])


def test_targets_of_two_boxes_in_known_cells():
  t = np.asarray(detection.assign_targets(BOXES, LABELS, image_hw=(100, 200),
                                          grid=2, num_classes=3))
  assert t.shape == (1, 2, 2, 8)
  # objectness, x, y (in the cell), w, h (of the image), one-hot class.
  np.testing.assert_allclose(t[0, 0, 0], [1, 0.5, 0.8, 0.3, 0.4, 0, 1, 0],
                             rtol=1e-6)
  np.testing.assert_allclose(t[0, 1, 1], [1, 0.6, 0.5, 0.4, 0.4, 1, 0, 0],
                             rtol=1e-6)
  np.testing.assert_array_equal(t[0, 0, 1], 0)
  np.testing.assert_array_equal(t[0, 1, 0], 0)


def test_one_object_per_cell_the_first_box_wins_and_padding_is_ignored():
  boxes = np.array([[[0, 0, 10, 10], [20, 20, 40, 40], [5, 5, 85, 45]]],
                   np.float32)
  # All three centres lie in cell (0, 0) of a 100x100 image on a 2x2 grid,
  # but the first slot is padding.
  t = np.asarray(detection.assign_targets(boxes, np.array([[-1, 1, 0]]),
                                          image_hw=(100, 100), grid=2,
                                          num_classes=2))
  np.testing.assert_allclose(t[0, 0, 0], [1, 0.6, 0.6, 0.2, 0.2, 0, 1],
                             rtol=1e-6)
  assert t[..., 0].sum() == 1


def _cell(p0, p1, classes):
  return np.array([*p0, *p1, *classes], np.float32)


# Hand case on a 2x2 grid, B = 2, C = 2. One object in cell (0, 0):
# centre (0.5, 0.5) of the cell, w = h = 0.25 of the image, class 0, i.e. the
# image-relative box [0.125, 0.125, 0.375, 0.375].
TARGET = np.zeros((1, 2, 2, 7), np.float32)
TARGET[0, 0, 0] = [1, 0.5, 0.5, 0.25, 0.25, 1, 0]
# Predictor 0: centre (0.6, 0.5), sqrt w = 0.4 -> w = 0.16, sqrt h = 0.5:
#   box [0.22, 0.125, 0.38, 0.375]; overlap 0.155 x 0.25 = 0.03875,
#   union 0.04 + 0.0625 - 0.03875 = 0.06375: IoU = 31/51.
# Predictor 1: the exact centre but sqrt w = sqrt h = 0.3 -> 0.09 x 0.09
#   inside the truth: IoU = 0.0081 / 0.0625 = 0.1296. Predictor 0 is
#   responsible though predictor 1's centre is exact.
IOU0 = 31 / 51
PRED = np.zeros((1, 2, 2, 12), np.float32)
PRED[0, 0, 0] = _cell([0.6, 0.5, 0.4, 0.5, 0.7], [0.5, 0.5, 0.3, 0.3, 0.4],
                      [0.9, 0.2])
PRED[0, 0, 1] = _cell([0.1, 0.9, 0.5, 0.5, 0.3], [0.5, 0.5, 0.2, 0.2, 0.1],
                      [5.0, -3.0])  # class scores of an empty cell: no loss
PRED[0, 1, 1] = _cell([0, 0, 0, 0, 0.2], [0, 0, 0, 0, 0], [0, 0])
KW = dict(boxes_per_cell=2, num_classes=2)


def test_responsible_predictor_is_the_one_with_the_highest_iou():
  parts = detection.split_predictions(PRED, **KW)
  index, iou = detection.responsible_predictor(parts, TARGET)
  assert int(index[0, 0, 0]) == 0
  np.testing.assert_allclose(iou[0, 0, 0], [IOU0, 0.1296], rtol=1e-5)
  swapped = PRED.copy()
  swapped[0, 0, 0, 7:9] = 0.5   # predictor 1 becomes the true box: IoU 1
  index, _ = detection.responsible_predictor(
      detection.split_predictions(swapped, **KW), TARGET)
  assert int(index[0, 0, 0]) == 1


def test_without_any_overlap_the_closest_predictor_is_responsible():
  pred = PRED.copy()
  # Both predictors far from the truth (IoU 0); predictor 1 is closer.
  pred[0, 0, 0, 0:4] = [0.0, 0.0, 0.01, 0.01]
  pred[0, 0, 0, 5:9] = [0.1, 0.1, 0.01, 0.01]
  parts = detection.split_predictions(pred, **KW)
  index, iou = detection.responsible_predictor(parts, TARGET)
  np.testing.assert_array_equal(iou[0, 0, 0], [0, 0])
  assert int(index[0, 0, 0]) == 1


def test_loss_equals_the_hand_computation():
  terms = detection.yolo_loss_terms(PRED, TARGET, **KW)
  expected = {
      'xy': 5 * (0.6 - 0.5) ** 2,
      'wh': 5 * ((0.4 - 0.5) ** 2 + (0.5 - 0.5) ** 2),
      'obj': (0.7 - IOU0) ** 2,
      # every predictor but the responsible one: 0.4, 0.3, 0.1, 0.2, 0s.
      'noobj': 0.5 * (0.4 ** 2 + 0.3 ** 2 + 0.1 ** 2 + 0.2 ** 2),
      'class': (0.9 - 1) ** 2 + 0.2 ** 2,
  }
  for name, value in expected.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
  total = detection.yolo_loss(PRED, TARGET, **KW)
  np.testing.assert_allclose(total, sum(expected.values()), rtol=1e-5)
  # Normalised by the batch size: two copies give the same loss.
  two = detection.yolo_loss(np.concatenate([PRED, PRED]),
                            np.concatenate([TARGET, TARGET]), **KW)
  np.testing.assert_allclose(two, total, rtol=1e-6)
  # Without rescoring the confidence target is 1.
  plain = detection.yolo_loss_terms(PRED, TARGET, rescore=False, **KW)
  np.testing.assert_allclose(plain['obj'], (0.7 - 1) ** 2, rtol=1e-5)


def test_confidence_target_carries_no_gradient():
  grads = jax.grad(lambda p: detection.yolo_loss_terms(p, TARGET, **KW)['obj'])(
      PRED)
  # d/dconf (conf - IoU)^2 = 2 (0.7 - IoU); nothing flows into the box.
  np.testing.assert_allclose(grads[0, 0, 0, 4], 2 * (0.7 - IOU0), rtol=1e-5)
  np.testing.assert_array_equal(grads[0, 0, 0, :4], 0)


def test_predictions_of_the_wrong_depth_are_refused():
  with pytest.raises(ValueError, match=r'5B \+ C.*12'):
    detection.yolo_loss(np.zeros((1, 2, 2, 11)), TARGET, **KW)


def test_decoding_gives_pixel_boxes_and_class_specific_scores():
  boxes, scores = detection.decode_predictions(PRED, image_hw=(100, 200),
                                               **KW)
  assert boxes.shape == (1, 8, 4) and scores.shape == (1, 8, 2)
  # Cell (0, 0), predictor 0: image-relative [0.22, 0.125, 0.38, 0.375].
  np.testing.assert_allclose(boxes[0, 0], [44, 12.5, 76, 37.5], rtol=1e-5)
  np.testing.assert_allclose(scores[0, 0], [0.7 * 0.9, 0.7 * 0.2], rtol=1e-5)
  # Cell (0, 1), predictor 1: class scores clipped to [0, 1] -> [1, 0].
  np.testing.assert_allclose(scores[0, 3], [0.1, 0.0], rtol=1e-5)


def test_class_wise_nms_keeps_and_suppresses_the_right_boxes():
  boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11],
                    [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
  labels = np.array([0, 0, 1, 0, 2])
  # Box 1 overlaps box 0 (same class) with IoU 81/119 = 0.68: suppressed at
  # 0.5, kept at 0.7. Box 2 is the same box in class 1: kept.
  keep = detection.class_wise_nms(boxes, scores, labels, iou_threshold=0.5)
  np.testing.assert_array_equal(keep, [4, 0, 2, 3])
  keep = detection.class_wise_nms(boxes, scores, labels, iou_threshold=0.7)
  np.testing.assert_array_equal(keep, [4, 0, 1, 2, 3])


def test_detect_thresholds_scores_then_suppresses():
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]],
                   np.float32)
  scores = np.array([[0.9, 0.0], [0.8, 0.05], [0.3, 0.6]])
  det = detection.detect(boxes, scores, score_threshold=0.2, iou_threshold=0.5)
  np.testing.assert_array_equal(det.labels, [0, 1, 0])
  np.testing.assert_allclose(det.scores, [0.9, 0.6, 0.3], rtol=1e-6)
  np.testing.assert_array_equal(det.boxes[1], [50, 50, 60, 60])


def _dets(boxes, scores, labels):
  return detection.Detections(np.asarray(boxes, np.float32),
                              np.asarray(scores, np.float32),
                              np.asarray(labels))


def test_average_precision_on_a_hand_computed_case():
  # Class 0: one object in each of two images. By score: a hit in image 0
  # (TP), a second box on the same object (FP), a hit in image 1 (TP).
  # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; interpolated:
  # AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
  # Class 1: its one object (image 1) is never found; the only class-1
  # detection is in image 0, where there is none: AP = 0.
  # Class 2: a detection but no object: undefined, left out of the mean.
  box = [0, 0, 10, 10]
  detections = [
      _dets([box, [1, 0, 10, 10], [0, 0, 5, 5], [0, 0, 3, 3]],
            [0.9, 0.8, 0.5, 0.4], [0, 0, 1, 2]),
      _dets([[0, 1, 10, 10]], [0.7], [0]),
  ]
  truths = [(np.array([box, [0, 0, 0, 0]]), np.array([0, -1])),
            (np.array([box, box]), np.array([0, 1]))]
  m, ap = detection.mean_average_precision(detections, truths, num_classes=3)
  np.testing.assert_allclose(ap[:2], [5 / 6, 0.0], rtol=1e-9)
  assert np.isnan(ap[2])
  np.testing.assert_allclose(m, (5 / 6) / 2, rtol=1e-9)
  np.testing.assert_allclose(
      detection.average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]), 5 / 6)


def test_perfect_detections_give_map_one():
  truths = [(np.array([[0, 0, 10, 10], [20, 20, 40, 30]]), np.array([0, 1]))]
  detections = [_dets(truths[0][0], [0.9, 0.8], [0, 1])]
  m, _ = detection.mean_average_precision(detections, truths, num_classes=2)
  assert m == 1.0


@pytest.mark.parametrize('boxes,labels,match', [
    ([[0, 0, 10, 10], [5, 5, 70, 20]], [0, 1],
     r'example 1, box 1: .* outside the 64x32 .*clip boxes'),
    ([[0, 0, 10, 10], [5, 5, 5, 20]], [0, 1], r'example 1, box 1: .*zero area'),
    ([[0, 0, 10, 10], [5, 5, 8, 20]], [3, 1],
     r'example 1, box 0: class id 3 is outside \[0, 3\)'),
])
def test_bad_boxes_name_the_example_and_the_fix(boxes, labels, match):
  good = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
  batch = np.stack([good, np.array(boxes, np.float32)])
  box_label = np.array([[1, -1], labels])
  with pytest.raises(ValueError, match=match):
    detection.validate_boxes(batch, box_label, image_hw=(32, 64),
                             num_classes=3)


def test_valid_boxes_and_empty_slots_pass_validation():
  boxes = np.array([[[0, 0, 64, 32], [99, 99, 0, 0]]], np.float32)
  detection.validate_boxes(boxes, np.array([[2, -1]]), image_hw=(32, 64),
                           num_classes=3)


def test_detection_grid_is_written(tmp_path):
  images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3))
  dets = [_dets([[2, 2, 20, 20]], [0.9], [1]), _dets(np.zeros((0, 4)), [], [])]
  truths = [(np.array([[3, 3, 21, 21]]), np.array([1]))] * 2
  path = draw.save_detections(tmp_path / 'det.png', images, dets, truths,
                              class_names=('a', 'b'))
  assert path.read_bytes()[:4] == b'\x89PNG'
