"""Several seeds of one train config, trained together as a population.

A population trains the members ``seeds`` of one config in one compiled
program: their train states are stacked along a leading axis and
``steps.train_step`` is vmapped over it. Member ``s`` has the
initialisation key, dropout key and data order of ``train.seed = s`` (its
own input pipeline, the same function of the seed as a single run), so it
computes what ``dvl.train.run`` computes for that seed, up to float
rounding (``tests/test_population.py`` checks it). On an accelerator this
is what fills the device with small networks; on a CPU it shares the
per-step overheads of the members.

``mode`` chooses how the members run:

* ``'vmap'``: one program for all members;
* ``'sequential'``: one member after another (a population of one each,
  one compiled program shared by all);
* ``'auto'``: ``'vmap'`` unless the compiled step needs more memory than the
  device has free (or than ``memory_limit_gb``), in which case it says so
  and falls back to ``'sequential'``.

Files: the population's ``workdir`` holds its checkpoints (the stacked
state: ``workdir/checkpoints``, or ``workdir/seed<s>/checkpoints`` per member
in sequential mode) and ``population.json``; each member's own directory
gets ``config.json`` (with its seed), ``metrics.jsonl`` and TensorBoard
events (train, val and test) and ``summary.json``.

Before it trains, a population compiles its programs (the vmapped
initialisation, train step and evaluation step) together, in parallel
threads (``PopulationSteps.compile``); the time this takes is its
``compile_s``. The process keeps them: a population of the same network
later in the process (a halving trial resumed, the members of a population
trained one after another) takes them instead of compiling, and
``compile_ahead`` compiles a population's programs before it runs.

``stop_at`` trains only up to that step of the full schedule, evaluates the
validation split there and saves a checkpoint: a rung of successive
halving. A later call with a larger ``stop_at`` (or none) resumes from that
checkpoint; no step is trained twice. SIGTERM saves and returns None.
"""

import concurrent.futures
import dataclasses
import functools
import json
import os
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dvl import fileio
from dvl.checkpoint import Checkpointer, preemption_guard
from dvl.device_memory import free_memory_bytes
from dvl.metrics_log import MetricWriter
from dvl.train import steps
from dvl.train.job import (Job, fresh_state, input_shape, setup,
                           state_template)
from dvl.train.state import create_train_state
from dvl.train.loop import prepare_process

MODES = ('auto', 'vmap', 'sequential')
# Of a device's free memory, what a population may plan to use.
MEMORY_HEADROOM = 0.8


def stack(trees: list):
  """The pytrees ``trees`` stacked along a new leading axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree, index: int):
  """Member ``index`` of a stacked pytree."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


