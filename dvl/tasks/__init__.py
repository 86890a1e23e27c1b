"""What a run trains its model to do: the loss, the evaluation metrics and
the pictures of each kind of model output.

The task follows the model's spec (``dvl.models.task``): classifiers learn
image labels; YOLO learns boxes; FCN, SegNet and U-Net learn per-pixel
classes; the autoencoders learn images. ``TASKS`` maps each kind to its
class, which owns everything that differs between them (``dvl.tasks.base``
describes the protocol); ``config.task`` holds the fields that are not the
model's or the data's (see ``default_task_config``).
"""

import jax.numpy as jnp

from dvl import models
from dvl.tasks.base import (MASK_FORMATS, RECONSTRUCTION_MODES, Task,
                            default_task_config, real_rows, task_config)
from dvl.tasks.classification import Classification
from dvl.tasks.detection import Detection
from dvl.tasks.reconstruction import Reconstruction, downsample, grey
from dvl.tasks.segmentation import (TRIMAP_DATASETS, Segmentation,
                                    class_names as segmentation_class_names,
                                    mask_format)

TASKS: dict[str, type[Task]] = {
    task.kind: task
    for task in (Classification, Detection, Segmentation, Reconstruction)}


def task_class(config) -> type[Task]:
  """The task class of ``config.model`` (from its spec)."""
  return TASKS[models.task(config.model.name)]


def make_task(config, pipeline) -> Task:
  """The task of ``config.model`` on the data of ``pipeline``."""
  cls = task_class(config)
  if cls.needs_labels and not pipeline.num_classes:
    data = config.input
    raise ValueError(
        f'dataset {data.dataset!r} has no labels (no feature '
        f'{data.get("label_key", "label")!r}), which a {cls.kind} model '
        'needs: add a label array to its archives (or set '
        'config.input.label_key), or train a segmentation or autoencoder '
        'model on it')
  return cls.build(config, task_config(config), pipeline)


def input_fields(config) -> dict:
  """The ``config.input`` fields the task of ``config.model`` needs."""
  return dict(task_class(config).input_fields)


def model_input_shape(config, image_shape) -> tuple:
  """The model's input shape for pipeline images of ``image_shape``."""
  return task_class(config).model_input_shape(task_config(config),
                                              image_shape)


def check_data(task: Task, pipeline, dataset: str) -> None:
  """``task.check_data``: the annotations of every split in memory."""
  task.check_data(pipeline, dataset)


def check_model(task: Task, model, input_shape, image_shape,
                name: str) -> None:
  """``task.check_model``: the model's output against the target."""
  task.check_model(model, input_shape, image_shape, name)


def check_batch(task: Task, batch: dict, where: str) -> None:
  """``task.check_batch``: one delivered batch of a streamed dataset."""
  task.check_batch(batch, where)


def picture_outputs(task: Task, model, variables, batch: dict,
                    inputs) -> dict:
  """What ``task.draw`` needs besides the batch, from one forward pass."""
  del batch
  outputs, _ = model.apply(variables, inputs, train=False)
  return task.picture_outputs(outputs.astype(jnp.float32), inputs)


__all__ = [
    'MASK_FORMATS', 'RECONSTRUCTION_MODES', 'TASKS', 'TRIMAP_DATASETS',
    'Classification', 'Detection', 'Reconstruction', 'Segmentation', 'Task',
    'check_batch', 'check_data', 'check_model', 'default_task_config',
    'downsample', 'grey', 'input_fields', 'make_task', 'mask_format',
    'model_input_shape', 'picture_outputs', 'real_rows',
    'segmentation_class_names', 'task_class', 'task_config']
