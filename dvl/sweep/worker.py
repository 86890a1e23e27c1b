"""What runs a trial, in whichever process the executor chose.

This module imports nothing heavy at the top: a pool worker pins its CPU
cores and picks its GPUs (``start_worker``) before JAX is first imported.
"""

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

# Measured cost of a population run (``dvl.train.population``).
MEASURED = ('train_images_per_s', 'step_bytes', 'peak_bytes')
# Summary fields a results row keeps.
SUMMARY_FIELDS = ('val_accuracy', 'best_val_accuracy', 'test_accuracy',
                  'test_loss', 'steps', 'compile_s', 'wall_s')


_EVENTS = None  # a pool worker's queue to the driver (start_worker)


def start_worker(slots, threads: int, gpus: int, events=None,
                 memory_fraction: float = 0.0) -> None:
  """Gives a fresh worker process its own CPU cores and GPUs.

  ``slots`` is a queue of worker indices; worker ``i`` keeps cores
  ``i·threads … (i+1)·threads - 1`` of the machine (XLA sizes its CPU thread
  pool from this affinity) and GPUs ``i·gpus …`` (CUDA_VISIBLE_DEVICES).
  ``threads = 0`` or ``gpus = 0`` leaves that resource shared. ``events``
  is the queue on which ``run_reported`` tells the driver what it runs.
  ``memory_fraction`` (``sweep.memory_fraction``; 0 leaves XLA's default)
  is the share of each of its accelerators' memory that the worker's XLA
  client takes, up front (XLA_PYTHON_CLIENT_MEM_FRACTION with
  XLA_PYTHON_CLIENT_PREALLOCATE), so that several workers share a device.
  """
  global _EVENTS
  _EVENTS = events
  die_with_parent()
  if memory_fraction:
    os.environ['XLA_PYTHON_CLIENT_MEM_FRACTION'] = f'{memory_fraction:g}'
    os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'true'
  index = slots.get()
  if threads:
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[index * threads:(index + 1) * threads]
    os.sched_setaffinity(0, mine or cores)
  if gpus:
    os.environ['CUDA_VISIBLE_DEVICES'] = ','.join(
        str(index * gpus + i) for i in range(gpus))


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
  """Asks Linux to send this process SIGTERM when the process that started
  it dies, so a pool worker of a sweep driver killed with SIGKILL saves its
  checkpoint and stops instead of training on unseen (the rerun driver then
  resumes from that checkpoint). Elsewhere this does nothing."""
  if not sys.platform.startswith('linux'):
    return
  parent = os.getppid()
  libc = ctypes.CDLL(None, use_errno=True)
  if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
    return  # not permitted here: the worker lives on, as before
  if os.getppid() != parent:  # the parent died before the request
    os.kill(os.getpid(), signal.SIGTERM)


class _Terminated(BaseException):
  """SIGTERM reached a pool worker outside a population's own handler (a
  BaseException: ``run_population`` records every Exception as a failure)."""


def _terminate(signum, frame):
  del signum, frame
  raise _Terminated


def run_reported(function, task_id: str, *args):
  """``function(*args)`` in a pool worker, telling the driver (the queue
  given to ``start_worker``) that this process started ``task_id``, and
  whether a signal stopped it: when a worker dies, the driver learns whose
  worker it was.

  ``args`` are ``Task.args``: the third is the members. A SIGTERM while the
  population trains is its own (it saves a checkpoint and returns
  'stopped'); one before or after it stops the task here, as 'stopped'.
  """
  previous = signal.signal(signal.SIGTERM, _terminate)
  try:
    _EVENTS.put(('started', task_id, os.getpid()))
    outcomes = function(*args)
  except _Terminated:
    outcomes = {member[0]: {'status': 'stopped'} for member in args[2]}
  finally:
    signal.signal(signal.SIGTERM, previous)
  if any(o.get('status') == 'stopped' for o in outcomes.values()):
    _EVENTS.put(('stopped', task_id, os.getpid()))
  return outcomes


def _status(error: BaseException) -> str:
  """'diverged', 'oom', 'invalid' (a shape or value the network cannot
  take) or 'failed'."""
  from dvl.train import NonFiniteLossError
  text = str(error)
  if isinstance(error, NonFiniteLossError):
    return 'diverged'
  if isinstance(error, MemoryError) or 'RESOURCE_EXHAUSTED' in text or (
      'out of memory' in text.lower()):
    return 'oom'
  if isinstance(error, (ValueError, TypeError)):
    return 'invalid'
  return 'failed'