def member_config(config, seed: int) -> ml_collections.ConfigDict:
  """``config`` with ``train.seed = seed`` (locked like the original)."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.train.seed = int(seed)
  return out.lock()


def step_bytes(compiled) -> int | None:
  """What a compiled step holds at its peak: arguments, outputs and
  temporaries (XLA's memory analysis), or None when it is not available."""
  try:
    mem = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if mem is None:
    return None
  return (mem.argument_size_in_bytes + mem.output_size_in_bytes
          - mem.alias_size_in_bytes + mem.temp_size_in_bytes)


@dataclasses.dataclass
class Members:
  """The members of a population: seeds and where each one reports."""
  seeds: list[int]
  dirs: list[Path]

  def __len__(self):
    return len(self.seeds)


def _abstract(tree):
  """Shapes and dtypes of a pytree of arrays (or of their shapes)."""
  return jax.tree.map(
      lambda v: jax.ShapeDtypeStruct(
          np.shape(v), v.dtype if hasattr(v, 'dtype') else
          np.asarray(v).dtype), tree)


@dataclasses.dataclass
class Programs:
  """A population's compiled programs: ``init`` (None when its members are
  initialised seed by seed, or restored), ``train`` and ``evaluate``;
  ``source`` says where they came from: 'compiled' here, 'reused' from an
  earlier population of this process, 'ahead' from ``compile_ahead``."""
  init: object
  train: object
  evaluate: object
  source: str = 'compiled'


# Programs compiled in this process, by ``PopulationSteps.key``: a promoted
# trial resuming in the same process, or the next task compiled ahead,
# finds its programs here. The newest PROGRAMS_KEPT are kept: a halving
# rung of up to that many networks finds all of them in the next rung
# (they hold code, not the populations' memory).
_COMPILED: dict[str, Programs] = {}
PROGRAMS_KEPT = 16
_COMPILED_LOCK = threading.Lock()


class PopulationSteps:
  """The vmapped init, train and evaluation steps of ``job`` for ``k``
  members, compiled together (``compile``)."""

  def __init__(self, job: Job, k: int):
    self.job, self.k = job, k
    partial = functools.partial
    self.train_fn = jax.jit(jax.vmap(partial(
        steps.train_step, model=job.model, tx=job.tx, schedule=job.schedule,
        hparams=job.hparams)), donate_argnums=0)
    self.eval_fn = jax.jit(jax.vmap(
        partial(steps.eval_step, model=job.model, hparams=job.hparams),
        in_axes=(0, None)))
    self.init_fn = jax.jit(jax.vmap(partial(_init_member, job)))
    self.programs = None
    self._state = None

  def abstract_state(self):
    if self._state is None:
      template = state_template(self.job.config)
      self._state = jax.tree.map(
          lambda s: jax.ShapeDtypeStruct((self.k, *s.shape), s.dtype),
          template)
    return self._state

  def key(self, batch, eval_batch) -> str:
    """What the programs depend on: the config but for its seed, ``k`` and
    the batches' shapes."""
    tree = self.job.config.to_dict()
    tree['train'].pop('seed', None)
    shapes = [(k, v.shape, str(v.dtype)) for b in (batch, eval_batch)
              for k, v in sorted(_abstract(b).items())]
    return json.dumps([tree, self.k, shapes], sort_keys=True, default=str)

  def compile(self, batch, eval_batch, *, init: bool) -> int | None:
    """Compiles the train step for ``batch``'s shapes, the evaluation step
    for ``eval_batch``'s and, with ``init``, the initialisation, each in
    its own thread (XLA compiles them in parallel), unless this process
    already holds them (``compile_ahead``, or an earlier population of the
    same network); returns the train step's memory need in bytes (None
    when unknown)."""
    key = self.key(batch, eval_batch)
    with _COMPILED_LOCK:
      found = _COMPILED.get(key)
    if found is not None and (found.init is not None or not init):
      self.programs = dataclasses.replace(
          found, source='reused' if found.source == 'compiled' else
          found.source)
      _remember(key, dataclasses.replace(found, source='compiled'))
      return step_bytes(self.programs.train)
    state = self.abstract_state()
    variables = jax.eval_shape(jax.vmap(lambda s: s.eval_variables()), state)
    keys = jax.ShapeDtypeStruct((self.k,), jax.random.key(0).dtype)
    jobs = {
        'train': lambda: self.train_fn.lower(state, _abstract(batch)),
        'evaluate': lambda: self.eval_fn.lower(variables,
                                               _abstract(eval_batch))}
    if init and _vmapped_init(self.job):
      jobs['init'] = lambda: self.init_fn.lower(keys)
    options = {'init': INIT_COMPILER_OPTIONS}
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
      futures = {name: pool.submit(lambda n=name, f=lower: f().compile(
          compiler_options=options.get(n))) for name, lower in jobs.items()}
      done = {name: future.result() for name, future in futures.items()}
    self.programs = Programs(done.get('init'), done['train'],
                             done['evaluate'])
    _remember(key, self.programs)
    return step_bytes(self.programs.train)

  def train(self, state, batch):
    fn = self.programs.train if self.programs else self.train_fn
    return fn(state, batch)

  def evaluate(self, variables, batch):
    fn = self.programs.evaluate if self.programs else self.eval_fn
    return fn(variables, batch)

  def init(self, keys):
    program = self.programs and self.programs.init
    return (program or self.init_fn.lower(keys).compile(
        compiler_options=INIT_COMPILER_OPTIONS))(keys)


def forget_compiled() -> None:
  """Drops the programs this process keeps (the next population compiles
  its own, or loads them from the persistent cache)."""
  with _COMPILED_LOCK:
    _COMPILED.clear()


def _remember(key: str, programs: Programs) -> None:
  with _COMPILED_LOCK:
    _COMPILED.pop(key, None)
    _COMPILED[key] = programs
    while len(_COMPILED) > PROGRAMS_KEPT:
      del _COMPILED[next(iter(_COMPILED))]


# The initialisation runs once per population: compiled without XLA's
# backend optimisations, which take longer than they save.
INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0}


