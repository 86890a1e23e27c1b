"""The input pipeline: ``make_pipeline(config.input, seed=...)``.

Two pipelines deliver the same batches (``config.input.pipeline``):
  * ``'tfdata'``, this module: a host pipeline (TFDS readers, tf.data
    augmentation) that delivers numpy arrays;
  * ``'device'`` (``dvl.data.device_pipeline``): the dataset uploaded once to
    device memory, batches gathered and augmented there by jitted JAX code,
    delivered as JAX arrays. It covers datasets that fit in device memory
    and every augmentation except RandAugment and the affine warp, without
    ZCA, masks or boxes; it refuses the others, naming the setting.
  * ``'auto'`` (the default) picks ``'device'`` on an accelerator when the
    dataset fits and every setting is supported, else ``'tfdata'``; on the
    CPU backend it keeps ``'tfdata'`` (see ``dvl.data.device_pipeline``).
Both have the same data order (which examples form batch k, for a seed) and
evaluation batches; with augmentation off they deliver the same batches.
``Pipeline.kind`` says which one was built and ``Pipeline.choice`` why.

Batches are dicts of arrays (numpy from 'tfdata', JAX from 'device'):
  * ``image``: float32 (B, H, W, C) at ``config.input.resolution``, normalised;
  * ``label``: int32 (B,), always the original class index (0 for a dataset
    without labels, whose ``num_classes`` is 0);
  * ``soft_label``: float32 (B, num_classes), rows summing to 1, present exactly
    when mixup or CutMix is on (``Pipeline.soft_labels``): train on it then;
  * ``mask``: int32 (B, H, W) per-pixel classes (``with_masks``); 0 where a crop
    or warp left the image;
  * ``boxes``: float32 (B, max_boxes, 4) ``[xmin, ymin, xmax, ymax]`` in pixels
    of the delivered image, and ``box_label`` int32 (B, max_boxes), -1 for an
    empty slot (``with_boxes``);
  * ``valid``: bool (B,), eval batches only: False for the padding rows of the
    final batch.

Training order: the window (resize, centre, pad-and-random crop or
random-resized crop, and flip), colour jitter and RandAugment's photometric
ops, one affine warp (small distortions composed with RandAugment's geometric
ops), normalisation, ZCA, then mixup or CutMix. Evaluation: centre window,
normalisation, ZCA. Everything is seeded by ``(seed, step)``, so
``train_iter(k)`` yields exactly the batches an uninterrupted run yields from
step ``k`` on.

Fields of ``config.input`` (see ``default_input_config`` for the defaults):
  pipeline: 'auto', 'device' or 'tfdata' (see above).
  dataset: a name from ``dvl.data.datasets`` or the TFDS catalog.
  data_dir: TFDS data dir; None means $TFDS_DATA_DIR, else ~/.cache/dvl/tfds.
  path: folder of numpy archives (npz_folder; overrides the *_local default).
  manual_dir: TFDS manual download dir (imagenet2012); None means
    <data_dir>/downloads/manual.
  class_names: names for npz_folder labels; None means numbers.
  mask_classes: names of the mask values 0, 1, ... of a segmentation
    dataset, e.g. ('membrane', 'cell'); None means background and one class
    per image label.
  image_key, label_key: feature names in catalog datasets.
  train_split, test_split: TFDS split names.
  shapes: image_size, num_train, num_test, seed, max_distractors of `shapes`.
  val_fraction / val_count: size of the validation split carved from train
    (val_count wins when set).
  batch_size, eval_batch_size: examples per batch.
  resolution: output side in pixels; None means the dataset's own size.
  eval_crop_fraction: evaluation crops this fraction of the shorter side
    (ImageNet practice: 0.875); 1 resizes the whole image.
  reader: 'auto', 'memory' or 'stream' (see ``dvl.data.reader``);
    memory_limit_gb bounds what 'auto' decodes into memory.
  shuffle_buffer: examples in the shuffle buffer of the stream reader.
  normalize: 'standardize' ((x - mean) / std), 'center' (x - mean) or 'none'
    (x in [0, 1]); mean, std: per-channel values in [0, 1] units, or None to
    fit them on ``stats_examples`` training images.
  zca, zca_epsilon: ZCA whitening fitted on the same training images, after
    normalisation.
  with_masks, with_boxes, max_boxes: deliver annotations.
  augment: hflip; crop ('none', 'pad_crop' or 'inception'); crop_padding;
    crop_scale, crop_ratio (inception); color_jitter (strength, 0 is off);
    affine_degrees, affine_translate, affine_scale, affine_shear;
    randaugment_layers (0 is off), randaugment_magnitude (0-10);
    mixup_alpha, cutmix_alpha (0 is off).
"""

