"""Losses and metrics against values computed by hand on tiny arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvl import losses

LOGITS = np.array([[1.0, 2.0, 3.0],
                   [1.0, 0.0, 0.0]], np.float32)
LABELS = np.array([2, 0])
# -log softmax(logits)[label], written out per example.
CE0 = np.log(np.exp(1.0) + np.exp(2.0) + np.exp(3.0)) - 3.0
CE1 = np.log(np.exp(1.0) + 2.0) - 1.0


def test_softmax_cross_entropy_matches_hand_value():
  loss = losses.softmax_cross_entropy(LOGITS, LABELS)
  np.testing.assert_allclose(loss, (CE0 + CE1) / 2, rtol=1e-6)
  np.testing.assert_allclose(CE0, 0.4076059644, rtol=1e-9)


def test_weights_give_weighted_mean_and_exact_padded_batches():
  weighted = losses.softmax_cross_entropy(LOGITS, LABELS,
                                          weights=np.array([3.0, 1.0]))
  np.testing.assert_allclose(weighted, (3 * CE0 + CE1) / 4, rtol=1e-6)
  padded_logits = np.concatenate([LOGITS, [[9.0, -9.0, 0.0]]])
  padded = losses.softmax_cross_entropy(
      padded_logits, np.array([2, 0, 1]), weights=np.array([1.0, 1.0, 0.0]))
  np.testing.assert_allclose(padded, (CE0 + CE1) / 2, rtol=1e-6)


def test_all_zero_weights_give_zero_not_nan():
  loss = losses.softmax_cross_entropy(LOGITS, LABELS, weights=np.zeros(2))
  assert float(loss) == 0.0


def test_label_smoothing_equals_explicit_smoothed_targets():
  # eps = 0.3 over K = 3 classes: the true class gets 0.7 + 0.1, others 0.1.
  targets = np.array([[0.1, 0.1, 0.8],
                      [0.8, 0.1, 0.1]])
  log_p = LOGITS - np.log(np.exp(LOGITS).sum(axis=1, keepdims=True))
  expected = np.mean(-(targets * log_p).sum(axis=1))
  loss = losses.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=0.3)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(
      losses.smooth_labels(jax.nn.one_hot(LABELS, 3), 0.3), targets, rtol=1e-6)


def test_soft_target_cross_entropy_matches_hand_value():
  targets = np.array([[0.25, 0.25, 0.5],
                      [0.0, 1.0, 0.0]], np.float32)
  lse0 = np.log(np.exp(1.0) + np.exp(2.0) + np.exp(3.0))
  lse1 = np.log(np.exp(1.0) + 2.0)
  ex0 = 0.25 * (lse0 - 1) + 0.25 * (lse0 - 2) + 0.5 * (lse0 - 3)
  ex1 = lse1 - 0.0
  loss = losses.soft_target_cross_entropy(LOGITS, targets)
  np.testing.assert_allclose(loss, (ex0 + ex1) / 2, rtol=1e-6)


def test_binary_cross_entropy_matches_hand_value():
  logits = np.array([[2.0, -1.0]], np.float32)
  labels = np.array([[1.0, 0.0]], np.float32)
  # -log sigmoid(2) and -log(1 - sigmoid(-1)) = -log sigmoid(1).
  expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
  loss = losses.sigmoid_binary_cross_entropy(logits, labels)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_binary_cross_entropy_is_stable_for_large_logits():
  logits = jnp.array([[1000.0], [-1000.0], [1000.0]])
  labels = jnp.array([[1.0], [0.0], [0.0]])
  loss, grad = jax.value_and_grad(
      lambda x: losses.sigmoid_binary_cross_entropy(x, labels))(logits)
  # Two confident right answers cost 0, the confident wrong one 1000.
  np.testing.assert_allclose(loss, 1000.0 / 3, rtol=1e-6)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad.ravel(), [0.0, 0.0, 1.0 / 3], atol=1e-7)


def test_pixel_cross_entropy_leaves_out_ignored_pixels():
  ignore = 255
  logits = np.zeros((1, 2, 2, 2), np.float32)
  logits[0, 0, 0] = [2.0, 0.0]    # label 0
  logits[0, 0, 1] = [0.0, 0.0]    # label 1
  logits[0, 1, 0] = [50.0, -50.]  # ignored: would cost 100
  logits[0, 1, 1] = [1.0, 3.0]    # label 1
  labels = np.array([[[0, 1], [ignore, 1]]])
  expected = (np.log1p(np.exp(-2.0)) + np.log(2.0) + np.log1p(np.exp(-2.0))) / 3
  loss = losses.pixel_softmax_cross_entropy(logits, labels, ignore_label=ignore)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  logits[0, 1, 0] = [-7.0, 7.0]
  again = losses.pixel_softmax_cross_entropy(logits, labels,
                                             ignore_label=ignore)
  np.testing.assert_allclose(again, loss, rtol=0)


def test_pixel_cross_entropy_weights_images():
  logits = np.zeros((2, 1, 2, 2), np.float32)
  logits[1] = [[[0.0, 5.0], [5.0, 0.0]]]
  labels = np.array([[[0, 0]], [[0, 0]]])
  per_pixel_1 = np.array([np.log1p(np.exp(5.0)), np.log1p(np.exp(-5.0))])
  loss = losses.pixel_softmax_cross_entropy(
      logits, labels, ignore_label=255, weights=np.array([0.0, 1.0]))
  np.testing.assert_allclose(loss, per_pixel_1.mean(), rtol=1e-6)


def test_accuracy_and_top_k():
  logits = np.array([[0.1, 0.5, 0.4],
                     [0.9, 0.05, 0.05],
                     [0.2, 0.3, 0.5]])
  labels = np.array([2, 0, 0])
  # top-1: [1, 2, 2] -> right only on example 1.
  np.testing.assert_allclose(losses.accuracy(logits, labels), 1 / 3)
  # top-2: {1, 2}, {0, x}, {2, 1} -> right on examples 0 and 1.
  np.testing.assert_allclose(losses.top_k_accuracy(logits, labels, 2), 2 / 3)
  np.testing.assert_allclose(losses.top_k_accuracy(logits, labels, 3), 1.0)
  np.testing.assert_allclose(
      losses.accuracy(logits, labels, weights=np.array([0.0, 1.0, 0.0])), 1.0)
  one_hot = jax.nn.one_hot(labels, 3)
  np.testing.assert_allclose(losses.accuracy(logits, one_hot), 1 / 3)


def test_ties_go_to_the_lower_class_index():
  logits = np.array([[1.0, 1.0, 0.0]])
  assert float(losses.accuracy(logits, np.array([0]))) == 1.0
  assert float(losses.accuracy(logits, np.array([1]))) == 0.0
  assert float(losses.top_k_accuracy(logits, np.array([1]), 2)) == 1.0


def test_losses_work_under_jit():
  loss = jax.jit(lambda x, y: losses.softmax_cross_entropy(
      x, y, label_smoothing=0.1))(LOGITS, LABELS)
  assert np.isfinite(loss)


@pytest.mark.parametrize('call, message', [
    (lambda: losses.softmax_cross_entropy(LOGITS, np.array([0, 1, 2])),
     'integer labels must have shape'),
    (lambda: losses.softmax_cross_entropy(LOGITS, LABELS, weights=np.ones(3)),
     'one weight per example'),
    (lambda: losses.softmax_cross_entropy(LOGITS, LABELS, label_smoothing=1.5),
     'label_smoothing must be in'),
    (lambda: losses.top_k_accuracy(LOGITS, LABELS, 4), 'k must be in'),
    (lambda: losses.sigmoid_binary_cross_entropy(LOGITS, LABELS),
     'binary labels must have'),
])
def test_bad_inputs_raise_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
