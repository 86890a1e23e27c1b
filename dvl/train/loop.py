"""The ``train`` job: the training loop, its evaluations and its summary.

    python launch.py --config experiments/quickstart.py --workdir runs/quick

A run resumes from the newest good checkpoint in its workdir (killing it and
starting the same command again continues where it stopped, with the same
data order and random numbers, so it ends with the same metrics), evaluates
the ``val`` split every ``train.eval_every`` steps for model selection and the
``test`` split once at the end for reporting, and stops on a NaN or Inf loss
without saving the diverged state. SIGTERM (or Ctrl-C) saves a checkpoint
and exits cleanly.
"""

import contextlib
import functools
import itertools
import os
import time

import jax
import numpy as np
from absl import logging

from dvl.checkpoint import Checkpointer, preemption_guard
from dvl.metrics_log import MetricWriter, enable_compilation_cache
from dvl import errors, tasks, workdir_lock
from dvl.train import parallel, steps
from dvl.train.job import Job, fresh_state, setup, state_template
from dvl.train.state import MACS_CONVENTION


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss or the parameters became NaN or Inf: training diverged (a
  user error: the message says which settings to change)."""


def run(config, workdir: str) -> dict | None:
  """Trains ``config`` in ``workdir``; returns the summary (None if stopped).

  The run holds the workdir (``dvl.workdir_lock``): a second run there is
  refused. Process 0 holds it for all the processes of a multi-host run.
  """
  started = time.perf_counter()
  workdir = os.path.abspath(workdir)  # orbax refuses relative paths
  prepare_process(config)
  lock = (workdir_lock.hold(workdir, 'train') if jax.process_index() == 0
          else contextlib.nullcontext())
  with lock:
    return _train(config, workdir, started)


def _train(config, workdir: str, started: float) -> dict | None:
  job = setup(config)
  print(describe(job), flush=True)
  every = config.train.checkpoint_every or job.steps_per_epoch
  with Checkpointer(workdir, keep=config.train.keep, every_steps=every,
                    config=job.config) as ckpt, preemption_guard() as guard:
    state, start, meta = restore_or_init(job, ckpt)
    with MetricWriter(workdir, total_steps=job.total_steps,
                      every_steps=config.train.log_every,
                      start_step=start) as writer:
      writer.write_config(job.config)
      writer.log_model_info(params=job.cost.params, macs=job.cost.macs,
                            convention=MACS_CONVENTION,
                            activations=job.cost.activations)
      loop = Loop(job, ckpt, writer, guard, meta)
      state = loop.train(state, start)
      results = None
      if not guard.should_stop:
        results = loop.final_results(state)
        results['wall_s'] = time.perf_counter() - started
        writer.write_summary(results)
    if results is None:  # Stopped; said after the progress bar has closed.
      print(f'stopped by {guard.signal_name} after step {int(state.step)}; '
            f'saved a checkpoint in {ckpt.directory}. Run the same command '
            'to resume.', flush=True)
  return results


def prepare_process(config) -> None:
  """Quiet library logs, multi-host start-up and the compilation cache."""
  logging.set_verbosity(logging.WARNING)  # orbax's and TFDS's INFO lines
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  parallel.initialize_distributed(config.train.distributed)
  if config.train.compilation_cache:
    enable_compilation_cache()


def describe(job: Job) -> str:
  """One paragraph on the data, the batch and the length of the run."""
  run, data = job.config.run, job.config.input
  shape = 'x'.join(map(str, run.image_shape))
  overfit = job.config.train.overfit_batches
  return (
      f'data: {data.dataset}, {run.examples.train} train / {run.examples.val}'
      f' val / {run.examples.test} test images at {shape}, '
      f'{run.num_classes} classes; input pipeline '
      f'{job.pipeline.kind} ({job.pipeline.choice})\n'
      f'batch {run.global_batch_size} over {run.devices} device(s), '
      f'{run.steps_per_epoch} steps per epoch'
      + (f' (overfitting {overfit} batches)' if overfit else '')
      + f', {run.total_steps} steps ({run.total_steps / run.steps_per_epoch:.3g}'
      ' epochs)')


def restore_or_init(job: Job, ckpt: Checkpointer):
  """``(state, start_step, metadata)``: the newest checkpoint, else step 0."""
  sharding = parallel.replicated(job.mesh)
  template = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      state_template(job.config))
  restored = ckpt.resume(template)
  if restored.step is None:
    state = fresh_state(job.config, job.model, job.tx, job.pipeline)
    return parallel.replicate(state, job.mesh), 0, {}
  print(f'resuming from step {restored.step} in {ckpt.directory}', flush=True)
  return restored.state, restored.step, dict(restored.metadata)


def train_batches(job: Job, start_step: int):
  """Host batches for steps ``start_step + 1, ...`` (see overfit_batches)."""
  overfit = job.config.train.overfit_batches
  if not overfit:
    return job.pipeline.train_iter(start_step)
  source = job.pipeline.train_iter(0)
  fixed = [next(source) for _ in range(overfit)]
  return (fixed[i % overfit] for i in itertools.count(start_step))


def evaluate(job: Job, state, split: str) -> dict:
  """The task's metrics over every example of ``split`` (for a classifier:
  mean loss and accuracy)."""
  variables = state.eval_variables()
  task = job.task
  acc = task.start()
  for batch in job.pipeline.eval_iter(split):
    out = job.eval_step(variables, parallel.put_batch(batch, job.mesh))
    acc = task.update(acc, out, batch)
  return task.finish(acc)


def save_pictures(job: Job, state, workdir: str) -> str | None:
  """Draws the task's predictions on the first test images into
  ``workdir/pictures``; returns the PNG's path (None for classifiers)."""
  task = job.task
  if not task.pictures or job.config.task.pictures < 1:
    return None
  count = job.config.task.pictures
  batch = next(job.pipeline.eval_iter('test'))
  batch = {k: v[:count] for k, v in batch.items()}
  spec = job.config.run.preprocessing
  inputs = task.inputs(batch, jax.random.key(steps.EVAL_NOISE_KEY),
                       train=False)
  out = jax.jit(functools.partial(tasks.picture_outputs, task, job.model))(
      jax.device_get(state.eval_variables()),
      batch, steps.model_input(inputs, spec))
  path = os.path.join(workdir, 'pictures', f'test_{task.kind}.png')
  return str(task.draw(path, batch, jax.device_get(out),
                       job.pipeline.class_names))


