"""What a run trains its model to do: the loss, the evaluation metrics and
the pictures of each kind of model output.

The task follows the model (``dvl.models.task``): classifiers learn image
labels; YOLO learns boxes (``dvl.detection``); FCN, SegNet and U-Net learn
per-pixel classes (``dvl.segmentation``); the autoencoders learn images
(``dvl.image_metrics``). ``config.task`` holds the fields that are not the
model's or the data's (see ``default_task_config``).

A task object is immutable and has four parts, used by ``dvl.train``:

* ``input_fields``: what the input pipeline must deliver (masks, boxes,
  images in [0, 1]); ``check_data`` checks the boxes or masks it holds;
* ``inputs`` and ``loss``, pure and jitted inside the train step;
* ``eval_outputs``, jitted inside the eval step, and ``start``, ``update``
  and ``finish``, which gather a split's outputs on the host into scalar
  metrics. ``score`` names the metric that selects the best step (higher is
  better);
* ``draw``: a PNG grid of predictions on a few test images.
"""

import dataclasses
from pathlib import Path
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dvl import (detection, draw, errors, image_metrics, losses, models,
                 segmentation)

Array = jax.Array
RECONSTRUCTION_MODES = ('denoise', 'colorize', 'super_resolution')
MASK_FORMATS = ('auto', 'trimap', 'classes')
TRIMAP_DATASETS = ('pets_local', 'oxford_iiit_pet')


def default_task_config() -> ml_collections.ConfigDict:
  """``config.task``: every field with its default, locked.

  Fields:
    pictures: test images drawn in the run's PNG grid (0 is none).
    score_threshold: detections below this score are dropped before NMS
      (low, so that mAP sees the whole precision-recall curve).
    nms_iou: IoU above which class-wise NMS drops the weaker box.
    map_iou: IoU a detection needs to match a ground-truth box (VOC: 0.5).
    draw_threshold: the score a detection needs to be drawn.
    mask_format: 'trimap' (Oxford pets: 1 pet, 2 background, 3 boundary,
      which is ignored), 'classes' (0 background, k the k-th class, as in
      ``shapes``) or 'auto' (trimap for the pets datasets).
    mode: the reconstruction task: 'denoise', 'colorize' or
      'super_resolution'.
    noise_std: denoising's Gaussian noise, in units of the [0, 1] range.
    clip_noise: clip noisy images back to [0, 1] (they stay images).
    upscale: super-resolution's factor: the input is the target
      average-pooled by it.
  """
  return ml_collections.ConfigDict(dict(
      pictures=8, score_threshold=0.01, nms_iou=0.5, map_iou=0.5,
      draw_threshold=0.3, mask_format='auto', mode='denoise', noise_std=0.5,
      clip_noise=True, upscale=2), type_safe=True).lock()


def make_task(config, pipeline) -> 'Classification':
  """The task of ``config.model`` on the data of ``pipeline``."""
  cfg = task_config(config)
  kind = models.task(config.model.name)
  if kind in ('classification', 'detection') and not pipeline.num_classes:
    data = config.input
    raise ValueError(
        f'dataset {data.dataset!r} has no labels (no feature '
        f'{data.get("label_key", "label")!r}), which a {kind} model needs: '
        'add a label array to its archives (or set config.input.label_key), '
        'or train a segmentation or autoencoder model on it')
  if kind == 'classification':
    return Classification(label_smoothing=config.train.label_smoothing)
  if kind == 'detection':
    return Detection(
        num_classes=pipeline.num_classes, class_names=pipeline.class_names,
        image_hw=tuple(pipeline.image_shape[:2]),
        grid=_model_field(config, 'grid'),
        boxes_per_cell=_model_field(config, 'boxes_per_cell'),
        score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou,
        map_iou=cfg.map_iou, draw_threshold=cfg.draw_threshold)
  if kind == 'segmentation':
    names = segmentation_class_names(config, pipeline)
    return Segmentation(num_classes=len(names), class_names=names,
                        trimap=mask_format(config) == 'trimap')
  return Reconstruction(mode=cfg.mode, noise_std=cfg.noise_std,
                        clip_noise=cfg.clip_noise, upscale=cfg.upscale)


