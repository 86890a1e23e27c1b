"""Reading a prepared TFDS builder as seeded, resumable batches of raw examples.

Splits: ``val`` is the first ``n_val`` examples of the builder's train split in
its stored order (which TFDS shuffled by key hash when it was prepared),
``train`` the rest (TFDS slices ``train[:n_val]`` and ``train[n_val:]``), and
``test`` the test split, for reporting only.

Two readers yield the same kind of batches: dicts of ``image`` uint8 NHWC,
``label`` int32 and, when asked, ``mask`` uint8 (B, H, W, 1), ``boxes``
float32 (B, max_boxes, 4) and ``box_label`` int32 (B, max_boxes), with empty
box slots zero and labelled -1.

* ``MemoryReader`` (fixed-size images that fit in memory) decodes each split
  once into memory. Epoch ``e`` visits the training examples in the order
  ``tf.random.experimental.stateless_shuffle(range(n), [seed, e])``, one
  batch per step, dropping the remainder; any step's batch is found directly,
  so resuming is free.
* ``StreamReader`` (large or variable-size datasets such as imagenet2012)
  streams TFDS records: file order seeded by ``seed``, then a seeded shuffle
  buffer, repeated. Resuming skips the records of earlier steps without
  decoding them. Images are cropped to the model's resolution one by one
  (``precrop``) before batching.
"""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dvl.data import datasets

AUTOTUNE = tf.data.AUTOTUNE
_LOAD_BATCH = 1024


def without_autotune(ds):
  """``ds`` with tf.data's autotuning off: its ``AUTOTUNE`` parallel maps run
  on tf.data's default number of threads (the cores) and no autotuning
  thread runs beside the iterator. Deleting an iterator joins that thread,
  and the deletion does not cut short its timed wait between rounds, which
  grows to tens of seconds as the iterator runs; an endless training
  iterator is always deleted mid-stream. The batches are the same either
  way (the maps are deterministic and seeded by ``(seed, step)``)."""
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)


def split_sizes(cfg, builder):
  """``(n_train_total, n_val)`` from the config's val_count or val_fraction."""
  total = int(datasets.as_dataset(cfg, builder, cfg.train_split).cardinality())
  if cfg.val_count is not None:
    n_val = int(cfg.val_count)
  elif 0 <= cfg.val_fraction < 1:
    n_val = int(round(cfg.val_fraction * total))
  else:
    raise ValueError(f'val_fraction must be in [0, 1); got {cfg.val_fraction}')
  if not 0 <= n_val < total:
    raise ValueError(f'val_count must be in [0, {total}) for the {total} '
                     f'examples of split {cfg.train_split!r}; got {n_val}')
  return total, n_val


def tfds_splits(cfg, n_val):
  """The TFDS split strings behind dvl's ``train``, ``val`` and ``test``."""
  return dict(train=f'{cfg.train_split}[{n_val}:]',
              val=f'{cfg.train_split}[:{n_val}]', test=cfg.test_split)


def select(cfg, example):
  """Keeps and standardises the features the pipeline delivers; a dataset
  without labels (images and masks, or images alone) gets label 0."""
  label = example.get(cfg.label_key, tf.constant(0))
  out = dict(image=example[cfg.image_key], label=tf.cast(label, tf.int32))
  if cfg.with_masks:
    mask = example['mask']
    out['mask'] = tf.cast(mask if mask.shape.rank == 3 else mask[..., None],
                          tf.uint8)
  if cfg.with_boxes:
    boxes = tf.cast(example['boxes'], tf.float32)[:cfg.max_boxes]
    labels = tf.cast(example['box_label'], tf.int32)[:cfg.max_boxes]
    pad = cfg.max_boxes - tf.shape(labels)[0]
    out['boxes'] = tf.pad(boxes, [[0, pad], [0, 0]])
    out['box_label'] = tf.pad(labels, [[0, pad]], constant_values=-1)
  return out


def check_features(cfg, builder):
  """Raises when the builder lacks a feature that the config asks for.

  Labels are optional here: the task says whether it needs them.
  """
  wanted = [cfg.image_key]
  wanted += ['mask'] * cfg.with_masks + ['boxes', 'box_label'] * cfg.with_boxes
  missing = [k for k in wanted if k not in builder.info.features]
  if missing:
    raise ValueError(
        f'dataset {cfg.dataset!r} has no feature {missing}; it has '
        f'{sorted(builder.info.features.keys())} (set config.input.image_key, '
        'label_key, with_masks or with_boxes accordingly)')


def epoch_order(seed, epoch, count):
  """The order in which epoch ``epoch`` visits ``count`` training examples:
  ``stateless_shuffle(range(count), [seed, epoch])``. The device pipeline
  takes its order from here too."""
  return tf.random.experimental.stateless_shuffle(
      tf.range(count), tf.stack([tf.constant(seed, tf.int64),
                                 tf.cast(epoch, tf.int64)]))


