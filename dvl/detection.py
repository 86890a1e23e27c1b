"""Object detection with YOLO v1 (Redmon et al. 2016, "You only look once:
unified, real-time object detection"): box IoU, target assignment, the loss,
decoding, class-wise non-maximum suppression and VOC-style mAP.

Conventions:
  * Boxes are ``[xmin, ymin, xmax, ymax]`` in pixel-edge coordinates (the
    ``boxes`` of ``dvl.data``); ``box_label`` is the class id, -1 for an empty
    slot.
  * The network's output is an ``S×S×(5B + C)`` grid. Each cell holds ``B``
    predictors of five numbers, ``(x, y, √w, √h, confidence)``, then ``C``
    class scores shared by the cell. ``x, y`` are the box centre relative to
    the cell (0..1 across it), ``w, h`` the size relative to the image. All
    outputs are linear, as in the paper (Sec. 2.2). The loss compares square
    roots of the width and height (Eq. 3), so the network predicts the roots
    directly, as the authors' darknet code does: no square root of a negative
    prediction can occur.
  * Targets are ``S×S×(5 + C)``: objectness (1 in the cell holding a box
    centre), ``x, y, w, h`` of that box, and its one-hot class.

The training step runs ``assign_targets`` and ``yolo_loss`` under ``jit``;
decoding runs there too; ``detect`` (thresholds and NMS) and
``mean_average_precision`` are numpy post-processing on the host.
"""

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

LAMBDA_COORD = 5.0
LAMBDA_NOOBJ = 0.5
PREDICTOR_FIELDS = 5  # x, y, √w, √h, confidence


def _xp(*arrays):
  return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def box_iou(a, b):
  """Intersection over union of corner-form boxes ``[..., 4]``, broadcast.

  Numpy inputs give a numpy result, anything else a jax array. Boxes of
  zero area give IoU 0 with everything (never NaN).
  """
  xp = _xp(a, b)
  lo = xp.maximum(a[..., :2], b[..., :2])
  hi = xp.minimum(a[..., 2:], b[..., 2:])
  inter = xp.prod(xp.clip(hi - lo, 0, None), axis=-1)
  area_a = xp.prod(xp.clip(a[..., 2:] - a[..., :2], 0, None), axis=-1)
  area_b = xp.prod(xp.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)
  union = area_a + area_b - inter
  return xp.where(union > 0, inter / xp.where(union > 0, union, 1), 0.0)


def pairwise_iou(a, b):
  """IoU of every box in ``a`` ``[N, 4]`` with every box in ``b`` ``[M, 4]``."""
  return box_iou(a[:, None, :], b[None, :, :])



def assign_targets(boxes, box_label, *, image_hw: Sequence[int], grid: int,
                   num_classes: int) -> Array:
  """YOLO v1 targets ``[N, S, S, 5 + C]`` from a batch of boxes (Sec. 2).

  A box belongs to the cell that holds its centre; ``x, y`` are the centre
  relative to that cell, ``w, h`` the box size relative to the image. A cell
  predicts one class, so it takes one object: when several box centres fall
  in a cell, the first box in the list wins (in ``shapes`` that is the main
  object). Slots with ``box_label == -1`` are ignored.

  Args:
    boxes: ``[N, K, 4]`` pixel boxes.
    box_label: ``[N, K]`` class ids, -1 for empty slots.
    image_hw: the image's (height, width) in pixels.
    grid: S, cells per side.
    num_classes: C.
  """
  height, width = image_hw
  boxes = jnp.asarray(boxes, jnp.float32)
  labels = jnp.asarray(box_label, jnp.int32)
  real = labels >= 0
  cx = (boxes[..., 0] + boxes[..., 2]) / 2 / width * grid
  cy = (boxes[..., 1] + boxes[..., 3]) / 2 / height * grid
  col = jnp.clip(jnp.floor(cx), 0, grid - 1)
  row = jnp.clip(jnp.floor(cy), 0, grid - 1)
  per_box = jnp.concatenate([
      jnp.ones_like(cx)[..., None],
      jnp.stack([cx - col, cy - row,
                 (boxes[..., 2] - boxes[..., 0]) / width,
                 (boxes[..., 3] - boxes[..., 1]) / height], axis=-1),
      jax.nn.one_hot(jnp.where(real, labels, 0), num_classes)], axis=-1)
  cell = (row * grid + col).astype(jnp.int32)
  in_cell = (cell[..., None] == jnp.arange(grid * grid)) & real[..., None]
  first = jnp.argmax(in_cell, axis=1)  # the first box of each cell
  taken = jnp.take_along_axis(per_box, first[..., None], axis=1)
  target = jnp.where(jnp.any(in_cell, axis=1)[..., None], taken, 0.0)
  return target.reshape(boxes.shape[0], grid, grid, 5 + num_classes)



