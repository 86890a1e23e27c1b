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

Every executor's ``run(tasks)`` takes ``Task``s, each the seeds of one
network trained as a population (``worker.run_population``), and yields
``(task id, {trial id: outcome})`` as tasks finish (configs travel to other
processes as plain dicts); the driver writes the results, so no two
processes ever write the same file.
"""

import dataclasses

import concurrent.futures
import multiprocessing
import os
from pathlib import Path

from dvl.sweep import worker

EXECUTORS = ('sequential', 'pool', 'ray')


@dataclasses.dataclass
class Task:
  """One population: its id, train config (of its first seed), directory,
  members ``(trial id, seed, trial dir)`` and rung stop (None: the end)."""
  id: str
  config: object
  directory: str
  members: list
  stop_at: int | None = None

  def args(self, sweep, plain: bool = False) -> tuple:
    """``worker.run_population``'s arguments (``plain``: the config as a
    dict, for another process)."""
    config = self.config.to_dict() if plain else self.config
    members = [(i, s, str(d)) for i, s, d in self.members]
    return (config, str(self.directory), members, self.stop_at,
            sweep.population, sweep.population_memory_gb)


def _threads(sweep) -> int:
  if sweep.threads_per_worker:
    return sweep.threads_per_worker
  return max(1, len(os.sched_getaffinity(0)) // max(1, sweep.workers))


def _lost(error: Exception, task: Task) -> dict:
  """The outcomes of a task whose worker died before it could report."""
  text = f'{type(error).__name__}: {error}'
  status = 'oom' if 'memory' in text.lower() else 'failed'
  outcome = {'status': status,
             'reason': f'the worker process died: {text}'[:500]}
  return {trial_id: dict(outcome) for trial_id, _, _ in task.members}


class Sequential:
  """Runs each task in this process, in order."""

  def __init__(self, sweep):
    self.sweep = sweep

  def run(self, tasks):
    for task in tasks:
      yield task.id, worker.run_population(*task.args(self.sweep))

  def close(self):
    pass


class Pool:
  """Local worker processes, each with its own cores (or GPUs)."""

  def __init__(self, sweep):
    if sweep.workers < 1:
      raise ValueError(f'sweep.workers must be >= 1; got {sweep.workers}')
    self.sweep = sweep
    context = multiprocessing.get_context('spawn')
    slots = context.Queue()
    for index in range(sweep.workers):
      slots.put(index)
    self.pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=sweep.workers, mp_context=context,
        initializer=worker.start_worker,
        initargs=(slots, _threads(sweep), sweep.gpus_per_worker))

  def run(self, tasks):
    futures = {self.pool.submit(worker.run_population,
                                *task.args(self.sweep, plain=True)): task
               for task in tasks}
    for future in concurrent.futures.as_completed(futures):
      task = futures[future]
      try:
        outcome = future.result()
      except Exception as error:  # the worker process died (OOM kill, ...)
        outcome = _lost(error, task)
      yield task.id, outcome

  def close(self):
    self.pool.shutdown(wait=True, cancel_futures=True)


class Ray:
  """Ray tasks on the cluster at ``sweep.ray_address`` (or a local one)."""

  def __init__(self, sweep):
    import ray
    self.ray = ray
    self.sweep = sweep
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
    self.remote = ray.remote(worker.run_population).options(
        num_cpus=self.threads, num_gpus=sweep.gpus_per_worker, max_retries=0)

  def run(self, tasks):
    pending = {self.remote.remote(*task.args(self.sweep, plain=True)): task
               for task in tasks}
    while pending:
      done, _ = self.ray.wait(list(pending), num_returns=1)
      task = pending.pop(done[0])
      try:
        outcome = self.ray.get(done[0])
      except Exception as error:  # the worker or its node died
        outcome = _lost(error, task)
      yield task.id, outcome

  def close(self):
    if self.started:
      self.ray.shutdown()


def make_executor(sweep):
  """The executor that ``sweep.executor`` names."""
  if sweep.executor == 'sequential':
    return Sequential(sweep)
  if sweep.executor == 'pool':
    return Pool(sweep)
  if sweep.executor == 'ray':
    return Ray(sweep)
  raise ValueError(f'unknown sweep.executor {sweep.executor!r}; choose one '
                   f'of: {", ".join(EXECUTORS)}')