import collections
import dataclasses
import functools
import json
import os
from typing import ClassVar

import ml_collections
import numpy as np
from ml_collections.config_dict import placeholder

from dvl.data import datasets
from dvl.data import device_pipeline
from dvl.data import reader as reader_lib
from dvl.data import transforms as transforms_lib

_CROPS = ('none', 'pad_crop', 'inception')
_NORMALIZE = ('standardize', 'center', 'none')
_READERS = ('auto', 'memory', 'stream')
# Fields that change how batches are cut, augmented or normalised but not
# what a memory reader holds.
_NOT_READ = ('pipeline', 'batch_size', 'eval_batch_size', 'resolution',
             'eval_crop_fraction', 'shuffle_buffer', 'normalize', 'mean',
             'std', 'stats_examples', 'zca', 'zca_epsilon', 'augment')
# A process keeps the memory readers and fitted statistics of its most
# recent pipelines, so a sweep's trials over one dataset decode it once.
_CACHE_SIZE = 2
_memory_readers = collections.OrderedDict()
_fitted = collections.OrderedDict()


def default_input_config():
  """``config.input`` with every field at its default, locked.

  ``pipeline`` is 'auto' (the device pipeline on an accelerator when the
  dataset fits in its memory and every setting is supported, else the host
  one), 'device' (refused, with the reason, when it cannot be given) or
  'tfdata' (the host pipeline); see the module docstring.
  """
  cfg = ml_collections.ConfigDict(dict(
      pipeline='auto', dataset='shapes', data_dir=placeholder(str),
      path=placeholder(str),
      manual_dir=placeholder(str), class_names=placeholder(tuple),
      mask_classes=placeholder(tuple),
      image_key='image', label_key='label', train_split='train',
      test_split='test',
      shapes=dict(image_size=32, num_train=10_000, num_test=2_000, seed=0,
                  max_distractors=3),
      val_fraction=0.1, val_count=placeholder(int),
      batch_size=128, eval_batch_size=256,
      resolution=placeholder(int), eval_crop_fraction=1.0,
      reader='auto', memory_limit_gb=2.0, shuffle_buffer=10_000,
      normalize='standardize', mean=placeholder(tuple), std=placeholder(tuple),
      stats_examples=10_000, zca=False, zca_epsilon=0.1,
      with_masks=False, with_boxes=False, max_boxes=8,
      augment=dict(
          hflip=False, crop='none', crop_padding=4, crop_scale=(0.08, 1.0),
          crop_ratio=(3 / 4, 4 / 3), color_jitter=0.0, affine_degrees=0.0,
          affine_translate=0.0, affine_scale=0.0, affine_shear=0.0,
          randaugment_layers=0, randaugment_magnitude=9.0, mixup_alpha=0.0,
          cutmix_alpha=0.0),
  ))
  cfg.lock()
  return cfg


