"""Per-pixel classes (``config.model`` a segmenter; ``dvl.segmentation``)."""

import dataclasses
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dvl import draw, errors, losses, segmentation
from dvl.tasks.base import Array, Task, real_rows, task_config

TRIMAP_DATASETS = ('pets_local', 'oxford_iiit_pet')


def mask_format(config) -> str:
  """'trimap' or 'classes': how the dataset's masks label pixels."""
  chosen = task_config(config).mask_format
  if chosen != 'auto':
    return chosen
  base = config.input.dataset.split('/')[0].split(':')[0]
  return 'trimap' if base in TRIMAP_DATASETS else 'classes'


def class_names(config, pipeline) -> tuple:
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


@dataclasses.dataclass(frozen=True)
class Segmentation(Task):
  """Per-pixel classes: softmax cross-entropy without the ignored pixels,
  pixel accuracy, per-class, mean and foreground IoU (``dvl.segmentation``).
  ``trimap`` maps pet trimaps to pet 1 / background 0, boundary ignored."""
  num_classes: int
  class_names: tuple
  trimap: bool = False
  ignore_label: int = segmentation.IGNORE_LABEL
  kind: ClassVar[str] = 'segmentation'
  score: ClassVar[str] = 'mean_iou'
  input_fields: ClassVar[dict] = {'with_masks': True}
  checks_annotations: ClassVar[bool] = True

  @classmethod
  def build(cls, config, cfg, pipeline) -> 'Segmentation':
    del cfg
    names = class_names(config, pipeline)
    return cls(num_classes=len(names), class_names=names,
               trimap=mask_format(config) == 'trimap')

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

  def picture_outputs(self, outputs, inputs) -> dict:
    del inputs
    return {'predictions': jnp.argmax(outputs, -1)}

  def draw(self, path, batch, out, class_names) -> Path:
    del class_names  # the image classes; the pixel classes are the task's
    batch, out = real_rows(batch, out)
    return draw.save_segmentations(
        path, batch['image'], out['predictions'],
        np.asarray(self.labels(batch['mask'])), num_classes=self.num_classes,
        ignore_label=self.ignore_label, class_names=self.class_names)
