"""The device input pipeline: the dataset held in device memory.

``config.input.pipeline = 'device'`` uploads a dataset that fits in device
memory once (images in their stored dtype and size, int32 labels; the
memory reader's ``train``, ``val`` and ``test`` arrays), then builds every
batch on the device with one jitted program: gather the batch's examples by
index, crop window and flip (``dvl.data.device_augment``), colour jitter,
normalisation, then mixup or CutMix. Batches are dicts of JAX arrays with the
keys, dtypes and shapes of the host pipeline's (``dvl.data.pipeline``).

What matches the host pipeline (``'tfdata'``) exactly:
  * the data order: step ``k`` gathers the same training examples, in the
    same order, from ``reader.epoch_order`` (the permutation of the epoch is
    computed once per epoch on the host), so ``train_iter(k)`` yields what an
    uninterrupted run yields from step ``k`` on, on either pipeline;
  * evaluation: the same examples in the same order, the final batch padded
    with zero rows marked ``valid = False``;
  * with augmentation off, the delivered batches, to float rounding.
The random augmentation parameters come from ``jax.random`` keyed by
``(seed, step)`` rather than TensorFlow's stateless ops: the same
distributions, other draws.

Not on the device: RandAugment, the affine warp, ZCA, masks and boxes, the
stream reader (datasets too large for memory, or of varying image size) and
multi-process runs. Asking for ``'device'`` with any of them, or with a
dataset larger than the device's free memory, raises a ValueError that names
the setting (or gives the dataset's size and the free memory) and suggests
``'tfdata'``; ``'auto'`` falls back to the host pipeline.

``'auto'`` picks the device pipeline on an accelerator backend when the
dataset takes at most ``AUTO_DATA_SHARE`` of the device's free memory (the
rest is the model's) and every configured augmentation is supported. On the
CPU backend, where "device memory" is host memory, it keeps the host
pipeline: there both pipelines share the same cores with the train step
(the host one on tf.data threads that overlap the step, the device one in
XLA's pool between steps), both deliver images far faster than a train step
on the same cores consumes them, and the train loop measured no faster on
the device pipeline (``benchmarks/input_pipeline.py``; figures in
``docs/input-pipeline.md``), while it would hold a second copy of the
dataset in host memory. ``'device'`` still works on CPU when asked for.
"""

import dataclasses
import functools
import itertools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dvl.data import datasets
from dvl.data import device_augment as aug_lib
from dvl.data import reader as reader_lib
from dvl.device_memory import free_memory_bytes

PIPELINES = ('auto', 'device', 'tfdata')
# The share of the device's free memory that 'auto' lets the dataset take.
AUTO_DATA_SHARE = 0.5
_AFFINE = ('affine_degrees', 'affine_translate', 'affine_scale',
           'affine_shear')


def unsupported(cfg) -> list[str]:
  """The settings of a resolved ``config.input`` that the device pipeline
  does not implement, as ``'field = value'`` strings."""
  aug = cfg.augment
  out = [f'augment.{f} = {aug[f]}' for f in ('randaugment_layers', *_AFFINE)
         if aug[f] > 0]
  out += [f'{f} = True' for f in ('zca', 'with_masks', 'with_boxes')
          if cfg[f]]
  if cfg.reader == 'stream':
    out.append("reader = 'stream'")
  return out


def dataset_bytes(cfg, builder) -> int | None:
  """Bytes the device pipeline uploads: every image of the train split (val
  included) and the test split at its stored size and dtype, plus int32
  labels; None for images of varying size."""
  feature = builder.info.features[cfg.image_key]
  if None in feature.shape:
    return None
  per_image = int(np.prod(feature.shape)) * np.dtype(feature.np_dtype).itemsize
  count = sum(int(datasets.as_dataset(cfg, builder, split).cardinality())
              for split in (cfg.train_split, cfg.test_split))
  return count * (per_image + 4)


def _size(count: int) -> str:
  """Bytes in GiB, or in MiB below one GiB."""
  if count >= 2 ** 30:
    return f'{count / 2 ** 30:.2f} GiB'
  return f'{count / 2 ** 20:.1f} MiB'


