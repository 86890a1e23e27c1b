"""The batch transforms of the pipeline: augmentation, normalisation, ZCA.

``Transforms.train(seed, step, batch)`` and ``Transforms.eval(batch)`` map
raw reader batches (uint8 images at the source size) to delivered batches;
``Transforms.precrop`` crops single examples for the stream reader. The order
of operations is given in ``dvl.data.pipeline``.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from dvl.data import augment
from dvl.data import normalize
from dvl.data import randaugment

_STATS_BATCH = 500


@dataclasses.dataclass
class Transforms:
  """Transforms for one resolved ``config.input`` (``cfg``)."""
  cfg: object
  out_hw: tuple
  num_classes: int
  precropped: bool = False
  mean: np.ndarray = None
  std: np.ndarray = None
  zca: tuple = None

  def _windows(self, seed, images, train):
    """Per-example crop windows for a batch (see ``dvl.data.augment``)."""
    aug, batch_size = self.cfg.augment, tf.shape(images)[0]
    src_hw = tf.shape(images)[1:3]
    crop = aug.crop if train else 'none'
    fraction = 1.0 if train or self.precropped else self.cfg.eval_crop_fraction
    flip_seed, crop_seed = augment.split_seed(seed, 2)
    if crop == 'pad_crop':
      windows = augment.pad_crop_windows(crop_seed, batch_size, src_hw,
                                         self.out_hw, aug.crop_padding)
    elif crop == 'inception' and not self.precropped:
      windows = augment.inception_windows(crop_seed, batch_size, src_hw,
                                          aug.crop_scale, aug.crop_ratio)
    else:
      windows = augment.centre_windows(batch_size, src_hw, fraction)
    if train and aug.hflip:
      windows = augment.random_flips(flip_seed, windows)
    return windows

  def precrop(self, example, train, seed):
    """Crops one example to ``out_hw``: random-resized crop when training
    with crop='inception', else the evaluation centre crop."""
    batch = {k: v[None] for k, v in example.items()}
    src_hw = tf.shape(batch['image'])[1:3]
    if train and self.cfg.augment.crop == 'inception':
      aug = self.cfg.augment
      windows = augment.inception_windows(seed, 1, src_hw, aug.crop_scale,
                                          aug.crop_ratio)
    else:
      fraction = 1.0 if train else self.cfg.eval_crop_fraction
      windows = augment.centre_windows(1, src_hw, fraction)
    out = augment.crop_resize(batch, windows, self.out_hw)
    return {k: v[0] for k, v in out.items()}

  def eval_images(self, batch):
    """Evaluation window, scaled to [0, 1]; no normalisation."""
    windows = self._windows(tf.constant([0, 0], tf.int64), batch['image'],
                            train=False)
    out = augment.crop_resize(batch, windows, self.out_hw)
    out['image'] = out['image'] / 255.0
    return out

  def eval(self, batch):
    return self._finish(self.eval_images(batch))

  def train(self, seed, step, batch):
    """One training batch, seeded by ``(seed, step)``."""
    aug = self.cfg.augment
    seeds = augment.split_seed(tf.stack([tf.cast(seed, tf.int64), step]), 6)
    batch = augment.crop_resize(batch, self._windows(seeds[0], batch['image'],
                                                     train=True), self.out_hw)
    images = batch['image'] / 255.0
    if aug.color_jitter > 0:
      images = augment.color_jitter(seeds[1], images, aug.color_jitter)
    matrices, warped = tf.eye(3, batch_shape=tf.shape(images)[:1]), False
    if aug.randaugment_layers > 0:
      images, matrices = randaugment.randaugment(
          seeds[2], images, aug.randaugment_layers, aug.randaugment_magnitude)
      warped = True
    if max(aug.affine_degrees, aug.affine_translate, aug.affine_scale,
           aug.affine_shear) > 0:
      affine = augment.affine_matrices(
          seeds[3], tf.shape(images)[0], self.out_hw, aug.affine_degrees,
          aug.affine_translate, aug.affine_scale, aug.affine_shear)
      matrices, warped = affine @ matrices, True
    batch = dict(batch, image=images)
    if warped:
      batch = augment.warp(batch, matrices)
    batch = self._finish(batch)
    if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:
      batch['image'], batch['soft_label'] = augment.mix(
          seeds[4], batch['image'], batch['label'], self.num_classes,
          aug.mixup_alpha, aug.cutmix_alpha)
    return batch

  def _finish(self, batch):
    """Normalisation, ZCA and the delivered dtypes."""
    out = dict(batch)
    if self.mean is not None:
      out['image'] = normalize.standardize(out['image'], self.mean, self.std)
    if self.zca is not None:
      out['image'] = normalize.apply_zca(out['image'], *self.zca)
    out['label'] = tf.cast(out['label'], tf.int32)
    if 'mask' in out:
      out['mask'] = tf.cast(out['mask'][..., 0], tf.int32)
    return out

  def fit(self, reader):
    """Fits mean, std and ZCA on training images, as the config asks."""
    cfg = self.cfg
    given = cfg.mean is not None and (cfg.std is not None
                                      or cfg.normalize != 'standardize')
    if cfg.normalize == 'none' and not cfg.zca:
      return
    images = None
    if not given or cfg.zca:
      images = self._training_images(reader)
    if cfg.normalize != 'none':
      mean, std = (cfg.mean, cfg.std) if given else normalize.channel_stats(
          images)
      self.mean = np.asarray(mean, np.float32)
      self.std = np.asarray(std if cfg.normalize == 'standardize' else
                            np.ones_like(self.mean), np.float32)
    if cfg.zca:
      if self.mean is not None:
        images = (images - self.mean) / self.std
      self.zca = normalize.fit_zca(images.reshape(len(images), -1),
                                   cfg.zca_epsilon)

  def _training_images(self, reader):
    """Up to ``stats_examples`` training images, evaluation-cropped, in [0, 1]."""
    ds = reader.eval_batches('train', _STATS_BATCH,
                             limit=self.cfg.stats_examples)
    ds = ds.map(lambda b: self.eval_images(b)['image'])
    return np.concatenate(list(ds.as_numpy_iterator()))