def _resolve(input_cfg):
  """Defaults overridden by ``input_cfg``; unknown or invalid fields raise."""
  cfg = default_input_config()
  if isinstance(input_cfg, ml_collections.ConfigDict):
    input_cfg = input_cfg.to_dict()
  cfg.update(input_cfg)
  choices = dict(crop=(cfg.augment.crop, _CROPS),
                 normalize=(cfg.normalize, _NORMALIZE),
                 reader=(cfg.reader, _READERS),
                 pipeline=(cfg.pipeline, device_pipeline.PIPELINES))
  for field, (value, valid) in choices.items():
    if value not in valid:
      raise ValueError(f'config.input {field} {value!r} is not one of {valid}')
  for field in ('batch_size', 'eval_batch_size', 'max_boxes'):
    if cfg[field] < 1:
      raise ValueError(f'config.input.{field} must be >= 1; got {cfg[field]}')
  mixing = cfg.augment.mixup_alpha > 0 or cfg.augment.cutmix_alpha > 0
  if mixing and (cfg.with_masks or cfg.with_boxes):
    raise ValueError('mixup and CutMix mix labels, not masks or boxes: turn '
                     'them off or set with_masks = with_boxes = False')
  return cfg


def _choose_reader(cfg, builder, n_val, precrop, memory=False):
  """The memory reader when images have a fixed size and fit the budget, or
  when ``memory`` (the device pipeline uploads its arrays)."""
  shape = builder.info.features[cfg.image_key].shape
  fixed = None not in shape
  count = builder.info.splits.total_num_examples or 0
  fits = fixed and np.prod(shape) * count <= cfg.memory_limit_gb * 1e9
  if memory or cfg.reader == 'memory' or (cfg.reader == 'auto' and fits):
    if not fixed:
      raise ValueError(f'dataset {cfg.dataset!r} has images of varying size '
                       f'{shape}; use config.input.reader = "stream"')
    return _cached(_memory_readers, _data_key(cfg, builder, n_val),
                   lambda: reader_lib.MemoryReader(cfg, builder, n_val))
  return reader_lib.StreamReader(cfg, builder, n_val, precrop)


def _data_key(cfg, builder, n_val) -> str:
  """What a memory reader's arrays depend on: the dataset's fields of the
  config, the validation count and the prepared files (path and time)."""
  fields = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_READ}
  where = os.fspath(builder.data_dir)
  stamp = os.stat(where).st_mtime_ns if os.path.exists(where) else 0
  return json.dumps([fields, n_val, where, stamp], sort_keys=True,
                    default=str)


def _cached(cache: collections.OrderedDict, key: str, make):
  """``cache[key]``, made by ``make()`` when absent; least recent evicted."""
  if key in cache:
    cache.move_to_end(key)
    return cache[key]
  value = cache[key] = make()
  while len(cache) > _CACHE_SIZE:
    cache.popitem(last=False)
  return value


def _fit(transforms, reader, key: str) -> None:
  """Fits the normalisation once per dataset and evaluation transform."""
  def fit():
    transforms.fit(reader)
    return transforms.mean, transforms.std, transforms.zca
  transforms.mean, transforms.std, transforms.zca = _cached(_fitted, key, fit)


def _output_hw(cfg, builder):
  if cfg.resolution is not None:
    return (int(cfg.resolution),) * 2
  shape = builder.info.features[cfg.image_key].shape
  if None in shape[:2]:
    raise ValueError(f'dataset {cfg.dataset!r} has images of varying size; '
                     'set config.input.resolution')
  return tuple(shape[:2])


