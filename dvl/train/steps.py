"""The pure training and evaluation steps.

Both are module-level functions of ``(state, batch)`` plus static arguments
bound with ``functools.partial``; ``dvl.train.parallel.compile_steps`` jits
them over a device mesh with the state donated. Hyper-parameters come from
``StepConfig``, never literals here.
"""

import dataclasses
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dvl import tasks
from dvl.convert import preprocess
from dvl.optim import ema_update, path_name, regularization
from dvl.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """What the steps take from the config.

  ``frozen_stats`` is a regex of BatchNorm statistics kept unchanged (those
  of frozen parameter groups); ``optim`` is ``config.optim`` (penalties, EMA);
  ``preprocessing`` an imported model's input spec (see ``model_input``);
  ``task`` what the model learns (``dvl.tasks``; None is classification
  with ``label_smoothing``).
  """
  optim: Any
  label_smoothing: float = 0.0
  frozen_stats: str = ''
  eval_flip: bool = False
  eval_translate: int = 0
  preprocessing: Any = None
  task: Any = None

  def the_task(self):
    return self.task or tasks.Classification(self.label_smoothing)


# Evaluation corrupts its inputs (denoising) with the same numbers each time.
EVAL_NOISE_KEY = 0


def model_input(images: jax.Array, spec) -> jax.Array:
  """What the model sees: the batch itself, or, with an imported model's
  preprocessing ``spec``, the spec applied to the [0, 1] images as 0-255
  pixels (``dvl.convert.preprocess``)."""
  if spec is None:
    return images
  return preprocess.apply(spec, images * 255.0)


def eval_views(images: jax.Array, *, flip: bool, translate: int
               ) -> list[jax.Array]:
  """The test-time views of ``images``: itself, shifted by ``translate``
  pixels up-left and down-right (reflected edges) when it is above 0, and
  the mirror image of each when ``flip``."""
  views = [images]
  if translate:
    t = translate
    padded = jnp.pad(images, ((0, 0), (t, t), (t, t), (0, 0)), mode='reflect')
    h, w = images.shape[1:3]
    views += [padded[:, :h, :w], padded[:, 2 * t:, 2 * t:]]
  if flip:
    views += [v[:, :, ::-1] for v in views]
  return views


def _keep_frozen(old: Any, new: Any, regex: str) -> Any:
  """``new`` BatchNorm statistics, but ``old`` where the path matches."""
  if not regex:
    return new
  pattern = re.compile(regex)
  return jax.tree_util.tree_map_with_path(
      lambda path, o, n: o if pattern.fullmatch(path_name(path)) else n,
      old, new)


def train_step(state: TrainState, batch: dict, *, model: nn.Module,
               tx: optax.GradientTransformation,
               schedule: Callable[[jax.Array], jax.Array],
               hparams: StepConfig) -> tuple[TrainState, dict]:
  """One SGD step on ``batch``; returns the new state and scalar metrics.

  BatchNorm statistics are computed over the whole (global) batch: under
  ``jit`` with the batch sharded the reduction spans every device.
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  task = hparams.the_task()
  inputs = model_input(
      task.inputs(batch, jax.random.fold_in(dropout_rng, 1), train=True),
      hparams.preprocessing)

  def loss_fn(params):
    (outputs, _), updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, inputs,
        train=True, mutable=['batch_stats'], rngs={'dropout': dropout_rng})
    data_loss, task_metrics = task.loss(outputs, batch)
    loss = data_loss + regularization(params, hparams.optim)
    return loss, (data_loss, task_metrics, updates.get('batch_stats', {}))

  (loss, (data_loss, task_metrics, new_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  batch_stats = _keep_frozen(state.batch_stats, new_stats,
                             hparams.frozen_stats)
  ema = state.ema
  if ema is not None:
    ema = ema_update(ema, {'params': params, 'batch_stats': batch_stats},
                     decay=hparams.optim.ema_decay,
                     warmup=hparams.optim.ema_warmup)
  metrics = {'loss': data_loss, 'total_loss': loss, **task_metrics,
             'grad_norm': optax.global_norm(grads),
             'learning_rate': schedule(state.step)}
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=batch_stats, opt_state=opt_state,
                            ema=ema)
  return new_state, metrics


def eval_step(variables: dict, batch: dict, *, model: nn.Module,
              hparams: StepConfig) -> dict:
  """The task's ``eval_outputs`` of a padded batch (for classification:
  sums over the valid rows of the loss, the correct answers and the count).

  Classifiers average their logits over the test-time views.
  """
  task = hparams.the_task()
  inputs = task.inputs(batch, jax.random.key(EVAL_NOISE_KEY), train=False)
  views = [model_input(inputs, hparams.preprocessing)]
  if task.test_views:
    views = eval_views(views[0], flip=hparams.eval_flip,
                       translate=hparams.eval_translate)
  outputs = sum(model.apply(variables, v, train=False)[0].astype(jnp.float32)
                for v in views) / len(views)
  return task.eval_outputs(outputs, batch, inputs)
