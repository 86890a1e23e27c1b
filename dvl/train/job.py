"""Everything a run builds from its config before the first step.

``setup(config)`` resolves the config (input resolution, number of classes,
steps), builds the input pipeline, the model, the optimizer and the jitted
steps over the device mesh, and returns them as a ``Job``. The resolved
config is what ``config.json`` records; ``state_template`` rebuilds the train
state of any resolved config, which is how ``train.init_from`` reads another
run's checkpoints.
"""

import dataclasses
import math
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from dvl import tasks
from dvl.convert import preprocess
from dvl.data import make_pipeline
from dvl.optim import make_optimizer
from dvl.train import parallel, transfer
from dvl.train.config import freeze_regex, validate_train_config
from dvl.train.state import (TrainState, count_cost, create_train_state,
                             default_resolution, init_variables,
                             model_from_config)
from dvl.train.steps import StepConfig


@dataclasses.dataclass
class Job:
  """A resolved config and what it built (see the module docstring)."""
  config: ml_collections.ConfigDict
  pipeline: Any
  model: Any
  mesh: Mesh
  tx: Any
  schedule: Callable
  train_step: Callable
  eval_step: Callable
  cost: Any
  task: Any
  hparams: StepConfig | None = None

  @property
  def total_steps(self) -> int:
    return self.config.run.total_steps

  @property
  def steps_per_epoch(self) -> int:
    return self.config.run.steps_per_epoch


def preprocessing_spec(train) -> dict | None:
  """The input spec of ``train.preprocessing`` (None when it is '')."""
  if not train.preprocessing:
    return None
  if train.preprocessing == 'from_init':
    return transfer.preprocessing_spec(train.init_from)
  return preprocess.spec(train.preprocessing)


def _resolved(config, pipeline, num_devices: int, overrides: dict,
              spec: dict | None, task):
  """A locked copy of ``config`` with the derived facts filled in."""
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.input.resolution = pipeline.image_shape[0]
  resolved.input.update(tasks.input_fields(config))
  if spec is not None:
    resolved.input.normalize = 'none'
  classes = model_classes(task, pipeline)
  if classes is not None:
    resolved.model.num_classes = classes
  resolved.task = tasks.task_config(config).to_dict()
  train = config.train
  steps_per_epoch = train.overfit_batches or pipeline.steps_per_epoch
  total = train.steps or max(1, math.ceil(train.epochs * steps_per_epoch))
  resolved.run = dict(
      image_shape=list(pipeline.image_shape), num_classes=pipeline.num_classes,
      task=task.kind, model_classes=classes,
      input_shape=list(tasks.model_input_shape(config, pipeline.image_shape)),
      class_names=list(pipeline.class_names), steps_per_epoch=steps_per_epoch,
      total_steps=overrides.get('total_steps', total),
      global_batch_size=pipeline.batch_size, devices=num_devices,
      preprocessing=spec,
      processes=jax.process_count(), examples=dict(
          train=pipeline.num_train, val=pipeline.num_val,
          test=pipeline.num_test))
  return resolved.lock()


def make_tx(config):
  """``(tx, schedule)`` for a resolved config, with freezing and, for a
  transferred run, the backbone's learning-rate multiplier."""
  optim = ml_collections.ConfigDict(config.optim.to_dict())
  optim.freeze = frozen_regex(config)
  train = config.train
  if train.init_from and train.backbone_lr_mult != 1.0:
    optim.lr_multipliers = [*map(tuple, optim.lr_multipliers),
                            (train.reinit, 1.0),
                            ('.*', train.backbone_lr_mult)]
  return make_optimizer(optim, steps_per_epoch=config.run.steps_per_epoch,
                        total_steps=config.run.total_steps,
                        batch_size=config.run.global_batch_size)


def frozen_regex(config) -> str:
  """``optim.freeze`` and ``train.freeze`` as one regular expression."""
  parts = [config.optim.freeze, freeze_regex(config.train.freeze)]
  return '|'.join(f'(?:{p})' for p in parts if p)


DATA_INIT_IMAGES = 5000


def sample_images(pipeline, count: int = DATA_INIT_IMAGES) -> np.ndarray:
  """The first ``count`` un-augmented training images, as the model sees
  them (for a model's ``data_init``)."""
  images, total = [], 0
  for batch in pipeline.eval_iter('train'):
    images.append(batch['image'][batch['valid']])
    total += len(images[-1])
    if total >= count:
      break
  return np.concatenate(images)[:count]