def task_config(config) -> ml_collections.ConfigDict:
  """``config.task`` over the defaults, checked."""
  cfg = default_task_config()
  if 'task' in config:
    cfg.update(config.task.to_dict())
  errors.require(cfg.mode in RECONSTRUCTION_MODES,
                 f'config.task.mode must be one of {RECONSTRUCTION_MODES}; got '
                 f'{cfg.mode!r}')
  errors.require(cfg.mask_format in MASK_FORMATS,
                 f'config.task.mask_format must be one of {MASK_FORMATS}; got '
                 f'{cfg.mask_format!r}')
  errors.require(cfg.noise_std >= 0, 'config.task.noise_std must be >= 0')
  errors.require(cfg.upscale >= 1, 'config.task.upscale must be >= 1')
  return cfg


def _model_field(config, field: str):
  defaults = models.model_fields(config.model.name)
  return config.model.get(field, defaults[field])


def mask_format(config) -> str:
  """'trimap' or 'classes': how the dataset's masks label pixels."""
  chosen = task_config(config).mask_format
  if chosen != 'auto':
    return chosen
  base = config.input.dataset.split('/')[0].split(':')[0]
  return 'trimap' if base in TRIMAP_DATASETS else 'classes'


def segmentation_class_names(config, pipeline) -> tuple:
  """Pixel classes: ``config.input.mask_classes`` when given (the names of
  mask values 0, 1, ...), else background and pet for trimaps, else
  background and one per image class."""
  names = config.input.get('mask_classes')
  trimap = mask_format(config) == 'trimap'
  if names:
    errors.require(not trimap or len(names) == 2,
                   f'config.input.mask_classes {tuple(names)}: trimaps have '
                   'two classes, background and pet; give two names')
    return tuple(str(name) for name in names)
  if trimap:
    return ('background', 'pet')
  errors.require(bool(pipeline.class_names),
                 f'dataset {config.input.dataset!r} has no labels to name its '
                 'mask classes by: set config.input.mask_classes to the names '
                 "of the mask values 0, 1, ..., e.g. ('background', "
                 "'membrane')")
  return ('background', *pipeline.class_names)


def input_fields(config) -> dict:
  """The ``config.input`` fields the task of ``config.model`` needs."""
  kind = models.task(config.model.name)
  if kind == 'detection':
    return {'with_boxes': True}
  if kind == 'segmentation':
    return {'with_masks': True}
  if kind == 'reconstruction':
    return {'normalize': 'none'}  # targets are images in [0, 1]
  return {}


