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

A task whose worker process (or Ray node) dies, or whose worker alone is
stopped by SIGTERM, runs again, up to ``sweep.max_retries`` times: the
population resumes from its last checkpoint, so a retry repeats at most
the steps since then. Each outcome carries ``retries``, the times its task
was run again; a task that dies more often is recorded as failed.
"""

import dataclasses

import concurrent.futures
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures.process import BrokenProcessPool
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


def _stopped(outcomes: dict) -> bool:
  return any(o.get('status') == 'stopped' for o in outcomes.values())


def _counted(outcomes: dict, retries: int) -> dict:
  """``outcomes`` with each member's ``retries``."""
  return {i: {**o, 'retries': retries} for i, o in outcomes.items()}


def _lost(why: str, task: Task, retries: int) -> dict:
  """The outcomes of a task whose worker died (after ``retries`` retries)
  before it could report."""
  status = 'oom' if 'memory' in why.lower() else 'failed'
  if retries:
    why += f' (it was run {retries + 1} times: sweep.max_retries = {retries})'
  return _counted({trial_id: {'status': status, 'reason': why[:500]}
                   for trial_id, _, _ in task.members}, retries)


def _first_line(error: Exception) -> str:
  text = f'{type(error).__name__}: {error}'.strip()
  return text.splitlines()[0][:300]


class Retries:
  """How often each task was run again, and the line that says so."""

  def __init__(self, sweep):
    self.limit = sweep.max_retries
    self.counts = {}

  def __getitem__(self, task: Task) -> int:
    return self.counts.get(task.id, 0)

  def again(self, task: Task, why: str) -> bool:
    """Counts a retry of ``task``; False when it has none left."""
    count = self[task]
    if count >= self.limit:
      print(f'{task.id}: {why}; no retries left (sweep.max_retries = '
            f'{self.limit}): its trials are recorded as failed', flush=True)
      return False
    self.counts[task.id] = count + 1
    print(f'{task.id}: {why}; running it again from its last checkpoint '
          f'(retry {count + 1} of {self.limit})', flush=True)
    return True


def compile_ahead_choice(sweep):
  """``sweep.compile_ahead`` as 'auto', True or False (a command line's
  'true' and 'false' included)."""
  choice = sweep.get('compile_ahead', 'auto')
  if isinstance(choice, str) and choice.lower() in ('true', 'false'):
    choice = choice.lower() == 'true'
  if not (choice is True or choice is False or choice == 'auto'):
    raise ValueError(f"sweep.compile_ahead must be 'auto', True or False; "
                     f'got {choice!r}')
  return choice


def compiles_ahead(sweep) -> bool:
  """Whether the sequential executor compiles the next task's programs
  while a task trains (``sweep.compile_ahead``). 'auto': on a host whose
  training leaves cores idle: an accelerator backend, or a CPU with more
  cores than ``sweep.threads_per_worker`` (0, the default, trains on all
  of them: off)."""
  choice = compile_ahead_choice(sweep)
  if choice != 'auto':
    return choice
  import jax
  if jax.default_backend() != 'cpu':
    return True
  threads = sweep.threads_per_worker
  return bool(threads) and threads < len(os.sched_getaffinity(0))


class Sequential:
  """Runs each task in this process, in order; with ``compiles_ahead``, a
  thread compiles task n + 1's programs while task n trains
  (``worker.compile_population``), and task n + 1 starts once they are
  ready; the time it waits for them after task n ends is added to its
  ``compile_s`` and ``wall_s``. The thread starts with task n, so it also
  competes with task n's own compile. It reads task n + 1's data: they
  must exist already (the sweep's planner prepares them)."""

  def __init__(self, sweep):
    self.sweep = sweep
    self.ahead = compiles_ahead(sweep)

  def run(self, tasks):
    tasks = list(tasks)
    waited = 0.0  # seconds task i waited for its programs compiled ahead
    for i, task in enumerate(tasks):
      ahead = None
      if self.ahead and i + 1 < len(tasks):
        ahead = threading.Thread(
            target=worker.compile_population,
            args=tasks[i + 1].args(self.sweep), daemon=True,
            name=f'compile-ahead-{tasks[i + 1].id}')
        ahead.start()
      try:
        outcome = worker.run_population(*task.args(self.sweep))
      finally:
        started = time.perf_counter()
        if ahead is not None:
          ahead.join()
        wait_next = (time.perf_counter() - started
                     if ahead is not None else 0.0)
      yield task.id, _counted(_waited(outcome, waited), 0)
      waited = wait_next

  def close(self):
    pass