def fresh_state(config, model, tx, pipeline=None) -> TrainState:
  """A step-0 state: seeded initialisation, or ``train.init_from``'s weights.

  A model with a ``data_init(variables, sample)`` method (a whitening stem)
  may fit variables to training images of ``pipeline``, which ``sample()``
  returns.
  """
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.train.seed))
  variables = init_variables(model, input_shape(config.run), init_rng)
  if hasattr(model, 'data_init'):
    variables = model.data_init(variables, lambda: sample_images(pipeline))
  if config.train.init_from:
    source, step = transfer.load_source_variables(
        config.train.init_from, config.train.init_step, state_template)
    variables, kept_fresh = transfer.merge_pretrained(
        variables, source, config.train.reinit)
    print(f'initialised from {config.train.init_from} step {step}; '
          f'{len(kept_fresh)} leaves left fresh: {", ".join(kept_fresh)}')
  return create_train_state(variables, tx, rng=dropout_rng,
                            ema=config.optim.ema_decay > 0)


def model_classes(task, pipeline) -> int | None:
  """The model's output classes: the dataset's, the segmentation task's
  pixel classes, or None (an image-to-image model)."""
  if not task.has_classes:
    return None
  return getattr(task, 'num_classes', pipeline.num_classes)


def input_shape(run) -> tuple:
  """The model's input shape in a resolved config's ``run`` section (runs
  written before it was recorded feed the images themselves)."""
  return tuple(run.get('input_shape', run.image_shape))


def state_template(config) -> TrainState:
  """The abstract train state (shapes and dtypes) of a resolved config."""
  run = config.run
  model = model_from_config(
      config.model, num_classes=run.get('model_classes', run.num_classes),
      mixed_precision=config.train.mixed_precision)
  tx, _ = make_tx(config)

  def build():
    rng = jax.random.key(0)
    return create_train_state(
        init_variables(model, input_shape(run), rng), tx, rng=rng,
        ema=config.optim.ema_decay > 0)
  return jax.eval_shape(build)


def setup(config, *, devices=None, **overrides) -> Job:
  """Builds the run of ``config`` (see the module docstring).

  ``overrides`` may set ``total_steps`` (the range test's length).
  """
  validate_train_config(config.train)
  input_cfg = ml_collections.ConfigDict(config.input.to_dict())
  if input_cfg.resolution is None:
    input_cfg.resolution = default_resolution(config.model)
  input_cfg.update(tasks.input_fields(config))
  spec = preprocessing_spec(config.train)
  if spec is not None:
    if input_cfg.get('zca'):
      raise ValueError('train.preprocessing replaces the input '
                       'normalisation; set config.input.zca = False')
    input_cfg.normalize = 'none'  # [0, 1] images; the steps apply the spec
  mesh = parallel.make_mesh(devices)
  parallel.check_batch_size(input_cfg.batch_size, mesh, 'batch_size')
  parallel.check_batch_size(input_cfg.eval_batch_size, mesh, 'eval_batch_size')
  pipeline = make_pipeline(input_cfg, seed=config.train.seed)
  task = tasks.make_task(config, pipeline)
  tasks.check_data(task, pipeline, input_cfg.dataset)
  model = model_from_config(
      config.model, num_classes=model_classes(task, pipeline),
      mixed_precision=config.train.mixed_precision)
  resolved = _resolved(config, pipeline, mesh.size, overrides, spec, task)
  tasks.check_model(task, model, input_shape(resolved.run),
                    pipeline.image_shape, config.model.name)
  tx, schedule = make_tx(resolved)
  hparams = StepConfig(optim=resolved.optim,
                       label_smoothing=config.train.label_smoothing,
                       frozen_stats=frozen_regex(resolved),
                       eval_flip=config.train.eval_flip,
                       eval_translate=config.train.eval_translate,
                       preprocessing=spec, task=task)
  train_step, eval_step = parallel.compile_steps(
      mesh, model=model, tx=tx, schedule=schedule, hparams=hparams)
  return Job(config=resolved, pipeline=pipeline, model=model, mesh=mesh,
             tx=tx, schedule=schedule, train_step=train_step,
             eval_step=eval_step,
             cost=count_cost(model, input_shape(resolved.run)), task=task,
             hparams=hparams)
