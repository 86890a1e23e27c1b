"""Where trials run: in this process, in a local pool, or on a Ray cluster.

``config.sweep.executor`` chooses:

* ``'sequential'`` (default): one trial after another in this process.
* ``'pool'``: ``sweep.workers`` local processes (``spawn``, so each starts
  its own JAX); worker ``i`` keeps its own ``sweep.threads_per_worker`` CPU
  cores and ``sweep.gpus_per_worker`` GPUs (``worker.start_worker``).
* ``'ray'``: Ray tasks (``ray.init(address=sweep.ray_address or None)``;
  an empty address starts a local Ray instance with
  ``workers × threads_per_worker`` CPUs). Each task asks for
  ``threads_per_worker`` CPUs and ``gpus_per_worker`` GPUs. Trial
  directories are written by the workers, so on a cluster of several
  machines the sweep workdir must be on storage that every node mounts at
  the same path.

Every executor's ``run(tasks)`` takes ``(trial_id, config, trial_dir)``
tuples and yields ``(trial_id, outcome)`` as trials finish (configs travel
to other processes as plain dicts); the driver writes the results, so no
two processes ever write the same file.
"""

import concurrent.futures
import multiprocessing
import os
from pathlib import Path

from dvl.sweep import worker

EXECUTORS = ('sequential', 'pool', 'ray')


def _threads(sweep) -> int:
  if sweep.threads_per_worker:
    return sweep.threads_per_worker
  return max(1, len(os.sched_getaffinity(0)) // max(1, sweep.workers))


def _lost(error: Exception) -> dict:
  """The outcome of a trial whose worker died before it could report."""
  text = f'{type(error).__name__}: {error}'
  status = 'oom' if 'memory' in text.lower() else 'failed'
  return {'status': status, 'reason': f'the worker process died: {text}'[:500]}


class Sequential:
  """Runs each trial in this process, in order."""

  def run(self, tasks):
    for trial_id, config, directory in tasks:
      yield trial_id, worker.run_trial(config, str(directory))

  def close(self):
    pass


class Pool:
  """Local worker processes, each with its own cores (or GPUs)."""

  def __init__(self, sweep):
    if sweep.workers < 1:
      raise ValueError(f'sweep.workers must be >= 1; got {sweep.workers}')
    context = multiprocessing.get_context('spawn')
    slots = context.Queue()
    for index in range(sweep.workers):
      slots.put(index)
    self.pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=sweep.workers, mp_context=context,
        initializer=worker.start_worker,
        initargs=(slots, _threads(sweep), sweep.gpus_per_worker))

  def run(self, tasks):
    futures = {self.pool.submit(worker.run_trial, config.to_dict(),
                                str(directory)):
               trial_id for trial_id, config, directory in tasks}
    for future in concurrent.futures.as_completed(futures):
      try:
        outcome = future.result()
      except Exception as error:  # the worker process died (OOM kill, ...)
        outcome = _lost(error)
      yield futures[future], outcome

  def close(self):
    self.pool.shutdown(wait=True, cancel_futures=True)


class Ray:
  """Ray tasks on the cluster at ``sweep.ray_address`` (or a local one)."""

  def __init__(self, sweep):
    import ray
    self.ray = ray
    self.threads = _threads(sweep)
    self.started = False
    if not ray.is_initialized():
      if sweep.ray_address:
        # The package travels to every node; the data and the workdir must
        # be where the workers can read and write them.
        dvl_dir = str(Path(__file__).resolve().parents[1])
        ray.init(address=sweep.ray_address, runtime_env={
            'py_modules': [dvl_dir]})
      else:
        repo = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, [repo,
                                             os.environ.get('PYTHONPATH')]))
        ray.init(num_cpus=sweep.workers * self.threads,
                 include_dashboard=False,
                 runtime_env={'env_vars': {'PYTHONPATH': path}})
      self.started = True
    cpus = ray.cluster_resources().get('CPU', 0)
    print(f'ray: {len(ray.nodes())} node(s), {cpus:g} CPUs; '
          f'{self.threads} per trial', flush=True)
    self.remote = ray.remote(worker.run_trial).options(
        num_cpus=self.threads, num_gpus=sweep.gpus_per_worker, max_retries=0)

  def run(self, tasks):
    pending = {self.remote.remote(config.to_dict(), str(directory)): trial_id
               for trial_id, config, directory in tasks}
    while pending:
      done, _ = self.ray.wait(list(pending), num_returns=1)
      try:
        outcome = self.ray.get(done[0])
      except Exception as error:  # the worker or its node died
        outcome = _lost(error)
      yield pending.pop(done[0]), outcome

  def close(self):
    if self.started:
      self.ray.shutdown()


def make_executor(sweep):
  """The executor that ``sweep.executor`` names."""
  if sweep.executor == 'sequential':
    return Sequential()
  if sweep.executor == 'pool':
    return Pool(sweep)
  if sweep.executor == 'ray':
    return Ray(sweep)
  raise ValueError(f'unknown sweep.executor {sweep.executor!r}; choose one '
                   f'of: {", ".join(EXECUTORS)}')