def split_predictions(pred, *, boxes_per_cell: int, num_classes: int) -> dict:
  """Names the parts of a raw ``[N, S, S, 5B + C]`` YOLO output.

  Returns ``xy`` and ``sqrt_wh`` ``[N, S, S, B, 2]``, ``confidence``
  ``[N, S, S, B]`` and ``classes`` ``[N, S, S, C]``.
  """
  expected = PREDICTOR_FIELDS * boxes_per_cell + num_classes
  if pred.ndim != 4 or pred.shape[1] != pred.shape[2] or (
      pred.shape[-1] != expected):
    raise ValueError(
        f'YOLO predictions must be [N, S, S, 5B + C] = [N, S, S, {expected}] '
        f'for B={boxes_per_cell}, C={num_classes}; got {tuple(pred.shape)}. '
        'Build the model and the loss with the same boxes_per_cell and '
        'num_classes.')
  pred = jnp.asarray(pred, jnp.float32)
  n, s = pred.shape[:2]
  per_box = pred[..., :PREDICTOR_FIELDS * boxes_per_cell].reshape(
      n, s, s, boxes_per_cell, PREDICTOR_FIELDS)
  return {'xy': per_box[..., 0:2], 'sqrt_wh': per_box[..., 2:4],
          'confidence': per_box[..., 4],
          'classes': pred[..., PREDICTOR_FIELDS * boxes_per_cell:]}


def cell_boxes_to_corners(xy, wh):
  """Corner boxes in image-relative units (0..1) from cell-relative centres
  ``xy`` and image-relative sizes ``wh``, both ``[N, S, S, ..., 2]``."""
  s = xy.shape[1]
  cols = jnp.arange(s, dtype=jnp.float32).reshape(1, 1, s, *([1] * (xy.ndim - 4)))
  rows = jnp.arange(s, dtype=jnp.float32).reshape(1, s, 1, *([1] * (xy.ndim - 4)))
  centre = jnp.stack([(cols + xy[..., 0]) / s, (rows + xy[..., 1]) / s], -1)
  return jnp.concatenate([centre - wh / 2, centre + wh / 2], axis=-1)


def responsible_predictor(parts: dict, target) -> tuple[Array, Array]:
  """Which of the B predictors of each cell is responsible for its object.

  The paper's rule (Sec. 2.2): the one whose predicted box has the highest
  IoU with the ground truth. When every predictor misses the box entirely
  (all IoUs 0, common early in training) the one with the smallest squared
  error of ``(x, y, √w, √h)`` is chosen, as darknet does, so that the
  predictors still specialise; ties go to the lower index.

  Returns ``(index [N, S, S], iou [N, S, S, B])``.
  """
  pred_box = cell_boxes_to_corners(parts['xy'], jnp.square(parts['sqrt_wh']))
  true_box = cell_boxes_to_corners(target[..., 1:3], target[..., 3:5])
  iou = box_iou(pred_box, true_box[..., None, :])
  true_coords = jnp.concatenate(
      [target[..., 1:3], jnp.sqrt(jnp.maximum(target[..., 3:5], 0.0))], -1)
  pred_coords = jnp.concatenate([parts['xy'], parts['sqrt_wh']], -1)
  sq_error = jnp.sum(jnp.square(pred_coords - true_coords[..., None, :]), -1)
  overlaps = jnp.max(iou, axis=-1, keepdims=True) > 0
  index = jnp.argmax(jnp.where(overlaps, iou, -sq_error), axis=-1)
  return index, iou