def _all_finite(tree) -> bool:
  """Whether every leaf is finite, checked on the host: a jitted check would
  compile a program per network (a second per trial of a sweep). Params are
  replicated, so this process's first shard of a leaf is all of it."""
  return all(np.isfinite(np.asarray(leaf.addressable_data(0))).all()
             for leaf in jax.tree.leaves(tree))


class Loop:
  """The steps of one process's share of a run, with its bookkeeping."""

  def __init__(self, job: Job, ckpt: Checkpointer, writer: MetricWriter,
               guard, metadata: dict):
    self.job, self.ckpt, self.writer, self.guard = job, ckpt, writer, guard
    self.score = job.task.score
    # Data held in memory was checked whole before training.
    self.check_batches = not hasattr(job.pipeline.reader, 'arrays')
    self.best = {k: metadata[k] for k in (f'best_val_{self.score}',
                                          'best_val_step') if k in metadata}
    self.last_val = None
    self.pending = []  # (step, loss) not yet checked for NaN or Inf
    self.paused_s = 0.0  # evaluation and checkpoint time, not training
    self.first_done = self.trained_steps = None
    self.train_end = time.perf_counter()

  def train(self, state, start: int):
    """Runs steps ``start + 1 .. total``; returns the last state."""
    train = self.job.config.train
    eval_every = train.eval_every or self.job.steps_per_epoch
    batch_size = self.job.config.run.global_batch_size
    batches = train_batches(self.job, start)
    self.writer.timer.restart()
    for step in range(start + 1, self.job.total_steps + 1):
      host_batch = next(batches)
      if self.check_batches:
        tasks.check_batch(self.job.task, host_batch,
                          f'the training batch of step {step}')
      batch = parallel.put_batch(host_batch, self.job.mesh)
      state, metrics = self.job.train_step(state, batch)
      self.pending.append((step, metrics['loss']))
      self.writer.log_train(step, metrics, images=batch_size)
      if self.first_done is None:
        self.first_done, self.trained_steps = time.perf_counter(), 0
      else:
        self.trained_steps += 1
      if step % train.log_every == 0:
        self.check_finite()
      if step % eval_every == 0 or step == self.job.total_steps:
        self.validate(state, step)
      if (self.ckpt.should_save(step) or step == self.job.total_steps
          or self.guard.should_stop):
        self.save(state, step)
      if self.guard.should_stop:
        break
    jax.block_until_ready(state)
    self.train_end = time.perf_counter()
    return state

  def check_finite(self, state=None) -> None:
    """Raises NonFiniteLossError at the first NaN or Inf loss (or params)."""
    losses = jax.device_get([loss for _, loss in self.pending])
    for (step, _), loss in zip(self.pending, losses):
      if not np.isfinite(loss):
        self._diverged(step, f'the loss is {float(loss)}')
    if state is not None and not _all_finite(state.params):
      self._diverged(int(state.step), 'the parameters hold NaN or Inf')
    self.pending.clear()

  def _diverged(self, step: int, what: str):
    latest = self.ckpt.latest_step()
    kept = (f'the last good checkpoint, step {latest}, is kept in '
            f'{self.ckpt.directory}' if latest is not None
            else 'no checkpoint had been saved yet')
    raise NonFiniteLossError(
        f'training diverged at step {step}: {what}. Stopped without saving '
        f'this state; {kept}. Lower config.optim.learning_rate (the lr_range '
        'job suggests one), add warm-up (optim.warmup_epochs) or clip '
        'gradients (optim.grad_clip_norm).')

  def validate(self, state, step: int) -> None:
    """Evaluates ``val`` (when it is not empty) and tracks the best step."""
    if not self.job.pipeline.num_val:
      return
    started = time.perf_counter()
    self.check_finite()
    self.last_val = evaluate(self.job, state, 'val')
    self.writer.write_scalars(step, self.last_val, split='val')
    key = f'best_val_{self.score}'
    value = self.last_val[self.score]
    if not np.isnan(value) and value > self.best.get(key, -np.inf):
      self.best = {key: value, 'best_val_step': step}
    self.paused_s += time.perf_counter() - started

  def save(self, state, step: int) -> None:
    """Saves ``step`` after checking that nothing diverged."""
    started = time.perf_counter()
    self.check_finite(state)
    self.ckpt.save(step, state, force=True, metadata={
        'epoch': step / self.job.steps_per_epoch, **self.best})
    self.paused_s += time.perf_counter() - started

  def images_per_s(self) -> float:
    """Training throughput after the first step, evaluations left out."""
    if not self.trained_steps:
      return float('nan')
    seconds = self.train_end - self.first_done - self.paused_s
    return self.trained_steps * self.job.config.run.global_batch_size / seconds

  def final_results(self, state) -> dict:
    """The summary: test metrics, the last and best val, cost and speed."""
    job = self.job
    test = evaluate(job, state, 'test')
    val = self.last_val
    if val is None and job.pipeline.num_val:
      val = evaluate(job, state, 'val')
    results = {'model': job.config.model.name,
               'dataset': job.config.input.dataset,
               **{f'test_{k}': v for k, v in test.items()}}
    if val is not None:
      results.update({f'val_{self.score}': val[self.score], **self.best})
    step = int(state.step)
    results.update(params=job.cost.params, macs=job.cost.macs, steps=step,
                   epochs=step / job.steps_per_epoch,
                   train_images_per_s=self.images_per_s())
    self.writer.write_scalars(step, test, split='test')
    pictures = save_pictures(job, state, self.ckpt.workdir)
    if pictures:
      results['pictures'] = pictures
    return results
