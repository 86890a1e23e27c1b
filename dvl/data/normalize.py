"""Per-channel normalisation and ZCA whitening.

Statistics are fitted with numpy on training images in [0, 1] and applied to
batches inside the tf.data pipeline.
"""

import numpy as np
import tensorflow as tf

# Fitting ZCA needs the eigenvectors of a D x D covariance: above this many
# features (e.g. 37x37x3) it takes minutes and hundreds of MB per batch.
MAX_ZCA_FEATURES = 4096


def channel_stats(images):
  """Per-channel mean and standard deviation of NHWC images in [0, 1]."""
  images = np.asarray(images)
  total = np.zeros(images.shape[-1])
  squares = np.zeros(images.shape[-1])
  for start in range(0, len(images), 4096):  # Bounded float64 memory.
    chunk = images[start:start + 4096].astype(np.float64)
    total += chunk.sum(axis=(0, 1, 2))
    squares += (chunk ** 2).sum(axis=(0, 1, 2))
  count = images.size / images.shape[-1]
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
  return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def standardize(images, mean, std):
  """``(images - mean) / std`` per channel."""
  return (images - mean) / std


def fit_zca(features, epsilon):
  """ZCA whitening of rows of ``features`` (N, D), as ``(mean, matrix)``.

  The matrix is ``U diag(1 / sqrt(lambda + epsilon)) U^T`` from the
  eigendecomposition of the feature covariance ``U diag(lambda) U^T`` (Bell &
  Sejnowski 1997; used for CIFAR by Krizhevsky 2009 and Goodfellow et al.
  2013): whitened training features have close to identity covariance, while
  staying as close as possible to the input images.
  """
  features = np.asarray(features, np.float64)
  count, dim = features.shape
  if dim > MAX_ZCA_FEATURES:
    raise ValueError(
        f'ZCA over {dim} features (height x width x channels) is too large; '
        f'the limit is {MAX_ZCA_FEATURES}: lower config.input.resolution or '
        'set config.input.zca = False')
  if count <= dim // 4:
    raise ValueError(f'fitting ZCA on {dim} features needs more than '
                     f'{dim // 4} examples; got {count}')
  mean = features.mean(axis=0)
  centred = features - mean
  covariance = centred.T @ centred / count
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  scale = 1.0 / np.sqrt(np.maximum(eigenvalues, 0) + epsilon)
  matrix = (eigenvectors * scale) @ eigenvectors.T
  return mean.astype(np.float32), matrix.astype(np.float32)


def apply_zca(images, mean, matrix):
  """Whitens a (B, H, W, C) batch with a fitted ``(mean, matrix)``."""
  shape = tf.shape(images)
  flat = tf.reshape(images, [shape[0], -1]) - mean
  return tf.reshape(flat @ matrix, shape)