def choose(cfg, builder) -> tuple[str, str]:
  """``(pipeline, why)``: ``'device'`` or ``'tfdata'`` for ``cfg.pipeline``
  (module docstring). Raises ValueError when ``'device'`` was asked for and
  cannot be given."""
  if cfg.pipeline == 'tfdata':
    return 'tfdata', 'config.input.pipeline'
  explicit = cfg.pipeline == 'device'
  problems = unsupported(cfg)
  size = dataset_bytes(cfg, builder)
  if size is None:
    problems.append('images of varying size')
  if jax.process_count() > 1:
    problems.append(f'{jax.process_count()} processes')
  if problems and explicit:
    raise ValueError(
        f"config.input.pipeline = 'device' does not support "
        f"{', '.join(problems)}; set config.input.pipeline = 'tfdata' (the "
        "host pipeline), or 'auto' to choose by itself")
  if problems:
    return 'tfdata', f"auto: the device pipeline lacks {', '.join(problems)}"
  free = free_memory_bytes()
  if explicit:
    if free is not None and size > free:
      raise ValueError(
          f'dataset {cfg.dataset!r} takes {_size(size)} at its stored size '
          f'and dtype, more than the {_size(free)} free on '
          f"{jax.devices()[0].device_kind}; set config.input.pipeline = "
          "'tfdata' to read it from the host")
    return 'device', 'config.input.pipeline'
  if jax.default_backend() == 'cpu':
    return 'tfdata', 'auto: the host pipeline on the CPU backend'
  if free is None or size > AUTO_DATA_SHARE * free:
    known = 'unknown' if free is None else _size(free)
    return 'tfdata', (f'auto: the dataset ({_size(size)}) is over '
                      f'{AUTO_DATA_SHARE:.0%} of the free device memory '
                      f'({known})')
  return 'device', f'auto: the dataset ({_size(size)}) fits on the device'


@dataclasses.dataclass(frozen=True)
class Plan:
  """The static facts of the batch programs (hashable: a jit static)."""
  src_hw: tuple
  out_hw: tuple
  batch_size: int
  eval_batch_size: int
  eval_fraction: float
  crop: str
  padding: int
  scale: tuple
  ratio: tuple
  hflip: bool
  color_jitter: float
  mixup_alpha: float
  cutmix_alpha: float
  num_classes: int

  @classmethod
  def of(cls, cfg, src_hw, out_hw, num_classes):
    aug = cfg.augment
    return cls(
        src_hw=tuple(src_hw), out_hw=tuple(out_hw),
        batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
        eval_fraction=float(cfg.eval_crop_fraction), crop=aug.crop,
        padding=int(aug.crop_padding), scale=tuple(aug.crop_scale),
        ratio=tuple(aug.crop_ratio), hflip=bool(aug.hflip),
        color_jitter=float(aug.color_jitter),
        mixup_alpha=float(aug.mixup_alpha),
        cutmix_alpha=float(aug.cutmix_alpha), num_classes=num_classes)

  @property
  def mixes(self) -> bool:
    return self.mixup_alpha > 0 or self.cutmix_alpha > 0


def _train_windows(key, plan: Plan):
  """The training crop windows of a batch, flipped when ``plan.hflip``."""
  crop_key, flip_key = jax.random.split(key)
  size = plan.batch_size
  if plan.crop == 'pad_crop':
    windows = aug_lib.pad_crop_windows(crop_key, size, plan.src_hw,
                                       plan.out_hw, plan.padding)
  elif plan.crop == 'inception':
    windows = aug_lib.inception_windows(crop_key, size, plan.src_hw,
                                        plan.scale, plan.ratio)
  else:
    windows = aug_lib.centre_windows(size, plan.src_hw)
  if plan.hflip:
    windows = aug_lib.random_flips(flip_key, windows)
  return windows


def _normalized(images, mean, std):
  return images if mean is None else (images - mean) / std


@functools.partial(jax.jit, static_argnames='plan')
def _train_batch(images, labels, order, offset, key, step, mean, std, *,
                 plan: Plan):
  """One training batch: the examples ``order[offset * B:(offset + 1) * B]``
  augmented with the key of ``step``."""
  index = jax.lax.dynamic_slice_in_dim(order, offset * plan.batch_size,
                                       plan.batch_size)
  key = jax.random.fold_in(key, step)
  window_key, jitter_key, mix_key = jax.random.split(key, 3)
  batch_images = images[index]
  if plan.crop == 'none' and not plan.hflip and plan.src_hw == plan.out_hw:
    batch_images = batch_images.astype(jnp.float32)
  else:
    batch_images = aug_lib.crop_resize(
        batch_images, _train_windows(window_key, plan), plan.out_hw)
  batch_images = batch_images / 255.0
  if plan.color_jitter > 0:
    batch_images = aug_lib.color_jitter(jitter_key, batch_images,
                                        plan.color_jitter)
  batch = dict(image=_normalized(batch_images, mean, std),
               label=labels[index])
  if plan.mixes:
    batch['image'], batch['soft_label'] = aug_lib.mix(
        mix_key, batch['image'], batch['label'], plan.num_classes,
        plan.mixup_alpha, plan.cutmix_alpha)
  return batch