def _waited(outcomes: dict, seconds: float) -> dict:
  """``outcomes`` with ``seconds`` spent waiting for their programs to be
  compiled ahead (after the previous task ended) added to their compile
  and wall time: the report's compile share counts the wait."""
  if not seconds:
    return outcomes
  return {i: {**o, **{k: o[k] + seconds for k in ('compile_s', 'wall_s')
                      if isinstance(o.get(k), (int, float))}}
          for i, o in outcomes.items()}


def check_memory_fraction(sweep) -> None:
  """Checks ``sweep.memory_fraction``, each pool worker's share of its
  accelerator's memory (0: XLA's default, for one process per device).

  It must lie in (0, 1], and the workers that share a device
  (``sweep.workers`` of them when ``gpus_per_worker`` is 0, one otherwise)
  must not ask for more than all of it. Whether a share holds a
  population is checked by the worker, against its compiled train step
  (``dvl.train.population.run``).
  """
  fraction = sweep.get('memory_fraction', 0.0)
  if fraction == 0:
    return
  if not 0 < fraction <= 1:
    raise ValueError(f'sweep.memory_fraction must be in (0, 1] (each pool '
                     'worker\'s share of its accelerator\'s memory; 0 leaves '
                     f"XLA's default); got {fraction}")
  sharing = 1 if sweep.gpus_per_worker else sweep.workers
  if sharing * fraction > 1 + 1e-9:
    raise ValueError(
        f'{sharing} pool workers share each device and sweep.memory_fraction '
        f'= {fraction:g} gives each {fraction:.0%} of its memory: '
        f'{sharing * fraction:.0%} in all. Use sweep.memory_fraction <= '
        f'{1 / sharing:.4g} or fewer sweep.workers')


def _watch_every_worker(pool) -> None:
  """Wakes the pool's manager thread after a submit.

  ``ProcessPoolExecutor.submit`` (CPython 3.11) wakes the manager thread
  before it starts the worker process the new task may need. The thread
  then waits on the workers it knew of, so the death of the worker started
  after that goes unseen until some other result arrives: the other tasks
  train on, and the dead worker's task waits. Waking it once more, after
  the start, makes it watch every worker.
  """
  wakeup = getattr(pool, '_executor_manager_thread_wakeup', None)
  lock = getattr(pool, '_shutdown_lock', None)
  if wakeup is None or lock is None:
    return
  with lock:  # as submit does: the manager closes the wakeup under it
    wakeup.wakeup()


