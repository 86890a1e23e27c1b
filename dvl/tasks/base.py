"""The task protocol: what a run trains its model to do.

A task object is immutable; ``dvl.train`` uses it through these parts, and
the task classes (``classification``, ``detection``, ``segmentation``,
``reconstruction``) each own theirs:

* ``build(config, cfg, pipeline)``: the task of a config on a pipeline's
  data (``cfg`` is ``config.task`` over its defaults);
* ``input_fields``: what the input pipeline must deliver (masks, boxes,
  images in [0, 1]); ``model_input_shape``: the model's input for the
  pipeline's images; ``check_data`` / ``check_batch``: the annotations of
  every split or of one streamed batch; ``check_model``: the model's output
  against the target;
* ``inputs`` and ``loss``, pure and jitted inside the train step;
* ``eval_outputs``, jitted inside the eval step (``test_views``: average
  the logits over test-time views), and ``start``, ``update`` and
  ``finish``, which gather a split's outputs on the host into scalar
  metrics. ``score`` names the metric that selects the best step (higher is
  better);
* ``picture_outputs`` and ``draw``: a PNG grid of predictions on a few test
  images (``pictures`` says whether the task draws one).
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dvl import errors

Array = jax.Array
RECONSTRUCTION_MODES = ('denoise', 'colorize', 'super_resolution')
MASK_FORMATS = ('auto', 'trimap', 'classes')


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


class Task:
  """The parts every task has (module docstring); subclasses are frozen
  dataclasses and override what differs from these defaults."""
  kind: ClassVar[str]
  score: ClassVar[str]
  has_classes: ClassVar[bool] = True
  needs_labels: ClassVar[bool] = False
  input_fields: ClassVar[dict] = {}
  pictures: ClassVar[bool] = True
  test_views: ClassVar[bool] = False
  checks_annotations: ClassVar[bool] = False

  @classmethod
  def build(cls, config, cfg, pipeline) -> 'Task':
    raise NotImplementedError

  @classmethod
  def model_input_shape(cls, cfg, image_shape) -> tuple:
    del cfg
    return tuple(image_shape)

  def check_split(self, arrays: dict, where: str) -> None:
    del arrays, where

  def check_data(self, pipeline, dataset: str) -> None:
    """Checks the annotations of every split held in memory before
    training: a ValueError names the split, the example and the fix.
    Datasets streamed from disk are checked batch by batch instead."""
    if not self.checks_annotations:
      return
    arrays = getattr(pipeline.reader, 'arrays', None)
    for split, tensors in (arrays or {}).items():
      self.check_split({k: np.asarray(v) for k, v in tensors.items()},
                       f'dataset {dataset!r}, {split} split (examples '
                       'numbered in reading order)')

  def check_batch(self, batch: dict, where: str) -> None:
    """Checks one delivered batch (of a streamed dataset)."""
    if self.checks_annotations:
      self.check_split(batch, where)

  def check_model(self, model, input_shape, image_shape, name: str) -> None:
    del model, input_shape, image_shape, name

  def picture_outputs(self, outputs, inputs) -> dict:
    """What ``draw`` needs besides the batch, from the model's outputs."""
    del outputs, inputs
    return {}


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


def real_rows(batch: dict, out: dict) -> tuple[dict, dict]:
  """The rows of a batch, and of the outputs drawn from it, that hold real
  examples (``batch['valid']``), not the padding of a final eval batch."""
  if 'valid' not in batch:
    return batch, out
  keep = np.flatnonzero(np.asarray(batch['valid']))
  pick = lambda tree: {k: np.asarray(v)[keep] for k, v in tree.items()}
  return pick(batch), pick(out)