class MemoryReader:
  """Decodes every split once into memory (see the module docstring).

  Arrays live in TensorFlow variables and batches are gathered by TF ops, so
  no Python runs in the tf.data threads.
  """
  precrops = False

  def __init__(self, cfg, builder, n_val):
    full = self._load(cfg, builder, cfg.train_split)
    as_tensors = lambda arrays: {k: tf.Variable(v, trainable=False)
                                 for k, v in arrays.items()}
    self.arrays = dict(
        val=as_tensors({k: v[:n_val] for k, v in full.items()}),
        train=as_tensors({k: v[n_val:] for k, v in full.items()}),
        test=as_tensors(self._load(cfg, builder, cfg.test_split)))

  @staticmethod
  def _load(cfg, builder, split):
    ds = datasets.as_dataset(cfg, builder, split, shuffle_files=False)
    ds = ds.map(lambda ex: select(cfg, ex), num_parallel_calls=AUTOTUNE)
    parts = list(tfds.as_numpy(ds.batch(_LOAD_BATCH)))
    if not parts:
      raise ValueError(f'split {split!r} of {cfg.dataset!r} is empty')
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def num_examples(self, split):
    return int(self.arrays[split]['label'].shape[0])

  def train_indices(self, seed, step, batch_size):
    """Indices of the training examples of one step: epoch ``e`` is the
    permutation ``stateless_shuffle(range(n), [seed, e])``."""
    count = self.num_examples('train')
    epoch, offset = step // (count // batch_size), step % (count // batch_size)
    order = epoch_order(seed, epoch, count)
    return order[offset * batch_size:(offset + 1) * batch_size]

  def _gather(self, split, indices):
    return {k: tf.gather(v, indices) for k, v in self.arrays[split].items()}

  def train_batches(self, seed, start_step, batch_size):
    """Dataset of ``(step, batch)`` from ``start_step`` on, endless."""
    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return steps.map(
        lambda step: (step, self._gather(
            'train', self.train_indices(seed, step, batch_size))),
        num_parallel_calls=AUTOTUNE)

  def eval_batches(self, split, batch_size, limit=None):
    """Dataset of the split's batches in order; the last may be short."""
    count = self.num_examples(split)
    count = count if limit is None else min(limit, count)
    starts = tf.data.Dataset.range(0, count, batch_size)
    return starts.map(
        lambda start: self._gather(split, tf.range(
            start, tf.minimum(start + batch_size, count))),
        num_parallel_calls=AUTOTUNE)


class StreamReader:
  """Streams TFDS records (see the module docstring)."""
  precrops = True

  def __init__(self, cfg, builder, n_val, precrop):
    self.cfg, self.builder, self.precrop = cfg, builder, precrop
    self.splits = tfds_splits(cfg, n_val)
    image = builder.info.features[cfg.image_key]
    self._decode_image = image.decode_example
    self._sizes = {}

  def _records(self, split, **kwargs):
    decoders = {self.cfg.image_key: tfds.decode.SkipDecoding()}
    return datasets.as_dataset(self.cfg, self.builder, self.splits[split],
                               decoders=decoders, **kwargs)

  def num_examples(self, split):
    if split not in self._sizes:
      self._sizes[split] = int(self._records(split).cardinality())
    return self._sizes[split]

  def _decoded(self, ds, train, seed):
    """Decodes, selects and precrops records numbered by ``enumerate``."""
    def decode(index, example):
      example = dict(example)
      example[self.cfg.image_key] = self._decode_image(
          example[self.cfg.image_key])
      example_seed = tf.random.experimental.stateless_fold_in(
          tf.constant([seed, 0], tf.int64), index)
      return self.precrop(select(self.cfg, example), train, example_seed)
    return ds.map(decode, num_parallel_calls=AUTOTUNE)

  def train_batches(self, seed, start_step, batch_size):
    """Dataset of ``(step, batch)`` from ``start_step`` on, endless."""
    read_config = tfds.ReadConfig(shuffle_seed=seed,
                                  shuffle_reshuffle_each_iteration=True)
    ds = self._records('train', shuffle_files=True, read_config=read_config)
    ds = ds.repeat().shuffle(self.cfg.shuffle_buffer, seed=seed)
    ds = ds.skip(start_step * batch_size).enumerate(start_step * batch_size)
    ds = self._decoded(ds, True, seed).batch(batch_size, drop_remainder=True)
    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return tf.data.Dataset.zip((steps, ds))

  def eval_batches(self, split, batch_size, limit=None):
    """Dataset of the split's batches in order; the last may be short."""
    ds = self._records(split, shuffle_files=False)
    if limit is not None:
      ds = ds.take(limit)
    return self._decoded(ds.enumerate(), False, 0).batch(batch_size)