class Pool:
  """Local worker processes, each with its own cores (or GPUs).

  At most ``workers`` tasks are submitted at a time, so none waits in the
  pool's queue for a worker. A worker that dies breaks the whole
  ``ProcessPoolExecutor``: it terminates the other workers (SIGTERM, which
  makes a training population save a checkpoint and stop) and fails every
  unfinished task. The pool is then started afresh and those tasks
  resubmitted; a retry is counted for the tasks whose own worker died
  (each worker reports the task it starts and the tasks SIGTERM stopped).
  ``function`` replaces ``worker.run_population`` (it takes a task's
  ``args``).
  """

  def __init__(self, sweep, function=None):
    if sweep.workers < 1:
      raise ValueError(f'sweep.workers must be >= 1; got {sweep.workers}')
    check_memory_fraction(sweep)
    self.sweep = sweep
    self.function = function or worker.run_population
    self.context = multiprocessing.get_context('spawn')
    self.pool, self.events = self._start()
    self.started, self.stopped = {}, set()

  def _start(self):
    slots = self.context.Queue()
    for index in range(self.sweep.workers):
      slots.put(index)
    events = self.context.Queue()
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=self.sweep.workers, mp_context=self.context,
        initializer=worker.start_worker,
        initargs=(slots, _threads(self.sweep), self.sweep.gpus_per_worker,
                  events, self.sweep.get('memory_fraction', 0.0)))
    return pool, events

  def _drain(self) -> None:
    """Reads the workers' reports: ``started`` (task id -> pid) and
    ``stopped``."""
    while True:
      try:
        what, task_id, pid = self.events.get_nowait()
      except queue.Empty:
        return
      if what == 'started':
        self.started[task_id] = pid
      else:
        self.stopped.add(task_id)

  def _submit(self, task: Task):
    future = self.pool.submit(worker.run_reported, self.function, task.id,
                              *task.args(self.sweep, plain=True))
    _watch_every_worker(self.pool)
    return future

  def run(self, tasks):
    retries = Retries(self.sweep)
    waiting, running = list(tasks), {}
    while waiting or running:
      while waiting and len(running) < self.sweep.workers:
        try:
          future = self._submit(waiting[0])
        except BrokenProcessPool:  # it broke since the last look
          if not running:
            self._restart()
          break
        running[future] = waiting.pop(0)
      if not running:
        continue
      concurrent.futures.wait(
          running, return_when=concurrent.futures.FIRST_COMPLETED)
      for task, outcome in self._finished(running, retries):
        if outcome is None:  # to run again
          waiting.insert(0, task)
        else:
          yield task.id, outcome

  def _finished(self, running: dict, retries: Retries) -> list[tuple]:
    """Takes the finished futures out of ``running``: ``(task, outcome)``
    each, the outcome None for a task to run again. A broken pool is
    replaced first (every unfinished task fails with it)."""
    if any(isinstance(f.exception(), BrokenProcessPool)
           for f in running if f.done()):
      self._restart()
    self._drain()
    done = [f for f in running if f.done()]
    broken = {running[f].id for f in done
              if isinstance(f.exception(), BrokenProcessPool)}
    blamed = self._blamed(broken)
    out = []
    for future in done:
      task = running.pop(future)
      pid = self.started.pop(task.id, None)
      self.stopped.discard(task.id)
      error = future.exception()
      if error is None and not _stopped(future.result()):
        out.append((task, _counted(future.result(), retries[task])))
      elif task.id in broken and task.id not in blamed:
        print(f'{task.id}: stopped when the pool restarted; running it '
              'again from its last checkpoint', flush=True)
        out.append((task, None))
      elif error is not None and task.id not in broken:
        # Its result could not travel back: running it again won't help.
        out.append((task, _lost(f'the task failed: {_first_line(error)}',
                                task, retries[task])))
      else:
        why = ('its worker was stopped by a signal' if error is None else
               f'its worker process (pid {pid}) died' if pid else
               'a worker process died')
        again = retries.again(task, why)
        out.append((task, None if again else _lost(why, task, retries[task])))
    return out

  def _restart(self) -> None:
    """Replaces a broken pool once its workers have saved and ended."""
    self.pool.shutdown(wait=True)
    self._drain()
    self.pool, self.events = self._start()

  def _blamed(self, broken: set) -> set:
    """Of the tasks lost with a broken pool (ids), those whose own worker
    died: the ones that started and were not stopped by the pool's SIGTERM
    (all of them when that leaves none)."""
    return {i for i in broken
            if i in self.started and i not in self.stopped} or broken

  def close(self):
    self.pool.shutdown(wait=True, cancel_futures=True)


class Ray:
  """Ray tasks on the cluster at ``sweep.ray_address`` (or a local one).

  A task whose worker process or node dies comes back as a Ray error and is
  submitted again by the driver, which counts the retries (Ray's own
  ``max_retries`` would retry it unseen, so the row could not say so);
  errors of the trial itself never reach here (``run_population`` records
  them). ``function`` replaces ``worker.run_population``.
  """

  def __init__(self, sweep, function=None):
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
    self.remote = ray.remote(function or worker.run_population).options(
        num_cpus=self.threads, num_gpus=sweep.gpus_per_worker, max_retries=0)

  def run(self, tasks):
    retries = Retries(self.sweep)
    pending = {self._submit(task): task for task in tasks}
    while pending:
      done, _ = self.ray.wait(list(pending), num_returns=1)
      task = pending.pop(done[0])
      try:
        outcome, error = self.ray.get(done[0]), None
      except self.ray.exceptions.RayTaskError as failed:  # not a lost worker
        why = f'the task failed: {_first_line(failed)}'
        yield task.id, _lost(why, task, retries[task])
        continue
      except self.ray.exceptions.RayError as failed:  # its worker or node died
        outcome, error = None, failed
      if error is None and not _stopped(outcome):
        yield task.id, _counted(outcome, retries[task])
        continue
      why = ('its worker was stopped by a signal' if error is None else
             f'its worker or node died ({_first_line(error)})')
      if retries.again(task, why):
        pending[self._submit(task)] = task
      else:
        yield task.id, _lost(why, task, retries[task])

  def _submit(self, task: Task):
    return self.remote.remote(*task.args(self.sweep, plain=True))

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