def _vmapped_init(job: Job) -> bool:
  """Whether the members start from one vmapped init program (models that
  fit variables to data, or runs initialised from another run, take
  ``fresh_state`` seed by seed)."""
  return not (hasattr(job.model, 'data_init') or job.config.train.init_from)


def _init_member(job: Job, key):
  """The step-0 train state of the member whose seed's key is ``key``."""
  init_rng, dropout_rng = jax.random.split(key)
  x = jnp.zeros((1, *input_shape(job.config.run)), jnp.float32)
  variables = job.model.init({'params': init_rng, 'dropout': init_rng}, x,
                             train=False)
  variables = {'params': variables['params'],
               'batch_stats': variables.get('batch_stats', {})}
  return create_train_state(variables, job.tx, rng=dropout_rng,
                            ema=job.config.optim.ema_decay > 0)


def fresh_population(job: Job, seeds: list[int], pop=None):
  """The step-0 states of ``seeds``, stacked: each ``fresh_state`` of its
  seed, initialised by one program vmapped over the seeds' keys (one
  compilation, not one per seed; ``pop``'s when it compiled it). Models
  that fit variables to data (``data_init``) or runs initialised from
  another run take ``fresh_state`` seed by seed."""
  config = job.config
  if not _vmapped_init(job):
    return stack([fresh_state(member_config(config, s), job.model, job.tx,
                              job.pipeline) for s in seeds])
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  return (pop or PopulationSteps(job, len(seeds))).init(keys)


def _stacked_batches(job: Job, seeds: list[int], start: int):
  """Batches of every member for steps ``start + 1, ...``: stacked on the
  host, or on the device when the device input pipeline built them."""
  iters = [dataclasses.replace(job.pipeline, seed=int(s)).train_iter(start)
           for s in seeds]
  xp = jnp if job.pipeline.kind == 'device' else np
  while True:
    batches = [next(it) for it in iters]
    yield {key: xp.stack([b[key] for b in batches]) for key in batches[0]}


def _evaluate(job: Job, pop: PopulationSteps, state, split: str) -> list:
  """Each member's task metrics over every example of ``split``."""
  variables = jax.vmap(lambda s: s.eval_variables())(state)
  task = job.task
  accs = [task.start() for _ in range(pop.k)]
  for batch in job.pipeline.eval_iter(split):
    out = jax.device_get(pop.evaluate(variables, batch))
    accs = [task.update(acc, member(out, i), batch)
            for i, acc in enumerate(accs)]
  return [task.finish(acc) for acc in accs]


