"""Classification and segmentation losses and metrics, as pure jnp functions.

Every loss returns a scalar: the mean over the batch of a per-example loss.
An optional per-example ``weights`` vector turns it into the weighted mean
``sum(w * loss) / sum(w)``; a 0/1 ``weights`` is a validity mask, so a padded
evaluation batch gives exactly the mean over its real examples. When every
weight is zero the result is 0, not NaN.

Logits are cast to float32 first, so bfloat16 models get float32 losses.
Hyper-parameters (label smoothing, the ignored label) are arguments with
neutral defaults; the training step takes them from the config.
"""

from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array


def weighted_mean(values: Array, weights: Optional[Array] = None) -> Array:
  """Mean of ``values``, or ``sum(w * v) / sum(w)`` (0 when ``sum(w) == 0``)."""
  values = jnp.asarray(values, jnp.float32)
  if weights is None:
    return jnp.mean(values)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape != values.shape:
    raise ValueError(
        f'weights have shape {weights.shape} but the per-example values have '
        f'shape {values.shape}; pass one weight per example')
  total = jnp.sum(weights)
  safe_total = jnp.where(total > 0, total, 1.0)
  return jnp.sum(weights * values) / safe_total


def _check_class_labels(logits: Array, labels: Array) -> None:
  if labels.shape != logits.shape[:-1]:
    raise ValueError(
        f'integer labels must have shape {logits.shape[:-1]} for logits of '
        f'shape {logits.shape}, got {labels.shape}')


def smooth_labels(targets: Array, label_smoothing: float) -> Array:
  """Label smoothing (Szegedy et al. 2016, "Rethinking the Inception ...").

  Mixes the target distribution with the uniform one over the K classes:
  ``(1 - eps) * targets + eps / K``.
  """
  if isinstance(label_smoothing, (int, float)) and not (
      0.0 <= label_smoothing < 1.0):
    raise ValueError(
        f'label_smoothing must be in [0, 1), got {label_smoothing}')
  num_classes = targets.shape[-1]
  return (1.0 - label_smoothing) * targets + label_smoothing / num_classes


def soft_cross_entropy_per_example(logits: Array, targets: Array) -> Array:
  """``-sum_k targets_k * log_softmax(logits)_k`` over the last axis."""
  if targets.shape != logits.shape:
    raise ValueError(
        f'soft targets must have the logits shape {logits.shape}, '
        f'got {targets.shape}')
  log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  return -jnp.sum(targets * log_probs, axis=-1)


def soft_target_cross_entropy(logits: Array, targets: Array, *,
                              weights: Optional[Array] = None) -> Array:
  """Cross-entropy against soft targets (e.g. mixup), mean over the batch."""
  return weighted_mean(soft_cross_entropy_per_example(logits, targets), weights)


def softmax_cross_entropy(logits: Array, labels: Array, *,
                          weights: Optional[Array] = None,
                          label_smoothing: float = 0.0) -> Array:
  """Softmax cross-entropy on integer labels, mean over the batch.

  Args:
    logits: ``[batch, classes]``.
    labels: integer class ids, ``[batch]``.
    weights: optional ``[batch]`` weights or 0/1 validity mask.
    label_smoothing: epsilon of label smoothing (Szegedy et al. 2016); 0 off.
  """
  _check_class_labels(logits, labels)
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  targets = smooth_labels(targets, label_smoothing)
  return soft_target_cross_entropy(logits, targets, weights=weights)


def sigmoid_binary_cross_entropy(logits: Array, labels: Array, *,
                                 weights: Optional[Array] = None) -> Array:
  """Binary cross-entropy on logits, numerically stable for any magnitude.

  Uses ``max(x, 0) - x * z + log1p(exp(-|x|))``, which equals
  ``-z log sigmoid(x) - (1 - z) log(1 - sigmoid(x))`` without overflow.
  ``logits`` and ``labels`` (targets in [0, 1]) share a shape ``[batch, ...]``;
  the per-example loss is the mean over the non-batch axes (PyTorch's and
  Keras's convention for multi-label outputs).
  """
  logits = jnp.asarray(logits, jnp.float32)
  if labels.shape != logits.shape:
    raise ValueError(
        f'binary labels must have the logits shape {logits.shape}, '
        f'got {labels.shape}')
  labels = jnp.asarray(labels, jnp.float32)
  elementwise = (jnp.maximum(logits, 0.0) - logits * labels
                 + jnp.log1p(jnp.exp(-jnp.abs(logits))))
  per_example = elementwise.reshape(elementwise.shape[0], -1).mean(axis=1)
  return weighted_mean(per_example, weights)


def pixel_softmax_cross_entropy(logits: Array, labels: Array, *,
                                ignore_label: int,
                                weights: Optional[Array] = None) -> Array:
  """Per-pixel softmax cross-entropy, mean over the labelled pixels.

  Pixels whose label equals ``ignore_label`` (255 for Pascal VOC and
  Cityscapes) contribute neither to the sum nor to the count. The result is
  the mean over all counted pixels of the batch, so every pixel weighs the
  same whatever its image.

  Args:
    logits: ``[batch, height, width, classes]``.
    labels: integer ``[batch, height, width]``.
    ignore_label: the label id to leave out.
    weights: optional ``[batch]`` per-image weights or validity mask.
  """
  _check_class_labels(logits, labels)
  valid = labels != ignore_label
  safe_labels = jnp.where(valid, labels, 0)
  log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
  pixel_weights = valid.astype(jnp.float32)
  if weights is not None:
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape != labels.shape[:1]:
      raise ValueError(f'weights must have shape {labels.shape[:1]}, one per '
                       f'image, got {weights.shape}')
    per_image = weights.reshape(-1, *([1] * (labels.ndim - 1)))
    pixel_weights = pixel_weights * per_image
  return weighted_mean(nll.reshape(-1), pixel_weights.reshape(-1))


def _as_class_ids(logits: Array, labels: Array) -> Array:
  """Integer ids; one-hot or soft targets ``[batch, classes]`` give argmax."""
  if labels.ndim == logits.ndim:
    if labels.shape != logits.shape:
      raise ValueError(f'targets must have the logits shape {logits.shape}, '
                       f'got {labels.shape}')
    return jnp.argmax(labels, axis=-1)
  _check_class_labels(logits, labels)
  return labels


def top_k_correct(logits: Array, labels: Array, k: int) -> Array:
  """Per example, 1.0 when the label is among the ``k`` largest logits.

  Ties go to the lower class index (as ``argmax`` and ``lax.top_k`` break
  them), so ``k=1`` agrees with ``argmax(logits) == label``.
  """
  num_classes = logits.shape[-1]
  if not 1 <= k <= num_classes:
    raise ValueError(f'k must be in [1, {num_classes}] for {num_classes} '
                     f'classes, got {k}')
  class_ids = _as_class_ids(logits, labels)
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == class_ids[..., None], axis=-1).astype(jnp.float32)


def top_k_accuracy(logits: Array, labels: Array, k: int, *,
                   weights: Optional[Array] = None) -> Array:
  """Fraction of examples whose label is among the ``k`` largest logits.

  ``labels`` are integer ids ``[batch]`` or targets ``[batch, classes]``
  (mixup / one-hot; their argmax is the label).
  """
  return weighted_mean(top_k_correct(logits, labels, k), weights)


def accuracy(logits: Array, labels: Array, *,
             weights: Optional[Array] = None) -> Array:
  """Top-1 accuracy; see :func:`top_k_accuracy`."""
  return top_k_accuracy(logits, labels, 1, weights=weights)