def yolo_loss_terms(pred, target, *, boxes_per_cell: int, num_classes: int,
                    lambda_coord: float = LAMBDA_COORD,
                    lambda_noobj: float = LAMBDA_NOOBJ,
                    rescore: bool = True) -> dict:
  """The five sums of the YOLO v1 loss (Eq. 3), each divided by the batch size.

  ``xy`` and ``wh`` carry ``lambda_coord``; ``obj`` is the confidence error of
  responsible predictors, whose target is the IoU of their box with the
  ground truth when ``rescore`` (the paper: "confidence ... equal the IoU",
  held constant, no gradient through it), else 1; ``noobj`` carries
  ``lambda_noobj`` and covers every other predictor, including the second
  predictor of a cell with an object; ``class`` is the squared error of the
  class scores in cells with an object.
  """
  parts = split_predictions(pred, boxes_per_cell=boxes_per_cell,
                            num_classes=num_classes)
  target = jnp.asarray(target, jnp.float32)
  if target.shape != (*pred.shape[:3], 5 + num_classes):
    raise ValueError(f'YOLO targets must be {(*pred.shape[:3], 5 + num_classes)}'
                     f' for these predictions; got {tuple(target.shape)}')
  index, iou = responsible_predictor(parts, target)
  has_obj = target[..., 0]
  resp = jax.nn.one_hot(index, boxes_per_cell) * has_obj[..., None]
  sq = lambda a, b: jnp.sum(jnp.square(a - b), axis=-1)
  xy_err = sq(parts['xy'], target[..., None, 1:3])
  wh_err = sq(parts['sqrt_wh'],
              jnp.sqrt(jnp.maximum(target[..., None, 3:5], 0.0)))
  conf_target = jax.lax.stop_gradient(iou) if rescore else jnp.ones_like(iou)
  conf = parts['confidence']
  class_err = sq(parts['classes'], target[..., 5:])
  batch = pred.shape[0]
  return {
      'xy': lambda_coord * jnp.sum(resp * xy_err) / batch,
      'wh': lambda_coord * jnp.sum(resp * wh_err) / batch,
      'obj': jnp.sum(resp * jnp.square(conf - conf_target)) / batch,
      'noobj': lambda_noobj * jnp.sum((1 - resp) * jnp.square(conf)) / batch,
      'class': jnp.sum(has_obj * class_err) / batch,
  }


def yolo_loss(pred, target, **kwargs) -> Array:
  """The YOLO v1 loss (Eq. 3) per image: the sum of ``yolo_loss_terms``,
  which takes the same keyword arguments."""
  return sum(yolo_loss_terms(pred, target, **kwargs).values())



class Detections(NamedTuple):
  """One image's detections: ``boxes [D, 4]`` pixels, ``scores [D]``,
  ``labels [D]``, by decreasing score."""
  boxes: np.ndarray
  scores: np.ndarray
  labels: np.ndarray