class _Group:
  """Trains one group of members (all of them, or one in sequential mode)
  with its own checkpoint directory."""

  def __init__(self, job: Job, members: Members, ckpt_dir: Path, guard):
    self.job, self.members, self.guard = job, members, guard
    self.k = len(members)
    self.pop = PopulationSteps(job, self.k)
    train = job.config.train
    self.ckpt = Checkpointer(
        ckpt_dir, keep=train.keep,
        every_steps=train.checkpoint_every or job.steps_per_epoch,
        config=job.config)
    self.score = job.task.score

  def restore(self, stop_at=None):
    """``(state, start step, metadata)``: the newest checkpoint (for a
    rung, the newest at or before ``stop_at``), else ``(None, 0, {})``."""
    template = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype),
        self.pop.abstract_state())
    steps = self.ckpt.all_steps()
    early = [s for s in steps if stop_at is not None and s <= stop_at]
    if stop_at is not None and steps and max(steps) > stop_at and early:
      restored = self.ckpt.restore(template, step=max(early))
    else:
      restored = self.ckpt.resume(template)
    if restored.step is None:
      return None, 0, {}
    print(f'resuming {self.k} member(s) from step {restored.step} in '
          f'{self.ckpt.directory}', flush=True)
    return restored.state, restored.step, dict(restored.metadata)

  def _eval_batch(self):
    """A batch of the split evaluated first (its shapes are every eval
    batch's: the last one is padded)."""
    split = 'val' if self.job.pipeline.num_val else 'test'
    return next(self.job.pipeline.eval_iter(split))

  def run(self, stop_at: int | None, compile_check) -> list[dict] | None:
    """Trains to ``stop_at`` (or the end); each member's results, or None
    when stopped by a signal.

    ``compile_check(pop, batch, eval_batch, init=...)`` compiles the
    programs (``PopulationSteps.compile``) before anything runs; the time
    it takes is the members' ``compile_s``.
    """
    started = time.perf_counter()
    job, k = self.job, self.k
    total = job.total_steps
    end = total if stop_at is None else min(stop_at, total)
    state, start, meta = self.restore(stop_at)
    if start > end:
      raise ValueError(
          f'{self.ckpt.directory} holds step {start} but this rung stops at '
          f'step {end} and no checkpoint at or before it is kept: use a new '
          'workdir for the sweep, or a larger train.keep')
    diverged = dict(meta.get('diverged', {}))
    best = meta.get('best', [{} for _ in range(k)])
    writers = [MetricWriter(d, total_steps=total, start_step=start,
                            every_steps=job.config.train.log_every,
                            interactive=False, stream=_Quiet())
               for d in self.members.dirs]
    try:
      for writer, seed in zip(writers, self.members.seeds):
        writer.write_config(member_config(job.config, seed))
      batches = _stacked_batches(job, self.members.seeds, start)
      compile_s, trained, train_s = None, 0, 0.0
      if start < end:
        first = next(batches)
        t0 = time.perf_counter()
        compile_check(self.pop, first, self._eval_batch(),
                      init=state is None)
        compile_s = time.perf_counter() - t0
        if state is None:
          state = fresh_population(job, self.members.seeds, self.pop)
        t0 = time.perf_counter()
        state = self._steps(state, start, end, first, batches, writers,
                            diverged)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - t0
        trained = int(state.step[0]) - start
        train_s = max(elapsed - self._paused, 1e-9)
      step = int(state.step[0])
      if self.guard.should_stop and step < end:
        self._save(state, step, best, diverged)
        return None
      val = _evaluate(job, self.pop, state, 'val') if (
          job.pipeline.num_val) else [None] * k
      test = (_evaluate(job, self.pop, state, 'test') if step == total
              else [None] * k)
      results = []
      wall_s = time.perf_counter() - started  # the members share it
      for i, writer in enumerate(writers):
        results.append(self._member_results(
            i, writer, step, val[i], test[i], best, diverged,
            wall_s=wall_s, compile_s=compile_s, train_s=train_s,
            trained=trained))
      # Saved once the evaluation is in: the metadata keeps the best val.
      self._save(state, step, best, diverged)
      return results
    finally:
      for writer in writers:
        writer.close()
      self.ckpt.close()

  def _steps(self, state, start, end, first, batches, writers, diverged):
    """Steps ``start + 1 .. end``; records the time spent logging and
    saving (``_paused``). Steps run asynchronously: the wait for the steps
    dispatched so far comes before each pause, so it counts as training."""
    job = self.job
    train = job.config.train
    self._paused = 0.0
    pending = []
    batch = first
    for step in range(start + 1, end + 1):
      state, metrics = self.pop.train(state, batch)
      pending.append(metrics)
      if step % train.log_every == 0 or step == end:
        pending = jax.block_until_ready(pending)
        paused = time.perf_counter()
        self._log(step, pending, writers, diverged)
        pending = []
        self._paused += time.perf_counter() - paused
      if self.ckpt.should_save(step) and step < end:
        state = jax.block_until_ready(state)
        paused = time.perf_counter()
        self._save(state, step, None, diverged)
        self._paused += time.perf_counter() - paused
      if self.guard.should_stop:
        break
      if step < end:
        batch = next(batches)
    return state

  def _log(self, step, pending, writers, diverged):
    """Writes the last step's metrics of each member; marks a member whose
    loss went NaN or Inf (the others train on: members are independent)."""
    pending = jax.device_get(pending)
    for metrics_at, offset in zip(pending, range(len(pending) - 1, -1, -1)):
      for i, seed in enumerate(self.members.seeds):
        loss = metrics_at['loss'][i]
        if not np.isfinite(loss) and str(seed) not in diverged:
          diverged[str(seed)] = (f'training diverged at step {step - offset}:'
                                 f' the loss is {float(loss)}')
    last = pending[-1]
    for i, writer in enumerate(writers):
      writer.write_scalars(step, {k: v[i] for k, v in last.items()},
                           split='train')
    finite = np.asarray(last['loss'])[np.isfinite(last['loss'])]
    loss = f'loss {finite.mean():.4f}' if finite.size else 'every loss diverged'
    print(f'step {step}/{self.job.total_steps} ({self.k} member(s)) {loss}',
          flush=True)

  def _save(self, state, step, best, diverged):
    meta = {'epoch': step / self.job.steps_per_epoch, 'diverged': diverged}
    if best is not None:
      meta['best'] = best
      self._best = best
    else:
      meta['best'] = getattr(self, '_best', [{} for _ in range(self.k)])
    self.ckpt.save(step, state, force=True, metadata=meta)

  def _memory(self) -> dict:
    """``step_bytes``: one member's share of what XLA's memory analysis
    plans for the compiled train step (arguments, outputs, temporaries);
    ``peak_bytes``: the device's peak bytes in use so far in this process,
    where the backend reports memory statistics (an accelerator's; None on
    a CPU)."""
    programs = self.pop.programs
    planned = step_bytes(programs.train) if programs is not None else None
    stats = jax.devices()[0].memory_stats() or {}
    return {'step_bytes': None if planned is None else planned / self.k,
            'peak_bytes': stats.get('peak_bytes_in_use')}

  def _member_results(self, i, writer, step, val, test, best, diverged, *,
                      wall_s, compile_s, train_s, trained) -> dict:
    job, seed = self.job, self.members.seeds[i]
    score = self.score
    if val is not None:
      writer.write_scalars(step, val, split='val')
      key = f'best_val_{score}'
      if not np.isnan(val[score]) and val[score] > best[i].get(key, -np.inf):
        best[i] = {key: val[score], 'best_val_step': step}
    if test is not None:
      writer.write_scalars(step, test, split='test')
    results = {'model': job.config.model.name,
               'dataset': job.config.input.dataset, 'seed': seed,
               'population': self.k, 'steps': step,
               'epochs': step / job.steps_per_epoch,
               'params': job.cost.params, 'macs': job.cost.macs,
               'compile_s': compile_s, 'train_s': train_s,
               'programs': self.pop.programs and self.pop.programs.source,
               'wall_s': wall_s,
               'train_images_per_s': (
                   trained * self.k * job.config.run.global_batch_size
                   / train_s if trained else float('nan')),
               **self._memory()}
    if test is not None:
      results.update({f'test_{k}': v for k, v in test.items()})
    if val is not None:
      results.update({f'val_{score}': val[score], **best[i]})
    if str(seed) in diverged:
      results['diverged'] = diverged[str(seed)]
    if step == job.total_steps:
      writer.write_summary(results)
    return results


