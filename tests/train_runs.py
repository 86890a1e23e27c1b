"""Running ``launch.py`` in a subprocess and reading experiment configs."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvl.data.datasets import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
QUICK = 'experiments/quickstart.py:runlocal'


def needs_shared_data(folder: str):
  """Skips a test whose real dataset ``SHARED_DATA / folder`` is absent (a
  clone without ../shared; ``DVL_SHARED_DATA=/nonexistent`` hides it)."""
  path = SHARED_DATA / folder
  return pytest.mark.skipif(
      not path.is_dir(), reason=f'needs the real dataset in {path}, absent '
      'here (../shared/data beside the repository, or $DVL_SHARED_DATA)')


def run_env(tfds_dir, cache_dir, **extra) -> dict:
  """The environment of a launched run: its own data and compile caches."""
  env = dict(os.environ, TFDS_DATA_DIR=str(tfds_dir),
             DVL_JAX_CACHE=str(cache_dir), TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONUNBUFFERED='1')
  env.update(extra)
  return env


def command(config: str, workdir, *overrides) -> list[str]:
  return [sys.executable, 'launch.py', '--config', config,
          '--workdir', str(workdir), *overrides]


def launch(config: str, workdir, env, *overrides, timeout=300, **popen):
  """Runs a job to the end; returns the CompletedProcess. ``popen``
  passes on to ``subprocess.run`` (e.g. ``preexec_fn``)."""
  return subprocess.run(command(config, workdir, *overrides), cwd=REPO,
                        env=env, capture_output=True, text=True,
                        timeout=timeout, **popen)


def start(config: str, workdir, env, *overrides) -> subprocess.Popen:
  """Starts a job in the background (stdout and stderr to files)."""
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  out = open(workdir.parent / f'{workdir.name}.log', 'w')
  return subprocess.Popen(command(config, workdir, *overrides), cwd=REPO,
                          env=env, stdout=out, stderr=subprocess.STDOUT,
                          text=True)


def wait_for(predicate, process, timeout=600.0):
  """Polls ``predicate`` until it returns something true, which it returns;
  fails if ``process`` (a job started by ``start``) ends first or the
  timeout passes (killing it)."""
  deadline = time.monotonic() + timeout
  while not (found := predicate()):
    if process.poll() is not None:
      raise AssertionError(f'the job ended (rc {process.returncode}) first')
    if time.monotonic() > deadline:
      process.kill()
      raise AssertionError('timed out waiting for the job')
    time.sleep(0.05)
  return found


def rows(workdir, split=None) -> list[dict]:
  lines = (Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  out = [json.loads(line) for line in lines]
  return [r for r in out if split is None or r['split'] == split]


def summary(workdir) -> dict:
  return json.loads((Path(workdir) / 'summary.json').read_text())


def checkpoint_steps(workdir) -> list[int]:
  directory = Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def experiment_config(name: str, arg: str | None = None):
  """``experiments/<name>.py``'s ``get_config(arg)``."""
  path = REPO / 'experiments' / f'{name}.py'
  spec = importlib.util.spec_from_file_location(f'{name}_experiment', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