def decode_predictions(pred, *, image_hw: Sequence[int], boxes_per_cell: int,
                       num_classes: int) -> tuple[Array, Array]:
  """Every predictor's box and class-specific scores (Sec. 2, test time).

  Returns ``boxes [N, S·S·B, 4]`` in pixels, clipped to the image, and
  ``scores [N, S·S·B, C]`` = confidence × class score; both factors are
  clipped to [0, 1] first, since the linear outputs can leave that range.
  """
  parts = split_predictions(pred, boxes_per_cell=boxes_per_cell,
                            num_classes=num_classes)
  height, width = image_hw
  rel = cell_boxes_to_corners(parts['xy'], jnp.square(parts['sqrt_wh']))
  scale = jnp.array([width, height, width, height], jnp.float32)
  boxes = jnp.clip(rel, 0.0, 1.0) * scale
  conf = jnp.clip(parts['confidence'], 0.0, 1.0)
  probs = jnp.clip(parts['classes'], 0.0, 1.0)
  scores = conf[..., None] * probs[..., None, :]
  n = pred.shape[0]
  return boxes.reshape(n, -1, 4), scores.reshape(n, -1, num_classes)


def non_max_suppression(boxes, scores, *, iou_threshold: float) -> np.ndarray:
  """Greedy NMS of one class: indices of the kept boxes, best first.

  A box is dropped when its IoU with an already kept, higher-scoring box
  exceeds ``iou_threshold``. Equal scores keep their input order.
  """
  boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores)
  order = np.argsort(-scores, kind='stable')
  keep = []
  while order.size:
    best, order = order[0], order[1:]
    keep.append(best)
    if order.size:
      order = order[box_iou(boxes[best][None], boxes[order]) <= iou_threshold]
  return np.asarray(keep, np.int64)


def class_wise_nms(boxes, scores, labels, *, iou_threshold: float
                   ) -> np.ndarray:
  """NMS run separately per class: a box never suppresses another class's.

  Returns the kept indices sorted by decreasing score.
  """
  labels, scores = np.asarray(labels), np.asarray(scores)
  keep = [np.flatnonzero(labels == c)[non_max_suppression(
      np.asarray(boxes)[labels == c], scores[labels == c],
      iou_threshold=iou_threshold)] for c in np.unique(labels)]
  keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
  return keep[np.argsort(-scores[keep], kind='stable')]


def detect(boxes, class_scores, *, score_threshold: float,
           iou_threshold: float, max_detections: int = 100) -> Detections:
  """One image's detections from decoded ``boxes [P, 4]`` and
  ``class_scores [P, C]``: every (box, class) pair scoring at least
  ``score_threshold``, then class-wise NMS, then the best
  ``max_detections``."""
  boxes, class_scores = np.asarray(boxes), np.asarray(class_scores)
  box_idx, labels = np.nonzero(class_scores >= score_threshold)
  scores = class_scores[box_idx, labels]
  keep = class_wise_nms(boxes[box_idx], scores, labels,
                        iou_threshold=iou_threshold)[:max_detections]
  return Detections(boxes[box_idx][keep].astype(np.float32),
                    scores[keep].astype(np.float32), labels[keep])



def average_precision(recall, precision) -> float:
  """Area under the all-point interpolated precision-recall curve (the
  Pascal VOC rule since 2010, Everingham et al. 2010).

  Precision at each recall is replaced by the highest precision at any
  recall at least as large; the area is summed where recall changes.
  """
  mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
  mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  step = np.flatnonzero(mrec[1:] != mrec[:-1])
  return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _match_class(detections, truths, cls, iou_threshold):
  """True-positive flags (by decreasing score) and the gt count of a class."""
  gts = [t[0][t[1] == cls] for t in truths]
  dets = [(d.scores[k], i, d.boxes[k]) for i, d in enumerate(detections)
          for k in np.flatnonzero(d.labels == cls)]
  dets.sort(key=lambda item: -item[0])
  used = [np.zeros(len(g), bool) for g in gts]
  tp = np.zeros(len(dets))
  for j, (_, i, box) in enumerate(dets):
    if not len(gts[i]):
      continue
    ious = box_iou(np.asarray(box, np.float32)[None], gts[i])
    best = int(np.argmax(ious))
    if ious[best] > iou_threshold and not used[i][best]:
      used[i][best] = True
      tp[j] = 1.0
  return tp, sum(len(g) for g in gts)