def compile_ahead(config, seeds, mode: str = 'auto') -> str:
  """Compiles the programs that ``run(config, ..., seeds, mode=mode)``
  will train with (those of its vmapped population; one member's in
  ``'sequential'`` mode) and keeps them in this process, where that run
  finds them (its results' ``programs`` is then ``'ahead'``); they also go
  to the persistent compilation cache when it is on. Meant for a thread
  that runs while another population trains. Returns the programs' key.
  """
  if mode not in MODES:
    raise ValueError(f'population mode must be one of {", ".join(MODES)}; '
                     f'got {mode!r}')
  seeds = [int(s) for s in seeds]
  prepare_process(config)
  job = setup(member_config(config, seeds[0]))
  k = 1 if mode == 'sequential' else len(seeds)
  one = next(job.pipeline.train_iter(0))
  batch = {key: jax.ShapeDtypeStruct((k, *np.shape(v)), np.asarray(v).dtype)
           for key, v in one.items()}
  pop = PopulationSteps(job, k)
  split = 'val' if job.pipeline.num_val else 'test'
  eval_batch = _abstract(next(job.pipeline.eval_iter(split)))
  pop.compile(batch, eval_batch, init=True)
  key = pop.key(batch, eval_batch)
  _remember(key, dataclasses.replace(pop.programs, source='ahead'))
  return key


class _Quiet:
  """A stream that drops the per-member writers' console lines (the
  population prints one line for all members)."""

  def write(self, text):
    return len(text)

  def flush(self):
    pass

  def isatty(self):
    return False