def model_input_shape(config, image_shape) -> tuple:
  """The model's input shape for pipeline images of ``image_shape``."""
  if models.task(config.model.name) != 'reconstruction':
    return tuple(image_shape)
  cfg = task_config(config)
  h, w, c = image_shape
  if cfg.mode == 'colorize':
    return (h, w, 1)
  if cfg.mode == 'super_resolution':
    errors.require(h % cfg.upscale == 0 and w % cfg.upscale == 0,
                   f'super-resolution: the {h}x{w} target does not divide by '
                   f'upscale {cfg.upscale}; set config.input.resolution to a '
                   'multiple of it')
    return (h // cfg.upscale, w // cfg.upscale, c)
  return (h, w, c)


def check_data(task, pipeline, dataset: str) -> None:
  """Checks the boxes or masks of every split before training: a ValueError
  names the split, the example and the fix. Datasets streamed from disk
  are checked batch by batch instead (``check_batch``)."""
  if task.kind not in ('detection', 'segmentation'):
    return
  arrays = getattr(pipeline.reader, 'arrays', None)
  for split, tensors in (arrays or {}).items():
    task.check_split({k: np.asarray(v) for k, v in tensors.items()},
                     f'dataset {dataset!r}, {split} split (examples '
                     'numbered in reading order)')


def check_model(task, model, input_shape, image_shape, name: str) -> None:
  """Raises when an image-to-image model's output is not the target's
  shape (e.g. a denoising model asked to colourise)."""
  if task.kind != 'reconstruction':
    return
  key = jax.random.key(0)
  out = jax.eval_shape(lambda x: model.init_with_output(
      {'params': key, 'dropout': key}, x, train=False)[0][0],
      jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
  if tuple(out.shape[1:]) != tuple(image_shape):
    raise ValueError(
        f'model {name} turns a {tuple(input_shape)} input into '
        f'{tuple(out.shape[1:])}, but the {task.mode} task wants '
        f'{tuple(image_shape)}: use model autoencoder_{task.mode}, or set '
        'its out_channels and upscale to match config.task')


def check_batch(task, batch: dict, where: str) -> None:
  """Checks one delivered batch (of a streamed dataset)."""
  if task.kind in ('detection', 'segmentation'):
    task.check_split(batch, where)


class _Summed:
  """Evaluation outputs that are sums over a batch's valid rows with their
  ``count``: they add up over batches on the device."""

  def start(self):
    return None

  def update(self, acc, out, batch):
    del batch
    return out if acc is None else jax.tree.map(jnp.add, acc, out)

  @staticmethod
  def means(acc) -> dict:
    """Every sum divided by the count."""
    acc = jax.device_get(acc)
    count = max(float(acc['count']), 1.0)
    return {k: float(v) / count for k, v in acc.items() if k != 'count'}


@dataclasses.dataclass(frozen=True)
class Classification(_Summed):
  """Image labels: softmax cross-entropy (label smoothing, soft labels of
  mixup and CutMix), top-1 accuracy, test-time views."""
  label_smoothing: float = 0.0
  kind: ClassVar[str] = 'classification'
  score: ClassVar[str] = 'accuracy'
  has_classes: ClassVar[bool] = True

  def check_split(self, arrays: dict, where: str) -> None:
    del arrays, where  # labels are checked by the dataset's class count

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del rng, train
    return batch['image']

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    if 'soft_label' in batch:
      targets = losses.smooth_labels(batch['soft_label'], self.label_smoothing)
      loss = losses.soft_target_cross_entropy(outputs, targets)
    else:
      loss = losses.softmax_cross_entropy(
          outputs, batch['label'], label_smoothing=self.label_smoothing)
    return loss, {'accuracy': losses.accuracy(outputs, batch['label'])}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    del inputs
    valid = batch['valid'].astype(jnp.float32)
    nll = losses.soft_cross_entropy_per_example(
        outputs, jax.nn.one_hot(batch['label'], outputs.shape[-1]))
    correct = losses.top_k_correct(outputs, batch['label'], 1)
    return {'loss': jnp.sum(nll * valid), 'correct': jnp.sum(correct * valid),
            'count': jnp.sum(valid)}

  def finish(self, acc) -> dict:
    means = self.means(acc)
    return {'loss': means['loss'], 'accuracy': means['correct']}

  def draw(self, path, batch, out, class_names) -> Optional[Path]:
    del path, batch, out, class_names
    return None


@dataclasses.dataclass(frozen=True)
class Detection:
  """YOLO v1 boxes: the paper's loss on assigned targets, decoding and
  class-wise NMS, VOC mAP at ``map_iou`` (``dvl.detection``)."""
  num_classes: int
  class_names: tuple
  image_hw: tuple
  grid: int
  boxes_per_cell: int
  score_threshold: float = 0.01
  nms_iou: float = 0.5
  map_iou: float = 0.5
  draw_threshold: float = 0.3
  kind: ClassVar[str] = 'detection'
  score: ClassVar[str] = 'map'
  has_classes: ClassVar[bool] = True

  def check_split(self, arrays: dict, where: str) -> None:
    try:
      detection.validate_boxes(arrays['boxes'], arrays['box_label'],
                               image_hw=arrays['image'].shape[1:3],
                               num_classes=self.num_classes)
    except ValueError as err:
      raise ValueError(f'{where}: {err}') from None

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del rng, train
    return batch['image']

  def _shape(self) -> dict:
    return dict(boxes_per_cell=self.boxes_per_cell,
                num_classes=self.num_classes)

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    target = detection.assign_targets(
        batch['boxes'], batch['box_label'], image_hw=self.image_hw,
        grid=self.grid, num_classes=self.num_classes)
    terms = detection.yolo_loss_terms(outputs.astype(jnp.float32), target,
                                      **self._shape())
    return sum(terms.values()), {f'loss_{k}': v for k, v in terms.items()}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    del inputs
    outputs = outputs.astype(jnp.float32)
    boxes, scores = detection.decode_predictions(
        outputs, image_hw=self.image_hw, **self._shape())
    target = detection.assign_targets(
        batch['boxes'], batch['box_label'], image_hw=self.image_hw,
        grid=self.grid, num_classes=self.num_classes)
    per_image = jax.vmap(lambda p, t: detection.yolo_loss(
        p[None], t[None], **self._shape()))(outputs, target)
    valid = batch['valid'].astype(jnp.float32)
    return {'boxes': boxes, 'scores': scores,
            'loss': jnp.sum(per_image * valid), 'count': jnp.sum(valid)}

  def detections(self, out, batch) -> list:
    """The host-side ``Detections`` of the valid rows of a batch."""
    out = jax.device_get(out)
    return [detection.detect(out['boxes'][i], out['scores'][i],
                             score_threshold=self.score_threshold,
                             iou_threshold=self.nms_iou)
            for i in np.flatnonzero(batch['valid'])]

  def start(self):
    return {'detections': [], 'truths': [], 'loss': 0.0, 'count': 0.0}

  def update(self, acc, out, batch):
    valid = np.flatnonzero(batch['valid'])
    acc['detections'] += self.detections(out, batch)
    acc['truths'] += [(batch['boxes'][i], batch['box_label'][i])
                      for i in valid]
    acc['loss'] += float(out['loss'])
    acc['count'] += float(out['count'])
    return acc

  def finish(self, acc) -> dict:
    mean_ap, ap = detection.mean_average_precision(
        acc['detections'], acc['truths'], num_classes=self.num_classes,
        iou_threshold=self.map_iou)
    results = {'loss': acc['loss'] / max(acc['count'], 1.0), 'map': mean_ap}
    results.update({f'ap_{name}': float(v)
                    for name, v in zip(self.class_names, ap)})
    return results

  def draw(self, path, batch, out, class_names) -> Path:
    batch, out = real_rows(batch, out)
    shown = []
    for found in self.detections(out, batch):
      keep = found.scores >= self.draw_threshold
      shown.append(detection.Detections(found.boxes[keep], found.scores[keep],
                                        found.labels[keep]))
    truths = [(b, l) for b, l in zip(batch['boxes'], batch['box_label'])]
    return draw.save_detections(path, batch['image'], shown, truths,
                                class_names=class_names)


@dataclasses.dataclass(frozen=True)
class Segmentation:
  """Per-pixel classes: softmax cross-entropy without the ignored pixels,
  pixel accuracy, per-class, mean and foreground IoU (``dvl.segmentation``).
  ``trimap`` maps pet trimaps to pet 1 / background 0, boundary ignored."""
  num_classes: int
  class_names: tuple
  trimap: bool = False
  ignore_label: int = segmentation.IGNORE_LABEL
  kind: ClassVar[str] = 'segmentation'
  score: ClassVar[str] = 'mean_iou'
  has_classes: ClassVar[bool] = True

  def labels(self, mask) -> Array:
    if self.trimap:
      return segmentation.trimap_to_labels(mask,
                                           ignore_label=self.ignore_label)
    return jnp.asarray(mask, jnp.int32)

  def check_split(self, arrays: dict, where: str) -> None:
    mask = np.asarray(arrays['mask'])
    if self.trimap:
      mask = np.where(np.isin(mask, (1, 2)), 2 - mask, self.ignore_label)
    try:
      segmentation.validate_masks(arrays['image'], mask,
                                  num_classes=self.num_classes,
                                  ignore_label=self.ignore_label)
    except ValueError as err:
      raise ValueError(f'{where}: {err}') from None

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del rng, train
    return batch['image']

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    labels = self.labels(batch['mask'])
    loss = losses.pixel_softmax_cross_entropy(outputs, labels,
                                              ignore_label=self.ignore_label)
    counted = labels != self.ignore_label
    right = (jnp.argmax(outputs, -1) == labels) & counted
    return loss, {'pixel_accuracy': jnp.sum(right) / jnp.maximum(
        jnp.sum(counted), 1)}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    del inputs
    labels = self.labels(batch['mask'])
    valid = batch['valid']
    labels = jnp.where(valid[:, None, None], labels, self.ignore_label)
    loss = losses.pixel_softmax_cross_entropy(outputs, labels,
                                              ignore_label=self.ignore_label)
    count = jnp.sum(valid.astype(jnp.float32))
    return {'confusion': segmentation.confusion_matrix(
                outputs, labels, num_classes=self.num_classes,
                ignore_label=self.ignore_label),
            'loss': loss * count, 'count': count}

  def start(self):
    return None

  def update(self, acc, out, batch):
    del batch
    out = jax.device_get(out)
    out['confusion'] = out['confusion'].astype(np.int64)
    return out if acc is None else jax.tree.map(np.add, acc, out)

  def finish(self, acc) -> dict:
    cm = acc['confusion']
    iou = np.asarray(segmentation.class_iou(cm))
    results = {'loss': float(acc['loss']) / max(float(acc['count']), 1.0),
               'pixel_accuracy': float(segmentation.pixel_accuracy(cm)),
               'mean_iou': float(np.nanmean(iou)),
               'foreground_iou': float(segmentation.foreground_iou(cm))}
    results.update({f'iou_{name}': float(v)
                    for name, v in zip(self.class_names, iou)})
    return results

  def draw(self, path, batch, out, class_names) -> Path:
    del class_names  # the image classes; the pixel classes are the task's
    batch, out = real_rows(batch, out)
    return draw.save_segmentations(
        path, batch['image'], out['predictions'],
        np.asarray(self.labels(batch['mask'])), num_classes=self.num_classes,
        ignore_label=self.ignore_label, class_names=self.class_names)


@dataclasses.dataclass(frozen=True)
class Reconstruction(_Summed):
  """Images from corrupted images, trained with the mean squared error:
  denoising (Gaussian noise added on the fly), colourisation (grey in) or
  super-resolution (average-pooled in). Metrics: PSNR and SSIM of the
  output and, as the baseline to beat, of the input itself (the noisy image,
  the grey image, the nearest-neighbour enlargement)."""
  mode: str = 'denoise'
  noise_std: float = 0.5
  clip_noise: bool = True
  upscale: int = 2
  kind: ClassVar[str] = 'reconstruction'
  score: ClassVar[str] = 'psnr'
  has_classes: ClassVar[bool] = False

  def check_split(self, arrays: dict, where: str) -> None:
    del arrays, where

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del train
    images = batch['image']
    if self.mode == 'colorize':
      return grey(images)
    if self.mode == 'super_resolution':
      return downsample(images, self.upscale)
    noisy = images + self.noise_std * jax.random.normal(
        rng, images.shape, images.dtype)
    return jnp.clip(noisy, 0.0, 1.0) if self.clip_noise else noisy

  def baseline(self, inputs, target_shape) -> Array:
    """The input as a guess of the target (same shape)."""
    if self.mode == 'colorize':
      return jnp.broadcast_to(inputs, target_shape)
    if self.mode == 'super_resolution':
      return jnp.repeat(jnp.repeat(inputs, self.upscale, 1), self.upscale, 2)
    return inputs

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    outputs = outputs.astype(jnp.float32)
    mse = jnp.mean(jnp.square(outputs - batch['image']))
    return mse, {'psnr': jnp.mean(image_metrics.psnr(outputs,
                                                     batch['image']))}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    outputs, target = outputs.astype(jnp.float32), batch['image']
    valid = batch['valid'].astype(jnp.float32)
    base = jnp.clip(self.baseline(inputs, target.shape), 0.0, 1.0)
    per_image = {
        'loss': image_metrics.mse(outputs, target),
        'psnr': image_metrics.psnr(outputs, target),
        'ssim': image_metrics.ssim(outputs, target),
        'input_psnr': image_metrics.psnr(base, target),
        'input_ssim': image_metrics.ssim(base, target)}
    sums = {k: jnp.sum(v * valid) for k, v in per_image.items()}
    return {**sums, 'count': jnp.sum(valid)}

  def finish(self, acc) -> dict:
    results = self.means(acc)
    results['psnr_gain'] = results['psnr'] - results['input_psnr']
    return results

  def draw(self, path, batch, out, class_names) -> Path:
    del class_names
    batch, out = real_rows(batch, out)
    return draw.save_triples(path, out['inputs'], out['outputs'],
                             batch['image'])


def real_rows(batch: dict, out: dict) -> tuple[dict, dict]:
  """The rows of a batch, and of the outputs drawn from it, that hold real
  examples (``batch['valid']``), not the padding of a final eval batch."""
  if 'valid' not in batch:
    return batch, out
  keep = np.flatnonzero(np.asarray(batch['valid']))
  pick = lambda tree: {k: np.asarray(v)[keep] for k, v in tree.items()}
  return pick(batch), pick(out)


def grey(images) -> Array:
  """ITU-R BT.601 luma of RGB images, one channel."""
  weights = jnp.asarray([0.299, 0.587, 0.114], images.dtype)
  return jnp.sum(images * weights, axis=-1, keepdims=True)


def downsample(images, factor: int) -> Array:
  """Average pooling by ``factor`` (the low-resolution input)."""
  n, h, w, c = images.shape
  return images.reshape(n, h // factor, factor, w // factor, factor,
                        c).mean(axis=(2, 4))


def picture_outputs(task, model, variables, batch: dict, inputs) -> dict:
  """What ``task.draw`` needs besides the batch, from one forward pass."""
  outputs, _ = model.apply(variables, inputs, train=False)
  outputs = outputs.astype(jnp.float32)
  if task.kind == 'detection':
    boxes, scores = detection.decode_predictions(
        outputs, image_hw=task.image_hw, **task._shape())
    return {'boxes': boxes, 'scores': scores}
  if task.kind == 'segmentation':
    return {'predictions': jnp.argmax(outputs, -1)}
  if task.kind == 'reconstruction':
    return {'inputs': inputs, 'outputs': outputs}
  return {}