def mean_average_precision(detections: Sequence[Detections], ground_truths,
                           *, num_classes: int, iou_threshold: float = 0.5
                           ) -> tuple[float, np.ndarray]:
  """Pascal VOC mAP: per-class AP at IoU ``iou_threshold``, then the mean.

  Detections of a class are taken by decreasing score over all images; each
  goes to the ground truth of its image and class it overlaps most; it is a
  true positive when that IoU exceeds the threshold and that ground truth is
  still unmatched, else a false positive (a second detection of a matched
  object counts against precision).

  Args:
    detections: one ``Detections`` per image.
    ground_truths: one ``(boxes [K, 4], box_label [K])`` per image; slots
      labelled -1 are ignored.
    num_classes: C.
    iou_threshold: 0.5 in VOC.

  Returns:
    ``(mAP, ap)``: ``ap [C]`` is NaN for a class without ground truth, and
    the mean is over the other classes (NaN when there are none).
  """
  if len(detections) != len(ground_truths):
    raise ValueError(f'{len(detections)} images of detections but '
                     f'{len(ground_truths)} of ground truth')
  truths = [(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(l))
            for b, l in ground_truths]
  ap = np.full(num_classes, np.nan)
  for cls in range(num_classes):
    tp, num_gt = _match_class(detections, truths, cls, iou_threshold)
    if num_gt == 0:
      continue
    tp_cum = np.cumsum(tp)
    recall = tp_cum / num_gt
    precision = tp_cum / np.arange(1, len(tp) + 1)
    ap[cls] = average_precision(recall, precision)
  valid = ~np.isnan(ap)
  return (float(np.mean(ap[valid])) if valid.any() else float('nan')), ap



def _first(bad) -> list[tuple[int, ...]]:
  """The index of the first True entry of ``bad`` as a one-item list, or []."""
  found = np.argwhere(bad)
  return [tuple(int(v) for v in found[0])] if len(found) else []


def validate_boxes(boxes, box_label, *, image_hw: Sequence[int],
                   num_classes: int) -> None:
  """Checks a numpy batch of boxes before it reaches the model.

  Raises a ValueError naming the example and box for: a shape mismatch, a
  class id outside ``[0, num_classes)`` (other than -1 for an empty slot), a
  non-finite coordinate, a box reaching outside the image, or a box of zero
  area.
  """
  boxes, labels = np.asarray(boxes), np.asarray(box_label)
  if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
    raise ValueError(
        f'boxes must be [batch, max_boxes, 4] with box_label [batch, '
        f'max_boxes]; got {boxes.shape} and {labels.shape}')
  height, width = image_hw
  for i, k in _first((labels < -1) | (labels >= num_classes)):
    raise ValueError(
        f'example {i}, box {k}: class id {labels[i, k]} is outside [0, '
        f'{num_classes}); use 0..{num_classes - 1}, or -1 for an empty slot, '
        'or build the model for more classes')
  real = labels >= 0
  x0, y0, x1, y1 = np.moveaxis(boxes, -1, 0)
  checks = (
      (~np.isfinite(boxes).all(-1), 'has a non-finite coordinate',
       'drop the box or mark the slot empty with box_label -1'),
      ((x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height),
       f'reaches outside the {width}x{height} (width x height) image',
       f'clip boxes to [0, {width}] x [0, {height}] pixel edges or mark the '
       'slot empty with box_label -1'),
      ((x1 <= x0) | (y1 <= y0), 'has zero area (needs xmax > xmin and '
       'ymax > ymin)', 'drop it (box_label -1) or fix the corner order '
       '[xmin, ymin, xmax, ymax]'))
  for bad, what, fix in checks:
    for i, k in _first(bad & real):
      raise ValueError(f'example {i}, box {k}: {boxes[i, k].tolist()} {what}; '
                       f'{fix}')