@dataclasses.dataclass
class Pipeline:
  """Training and evaluation batches of one dataset (see the module doc).

  ``train_iter(start_step)`` is endless; ``steps_per_epoch`` full batches make
  one pass over the training split. ``eval_iter(split)`` covers ``'val'``
  (model selection), ``'test'`` (reporting) or ``'train'`` (un-augmented)
  exactly once.
  """
  cfg: ml_collections.ConfigDict
  seed: int
  reader: object
  transforms: transforms_lib.Transforms
  num_classes: int
  class_names: tuple
  image_shape: tuple
  num_train: int
  num_val: int
  num_test: int
  steps_per_epoch: int
  soft_labels: bool
  choice: str = ''
  kind: ClassVar[str] = 'tfdata'

  @property
  def batch_size(self):
    return self.cfg.batch_size

  def num_examples(self, split):
    return dict(train=self.num_train, val=self.num_val, test=self.num_test)[split]

  def train_iter(self, start_step=0):
    """Training batches from ``start_step`` on (see the module docstring)."""
    if start_step < 0:
      raise ValueError(f'start_step must be >= 0; got {start_step}')
    ds = self.reader.train_batches(self.seed, start_step, self.batch_size)
    ds = ds.map(functools.partial(self.transforms.train, self.seed),
                num_parallel_calls=reader_lib.AUTOTUNE)
    # Endless and dropped mid-stream: see reader_lib.without_autotune.
    return reader_lib.without_autotune(ds.prefetch(2)).as_numpy_iterator()

  def eval_iter(self, split='val', drop_remainder=False):
    """Every example of ``split`` once, in order, with a ``valid`` mask.

    The final batch is padded with invalid rows up to ``eval_batch_size``
    unless ``drop_remainder``, which drops it instead.
    """
    if split not in ('val', 'test', 'train'):
      raise ValueError("eval split must be 'val', 'test' or 'train'; got "
                       f'{split!r}')
    if self.num_examples(split) == 0:
      raise ValueError(f'split {split!r} is empty; set config.input.val_count '
                       'or val_fraction above 0')
    size = self.cfg.eval_batch_size
    ds = self.reader.eval_batches(split, size)
    ds = ds.map(self.transforms.eval, num_parallel_calls=reader_lib.AUTOTUNE)
    for batch in ds.prefetch(2).as_numpy_iterator():
      count = len(batch['label'])
      if count < size and drop_remainder:
        return
      yield _pad(batch, size)


def _pad(batch, size):
  """Pads every array to ``size`` rows (zeros) and adds ``valid``."""
  count = len(batch['label'])
  out = {k: np.concatenate([v, np.zeros((size - count,) + v.shape[1:],
                                        v.dtype)]) for k, v in batch.items()}
  out['valid'] = np.arange(size) < count
  return out


def make_pipeline(input_cfg, *, seed):
  """Builds the pipeline for ``config.input`` (fields in the module docstring).

  Prepares dvl's own datasets on first use; fits normalisation and ZCA
  statistics on the training split when they are not given. Returns a
  ``Pipeline`` or, as ``config.input.pipeline`` decides, a
  ``device_pipeline.DevicePipeline``.
  """
  cfg = _resolve(input_cfg)
  builder = datasets.load_builder(cfg)
  reader_lib.check_features(cfg, builder)
  _, n_val = reader_lib.split_sizes(cfg, builder)
  kind, choice = device_pipeline.choose(cfg, builder)
  features = builder.info.features
  label = features[cfg.label_key] if cfg.label_key in features else None
  num_classes = label.num_classes if label is not None else 0
  aug = cfg.augment
  if not num_classes and (aug.mixup_alpha > 0 or aug.cutmix_alpha > 0):
    raise ValueError(f'dataset {cfg.dataset!r} has no labels for mixup and '
                     'CutMix to mix; set augment.mixup_alpha = cutmix_alpha '
                     '= 0')
  transforms = transforms_lib.Transforms(cfg, _output_hw(cfg, builder),
                                         num_classes)
  reader = _choose_reader(cfg, builder, n_val, transforms.precrop,
                          memory=kind == 'device')
  transforms.precropped = reader.precrops
  num_train = reader.num_examples('train')
  steps_per_epoch = num_train // cfg.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'batch_size {cfg.batch_size} exceeds the {num_train} '
                     'training examples')
  fit_key = json.dumps([_data_key(cfg, builder, n_val), cfg.to_dict()],
                       sort_keys=True, default=str)
  _fit(transforms, reader, fit_key)
  channels = builder.info.features[cfg.image_key].shape[-1]
  host = Pipeline(
      cfg=cfg, seed=int(seed), reader=reader, transforms=transforms,
      num_classes=num_classes,
      class_names=tuple(label.names) if label is not None else (),
      image_shape=transforms.out_hw + (channels,), num_train=num_train,
      num_val=n_val, num_test=reader.num_examples('test'),
      steps_per_epoch=steps_per_epoch,
      soft_labels=aug.mixup_alpha > 0 or aug.cutmix_alpha > 0, choice=choice)
  if kind == 'device':
    return device_pipeline.DevicePipeline.upload(host, choice)
  return host
