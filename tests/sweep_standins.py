"""A stand-in for ``dvl.sweep.worker.run_population`` (same arguments and
outcomes) whose training is a few sleeps, for tests of the executors. It
imports nothing heavy: a spawned worker imports this module to run it.

Task ``dies`` kills its own worker process with SIGKILL once another task
has started, on its first ``config['kills']`` attempts (attempts are
counted by files in the task's directory), then writes ``done``. With
``config['hold']`` the other tasks train until ``dies`` is done, so they
are mid-trial when it dies. A SIGTERM stops a task as it stops a
population: it returns 'stopped'.
"""

import os
import signal
import time
from pathlib import Path


def _wait(condition, timeout=600.0) -> None:
  # The waits end on events; the limit only keeps a broken executor from
  # hanging the test for ever.
  deadline = time.monotonic() + timeout
  while not condition() and time.monotonic() < deadline:
    time.sleep(0.05)


def train(config, directory, members, stop_at, mode, memory_gb):
  del stop_at, mode, memory_gb
  stop = []
  signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  attempt = len(list(directory.glob('attempt-*')))
  (directory / f'attempt-{attempt}').write_text(str(os.getpid()))
  dies = directory.parent / 'dies'
  if directory == dies:
    if attempt < config['kills']:
      _wait(lambda: any(d != dies and any(d.glob('attempt-*'))
                        for d in dies.parent.iterdir()))
      time.sleep(0.3)
      os.kill(os.getpid(), signal.SIGKILL)
    (dies / 'done').write_text('')
  elif config['hold']:
    _wait(lambda: stop or (dies / 'done').exists())
  else:
    time.sleep(0.5)
  if stop:
    return {i: {'status': 'stopped'} for i, _, _ in members}
  return {i: {'status': 'ok', 'val_accuracy': 0.5, 'attempts': attempt + 1}
          for i, _, _ in members}


XLA_MEMORY = ('XLA_PYTHON_CLIENT_MEM_FRACTION', 'XLA_PYTHON_CLIENT_PREALLOCATE')


def environment(config, directory, members, stop_at, mode, memory_gb):
  """Each member's outcome holds the worker's XLA memory variables, its
  pid, and whether JAX was imported before this task ran."""
  del config, directory, stop_at, mode, memory_gb
  import sys
  seen = {name: os.environ.get(name) for name in XLA_MEMORY}
  return {i: {'status': 'ok', 'env': seen, 'pid': os.getpid(),
              'jax_loaded': 'jax' in sys.modules} for i, _, _ in members}
