"""Semantic segmentation metrics and labels, as jnp functions (the loss is
``dvl.losses.pixel_softmax_cross_entropy``).

Metrics follow Long et al. 2015 ("Fully convolutional networks for semantic
segmentation", Sec. 5): pixel accuracy and the intersection over union of
each class, from a confusion matrix that is summed over batches before the
ratios are taken, so the scores are dataset-wide, not means of per-image
scores. Pixels labelled ``ignore_label`` count nowhere.

Oxford-IIIT Pet trimaps (Parkhi et al. 2012, "Cats and dogs") mark 1 = pet,
2 = background, 3 = the uncertain boundary. ``trimap_to_labels`` maps them
to foreground 1 and background 0 and leaves the boundary out of the loss and
the metrics (``ignore_label``, 255 as in Pascal VOC), as is common practice,
since its pixels are labelled neither way. 0, which the input pipeline
writes where a crop or warp left the image, is ignored as well.
"""

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

IGNORE_LABEL = 255
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BOUNDARY = 1, 2, 3


def trimap_to_labels(trimap, *, ignore_label: int = IGNORE_LABEL) -> Array:
  """Pet trimap -> labels: pet 1, background 0, anything else (boundary 3,
  0 outside the image) -> ``ignore_label``.

  Accepts ``[N, H, W]`` or ``[N, H, W, 1]``; returns int32 ``[N, H, W]``.
  """
  trimap = jnp.asarray(trimap)
  if trimap.ndim == 4 and trimap.shape[-1] == 1:
    trimap = trimap[..., 0]
  labels = jnp.full(trimap.shape, ignore_label, jnp.int32)
  labels = jnp.where(trimap == TRIMAP_PET, 1, labels)
  return jnp.where(trimap == TRIMAP_BACKGROUND, 0, labels)


def confusion_matrix(predictions, labels, *, num_classes: int,
                     ignore_label: int = IGNORE_LABEL) -> Array:
  """``[C, C]`` pixel counts, rows = true class, columns = predicted class.

  ``predictions`` are class ids ``[N, H, W]`` or logits ``[N, H, W, C]``
  (their argmax is taken). Pixels whose label is ``ignore_label`` or lies
  outside ``[0, C)`` are not counted (``validate_masks`` rejects the latter
  on the input side). Sum the int32 matrices of all batches (in numpy
  int64 beyond 2**31 pixels), then take the ratios.
  """
  predictions = jnp.asarray(predictions)
  if predictions.ndim == jnp.ndim(labels) + 1:
    predictions = jnp.argmax(predictions, axis=-1)
  labels = jnp.asarray(labels, jnp.int32)
  if predictions.shape != labels.shape:
    raise ValueError(f'predictions {predictions.shape} and labels '
                     f'{labels.shape} must cover the same pixels')
  valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
  pairs = jnp.where(valid, labels * num_classes + predictions, 0)
  counts = jnp.bincount(pairs.reshape(-1),
                        weights=valid.reshape(-1).astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def _ratio(num, den):
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), jnp.nan)


def pixel_accuracy(cm) -> Array:
  """Correct pixels over counted pixels (NaN when none were counted)."""
  cm = jnp.asarray(cm, jnp.float32)
  return _ratio(jnp.trace(cm), jnp.sum(cm))


def class_iou(cm) -> Array:
  """``[C]`` IoU per class, ``TP / (TP + FP + FN)``; NaN for a class that is
  neither present nor predicted."""
  cm = jnp.asarray(cm, jnp.float32)
  tp = jnp.diag(cm)
  return _ratio(tp, jnp.sum(cm, 0) + jnp.sum(cm, 1) - tp)


def mean_iou(cm) -> Array:
  """Mean of ``class_iou`` over the classes where it is defined."""
  return jnp.nanmean(class_iou(cm))


def foreground_iou(cm, *, background: int = 0) -> Array:
  """IoU of foreground vs. background: every class except ``background``
  merged into one (for pets' two classes: the IoU of the pet class)."""
  cm = jnp.asarray(cm, jnp.float32)
  fg = jnp.arange(cm.shape[0]) != background
  tp = jnp.sum(cm * (fg[:, None] & fg[None, :]))
  fp = jnp.sum(cm[background] * fg)
  fn = jnp.sum(cm[:, background] * fg)
  return _ratio(tp, tp + fp + fn)


def validate_masks(images, masks, *, num_classes: int,
                   ignore_label: int = IGNORE_LABEL) -> None:
  """Checks images and label masks before they reach the model.

  ``images`` is a batch ``[N, H, W, C]`` or a list of ``[H, W, C]`` images,
  ``masks`` likewise ``[N, H, W]`` / ``[N, H, W, 1]`` or a list. Raises a
  ValueError naming the example for: a mask whose size differs from its
  image's, or a label outside ``[0, num_classes)`` that is not
  ``ignore_label``.
  """
  if len(images) != len(masks):
    raise ValueError(f'{len(images)} images but {len(masks)} masks; pass one '
                     'mask per image')
  for i, (image, mask) in enumerate(zip(images, masks)):
    image, mask = np.asarray(image), np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
      mask = mask[..., 0]
    if image.ndim != 3 or mask.shape != image.shape[:2]:
      raise ValueError(
          f'example {i}: mask of shape {mask.shape} does not match its image '
          f'of shape {image.shape} (height, width, channels); resize the mask '
          'with the image (nearest neighbour) so every pixel has one label')
    bad = (mask != ignore_label) & ((mask < 0) | (mask >= num_classes))
    if bad.any():
      row, col = (int(v) for v in np.argwhere(bad)[0])
      raise ValueError(
          f'example {i}: label {mask[row, col]} at pixel ({row}, {col}) is '
          f'outside [0, {num_classes}) and is not the ignore label '
          f'{ignore_label}; map it to a class id, mark it {ignore_label}, or '
          'build the model for more classes (pet trimaps: trimap_to_labels)')