def run(config, workdir: str, seeds, member_dirs, *, stop_at=None,
        mode: str = 'auto', memory_limit_gb: float = 0.0
        ) -> dict[int, dict] | None:
  """Trains ``config`` once per seed as a population (module docstring).

  Returns ``{seed: results}`` (the summary fields of ``dvl.train.run``,
  plus ``diverged`` for a member whose loss went NaN or Inf), or None when
  SIGTERM stopped it after saving a checkpoint.
  """
  if mode not in MODES:
    raise ValueError(f'population mode must be one of {", ".join(MODES)}; '
                     f'got {mode!r}')
  seeds = [int(s) for s in seeds]
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f'a population needs distinct seeds; got {seeds}')
  if stop_at is not None and stop_at < 1:
    raise ValueError(f'stop_at must be at least one step; got {stop_at}')
  workdir = Path(os.path.abspath(workdir))
  members = Members(seeds, [Path(os.path.abspath(d)) for d in member_dirs])
  prepare_process(config)
  job = setup(member_config(config, seeds[0]))
  mode = _chosen_mode(workdir, mode, len(seeds))
  limit = memory_limit_gb * 2 ** 30 if memory_limit_gb else None
  fallback = []

  def compile_check(pop: PopulationSteps, batch, eval_batch, *, init):
    need = pop.compile(batch, eval_batch, init=init)
    check_share(need, pop.k)
    if mode != 'auto' or pop.k == 1 or need is None:
      return
    free = limit or free_memory_bytes()
    if free is not None and need > MEMORY_HEADROOM * free:
      fallback.append(
          f'a population of {pop.k} needs {need / 2 ** 30:.2f} GiB for its '
          f'train step and {free / 2 ** 30:.2f} GiB is free: training the '
          'seeds one after another instead')
      raise _TooLarge

  with preemption_guard() as guard:
    if mode != 'sequential':
      try:
        results = _Group(job, members, workdir, guard).run(stop_at,
                                                           compile_check)
        _record_mode(workdir, 'vmap', seeds)
        return _by_seed(seeds, results)
      except _TooLarge:
        print(fallback[-1], flush=True)
    _record_mode(workdir, 'sequential', seeds)
    out = {}
    for seed, directory in zip(seeds, members.dirs):
      one = Members([seed], [directory])
      results = _Group(job, one, workdir / f'seed{seed}', guard).run(
          stop_at, compile_check)
      if results is None:
        return None
      out[seed] = results[0]
    return out


MEMORY_FRACTION_ENV = 'XLA_PYTHON_CLIENT_MEM_FRACTION'


def check_share(need: int | None, k: int, device=None) -> None:
  """Refuses, before training, a population whose train step needs more
  than this process's share of an accelerator (``$XLA_PYTHON_CLIENT_MEM_FRACTION``,
  set by a pool worker from ``sweep.memory_fraction``) even one member at
  a time. A CPU, or a process without a share, is not checked here."""
  fraction = os.environ.get(MEMORY_FRACTION_ENV)
  device = device or jax.devices()[0]
  if not fraction or need is None or device.platform == 'cpu':
    return
  limit = (device.memory_stats() or {}).get('bytes_limit')
  one = need / k
  if limit is None or one <= MEMORY_HEADROOM * limit:
    return
  raise ValueError(
      f'{MEMORY_FRACTION_ENV} = {fraction} (sweep.memory_fraction) gives '
      f'this worker {limit / 2 ** 30:.2f} GiB of {device.device_kind}; one '
      f'member of this population needs about {one / 2 ** 30:.2f} GiB for '
      f'its train step ({need / 2 ** 30:.2f} GiB for all {k}). Give each '
      'worker a larger sweep.memory_fraction and use fewer sweep.workers')


class _TooLarge(Exception):
  """The population's step does not fit the device's free memory."""


def _by_seed(seeds, results):
  return None if results is None else dict(zip(seeds, results))


def _chosen_mode(workdir: Path, mode: str, k: int) -> str:
  """A population that already fell back keeps training sequentially (its
  checkpoints are per member)."""
  path = workdir / 'population.json'
  if mode == 'auto' and path.exists():
    recorded = json.loads(path.read_text()).get('mode')
    if recorded == 'sequential':
      return 'sequential'
  return 'vmap' if k == 1 and mode == 'auto' else mode


def _record_mode(workdir: Path, mode: str, seeds) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  fileio.write_atomic(workdir / 'population.json',
                      json.dumps({'mode': mode, 'seeds': list(seeds)}) + '\n')