def _outcome(results: dict) -> dict:
  """A results row's fields from a member's results."""
  outcome = {k: results.get(k) for k in SUMMARY_FIELDS}
  outcome['train_s'] = results.get('train_s')
  outcome['population'] = results.get('population')
  outcome['programs'] = results.get('programs')
  for cost in MEASURED:
    outcome[cost] = results.get(cost)
  if results.get('diverged'):
    return {**outcome, 'status': 'diverged', 'reason': results['diverged']}
  outcome['status'] = 'ok'
  return outcome


def run_population(config, workdir: str, members, stop_at=None,
                   mode: str = 'auto', memory_gb: float = 0.0) -> dict:
  """Trains the seeds of one trial config as a population
  (``dvl.train.population``) in ``workdir``; returns ``{trial_id: outcome}``.

  ``members`` lists ``(trial_id, seed, trial_dir)``. Each outcome is that of
  ``run_trial``; a failure of the population is every member's outcome. With
  ``stop_at`` the members train to that step only (a halving rung) and have
  no test accuracy.
  """
  import ml_collections
  from dvl.train import population
  if isinstance(config, dict):
    config = ml_collections.ConfigDict(config)
  Path(workdir).mkdir(parents=True, exist_ok=True)
  ids = [m[0] for m in members]
  try:
    results = population.run(config, workdir, [m[1] for m in members],
                             [m[2] for m in members], stop_at=stop_at,
                             mode=mode, memory_limit_gb=memory_gb)
  except Exception as error:  # recorded: the sweep goes on
    Path(workdir, 'error.txt').write_text(traceback.format_exc())
    reason = f'{type(error).__name__}: {error}'.strip()
    return {i: {'status': _status(error), 'reason': reason[:500]}
            for i in ids}
  if results is None:
    return {i: {'status': 'stopped'} for i in ids}
  return {trial_id: _outcome(results[seed])
          for trial_id, seed, _ in members}


def compile_population(config, workdir: str, members, stop_at=None,
                       mode: str = 'auto', memory_gb: float = 0.0) -> None:
  """Compiles the programs ``run_population`` with these arguments trains
  with, into this process (``dvl.train.population.compile_ahead``); a
  failure is printed, not raised: the population then compiles them
  itself."""
  del workdir, stop_at, memory_gb
  import ml_collections
  from dvl.train import population
  if isinstance(config, dict):
    config = ml_collections.ConfigDict(config)
  try:
    population.compile_ahead(config, [m[1] for m in members], mode)
  except Exception as error:  # the population compiles them itself
    print(f'compiling ahead failed ({type(error).__name__}: {error}); the '
          'population compiles its own programs', flush=True)


def run_trial(config, workdir: str) -> dict:
  """Trains one trial config (a ConfigDict or its dict) in ``workdir``;
  returns its outcome.

  The outcome is ``{'status': 'ok', ...summary fields, 'train_s'}``, or
  ``{'status': 'diverged' | 'oom' | 'invalid' | 'failed', 'reason'}`` (the
  traceback goes to ``workdir/error.txt``), or ``{'status': 'stopped'}``
  when SIGTERM stopped the run after saving a checkpoint.
  """
  import ml_collections
  from dvl import train
  if isinstance(config, dict):
    config = ml_collections.ConfigDict(config)
  Path(workdir).mkdir(parents=True, exist_ok=True)
  try:
    results = train.run(config, workdir)
  except Exception as error:  # recorded: the sweep goes on
    Path(workdir, 'error.txt').write_text(traceback.format_exc())
    reason = f'{type(error).__name__}: {error}'.strip()
    return {'status': _status(error), 'reason': reason[:500]}
  if results is None:
    return {'status': 'stopped'}
  summary = json.loads(Path(workdir, 'summary.json').read_text())
  outcome = {k: summary.get(k) for k in SUMMARY_FIELDS}
  outcome['train_s'] = summary['wall_s'] - (summary.get('compile_s') or 0.0)
  outcome['status'] = 'ok'
  return outcome