@functools.partial(jax.jit, static_argnames='plan')
def _eval_batch(images, labels, start, count, mean, std, *, plan: Plan):
  """Examples ``start .. start + eval_batch_size`` of a split of ``count``,
  centre-cropped and normalised; rows past ``count`` are zeros with
  ``valid = False``."""
  index = start + jnp.arange(plan.eval_batch_size)
  valid = index < count
  index = jnp.minimum(index, count - 1)
  batch_images = images[index]
  if plan.eval_fraction == 1.0 and plan.src_hw == plan.out_hw:
    batch_images = batch_images.astype(jnp.float32)
  else:
    windows = aug_lib.centre_windows(plan.eval_batch_size, plan.src_hw,
                                     plan.eval_fraction)
    batch_images = aug_lib.crop_resize(batch_images, windows, plan.out_hw)
  batch_images = _normalized(batch_images / 255.0, mean, std)
  return dict(image=jnp.where(valid[:, None, None, None], batch_images, 0.0),
              label=jnp.where(valid, labels[index], 0), valid=valid)


def _device_arrays(reader) -> dict:
  """The memory reader's splits on the device, uploaded once per reader
  (readers are cached, so a sweep over one dataset uploads it once)."""
  if getattr(reader, 'device_arrays', None) is None:
    reader.device_arrays = {
        split: {k: jax.device_put(np.asarray(arrays[k]))
                for k in ('image', 'label')}
        for split, arrays in reader.arrays.items()}
  return reader.device_arrays


@dataclasses.dataclass
class DevicePipeline:
  """Training and evaluation batches built on the device (module docstring);
  the interface of ``dvl.data.pipeline.Pipeline``."""
  cfg: object
  seed: int
  reader: object
  plan: Plan
  mean: np.ndarray | None
  std: np.ndarray | None
  num_classes: int
  class_names: tuple
  image_shape: tuple
  num_train: int
  num_val: int
  num_test: int
  steps_per_epoch: int
  soft_labels: bool
  choice: str = ''
  kind: ClassVar[str] = 'device'

  @classmethod
  def upload(cls, host, choice: str) -> 'DevicePipeline':
    """The device pipeline of a host ``Pipeline`` built on a memory reader:
    the same data, order, normalisation and facts."""
    transforms = host.transforms
    src_hw = tuple(host.reader.arrays['train']['image'].shape[1:3])
    _device_arrays(host.reader)
    as_array = lambda v: None if v is None else jnp.asarray(v, jnp.float32)
    return cls(
        cfg=host.cfg, seed=host.seed, reader=host.reader,
        plan=Plan.of(host.cfg, src_hw, transforms.out_hw, host.num_classes),
        mean=as_array(transforms.mean), std=as_array(transforms.std),
        num_classes=host.num_classes, class_names=host.class_names,
        image_shape=host.image_shape, num_train=host.num_train,
        num_val=host.num_val, num_test=host.num_test,
        steps_per_epoch=host.steps_per_epoch, soft_labels=host.soft_labels,
        choice=choice)

  @property
  def batch_size(self):
    return self.cfg.batch_size

  def num_examples(self, split):
    return dict(train=self.num_train, val=self.num_val,
                test=self.num_test)[split]

  def _order(self, epoch: int) -> jax.Array:
    order = reader_lib.epoch_order(self.seed, epoch, self.num_train)
    return jax.device_put(np.asarray(order, np.int32))

  def train_indices(self, step: int) -> np.ndarray:
    """The training examples (indices into the train split) of ``step``."""
    epoch, offset = divmod(step, self.steps_per_epoch)
    size = self.batch_size
    return np.asarray(self._order(epoch))[offset * size:(offset + 1) * size]

  def train_iter(self, start_step=0):
    """Training batches from ``start_step`` on, endless (module docstring)."""
    if start_step < 0:
      raise ValueError(f'start_step must be >= 0; got {start_step}')
    return self._train_batches(start_step)

  def _train_batches(self, start_step):
    data = _device_arrays(self.reader)['train']
    key = jax.random.key(self.seed)
    epoch, order = None, None
    for step in itertools.count(start_step):
      if step // self.steps_per_epoch != epoch:
        epoch = step // self.steps_per_epoch
        order = self._order(epoch)
      yield _train_batch(data['image'], data['label'], order,
                         np.int32(step % self.steps_per_epoch), key,
                         np.uint32(step % 2 ** 32), self.mean, self.std,
                         plan=self.plan)

  def eval_iter(self, split='val', drop_remainder=False):
    """Every example of ``split`` once, in order, with a ``valid`` mask; the
    final batch padded as the host pipeline pads it (or dropped with
    ``drop_remainder``)."""
    if split not in ('val', 'test', 'train'):
      raise ValueError("eval split must be 'val', 'test' or 'train'; got "
                       f'{split!r}')
    count = self.num_examples(split)
    if count == 0:
      raise ValueError(f'split {split!r} is empty; set config.input.val_count '
                       'or val_fraction above 0')
    data = _device_arrays(self.reader)[split]
    size = self.cfg.eval_batch_size
    for start in range(0, count, size):
      if drop_remainder and start + size > count:
        return
      yield _eval_batch(data['image'], data['label'], np.int32(start),
                        np.int32(count), self.mean, self.std, plan=self.plan)
