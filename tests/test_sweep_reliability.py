"""Sweeps that lose a worker, get stopped, or meet a second driver, and
sweeps in TensorBoard's HParams dashboard: real worker processes killed
with real signals, a real local Ray instance, the real workdir lock, and
the event files read back with TensorBoard's own reader."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ml_collections
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator)
from tensorboard.plugins.hparams import plugin_data_pb2

from dvl import workdir_lock
from dvl.sweep import executors, hparams, search
import sweep_standins
from train_runs import (REPO, experiment_config, launch, run_env, start,
                        wait_for)

SEARCH = 'experiments/scaling_search.py:runlocal'
ROWS = 14  # the runlocal sweep's rows (tests/test_scaling_search.py)
LONGER = ('--config.train.steps=40', '--config.train.checkpoint_every=5')


def _sweep(**fields):
  sweep = dict(executor='pool', workers=2, threads_per_worker=1,
               gpus_per_worker=0, max_retries=2, population='auto',
               population_memory_gb=0.0, ray_address='')
  sweep.update(fields)
  return ml_collections.ConfigDict(sweep)


def _tasks(tmp_path, kills: int, hold: bool = False) -> list:
  config = ml_collections.ConfigDict(dict(kills=kills, hold=hold))
  return [executors.Task(name, config, str(tmp_path / name),
                         [(f'{name}-trial', 0, str(tmp_path / name))])
          for name in ('dies', 'other', 'third')]


def _outcomes(executor, tasks) -> dict:
  try:
    return {task_id: outcome for task_id, out in executor.run(tasks)
            for outcome in out.values()}
  finally:
    executor.close()


def test_a_pool_task_whose_worker_dies_runs_again(tmp_path, capfd):
  out = _outcomes(executors.Pool(_sweep(), sweep_standins.train),
                  _tasks(tmp_path, 1, hold=True))
  assert {k: v['status'] for k, v in out.items()} == dict.fromkeys(
      ('dies', 'other', 'third'), 'ok')
  assert out['dies']['retries'] == 1 and out['dies']['attempts'] == 2
  # The task whose worker the pool's restart stopped runs again uncounted.
  assert out['other']['retries'] == 0 and out['other']['attempts'] == 2
  assert out['third']['retries'] == 0
  text = capfd.readouterr().out
  pid = (tmp_path / 'dies' / 'attempt-0').read_text()
  assert (f'dies: its worker process (pid {pid}) died; running it again '
          'from its last checkpoint (retry 1 of 2)') in text
  assert ('other: stopped when the pool restarted; running it again from '
          'its last checkpoint') in text


@pytest.mark.parametrize('limit', [0, 1])
def test_a_pool_task_that_keeps_dying_is_recorded_as_failed(tmp_path,
                                                            capfd, limit):
  out = _outcomes(executors.Pool(_sweep(max_retries=limit),
                                 sweep_standins.train), _tasks(tmp_path, 9))
  assert out['other']['status'] == out['third']['status'] == 'ok'
  lost = out['dies']
  assert lost['status'] == 'failed' and lost['retries'] == limit
  assert lost['reason'].startswith('its worker process (pid ')
  assert len(list((tmp_path / 'dies').glob('attempt-*'))) == limit + 1
  if limit:
    assert lost['reason'].endswith(
        'died (it was run 2 times: sweep.max_retries = 1)')
  assert (f'no retries left (sweep.max_retries = {limit}): its trials are '
          'recorded as failed') in capfd.readouterr().out


@pytest.mark.slow
def test_a_ray_task_whose_worker_dies_runs_again(tmp_path, capfd,
                                                monkeypatch):
  ray = pytest.importorskip('ray')
  sweep = _sweep(executor='ray')
  # The local Ray instance's workers import the stand-in from here.
  monkeypatch.setenv('PYTHONPATH', str(Path(__file__).parent))
  try:
    out = _outcomes(executors.Ray(sweep, sweep_standins.train),
                    _tasks(tmp_path, 1, hold=True))
  finally:
    ray.shutdown()
  assert {v['status'] for v in out.values()} == {'ok'}, out
  assert out['dies']['retries'] == 1 and out['dies']['attempts'] == 2
  assert out['other']['retries'] == out['third']['retries'] == 0
  text = capfd.readouterr().out
  assert 'dies: its worker or node died (' in text
  assert 'running it again from its last checkpoint (retry 1 of 2)' in text


def test_bad_max_retries_is_refused(tmp_path):
  config = experiment_config('scaling_search', 'runlocal')
  config.sweep.max_retries = -1
  with pytest.raises(ValueError, match='sweep.max_retries must be an '
                     r'integer >= 0 \(the times a task whose worker died '
                     r'runs again\); got -1'):
    search.run(config, str(tmp_path / 'bad'))


# -- One driver per sweep workdir --------------------------------------------

HOLD = """
import sys, time
from dvl import workdir_lock
with workdir_lock.hold(sys.argv[1], 'sweep'):
  print('holding', flush=True)
  time.sleep(120)
"""


def test_a_second_sweep_driver_is_refused_naming_the_first(tmp_path):
  workdir = tmp_path / 'sweep'
  holder = subprocess.Popen([sys.executable, '-c', HOLD, str(workdir)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'holding'
    config = experiment_config('scaling_search', 'runlocal')
    with pytest.raises(workdir_lock.WorkdirBusyError,
                       match=f'in use by sweep \\(pid {holder.pid} on host'):
      search.run(config, str(workdir))
    result = launch(SEARCH, workdir, dict(os.environ))
  finally:
    holder.kill()
    holder.wait()
  assert result.returncode == 2
  assert f'is in use by sweep (pid {holder.pid} on host ' in result.stderr
  assert 'Traceback' not in result.stderr
  assert sorted(p.name for p in workdir.iterdir()) == ['dvl.lock']


# -- HParams -------------------------------------------------------------------

def _plugin_data(accumulator) -> dict:
  content = accumulator.PluginTagToContent('hparams')
  return {tag: plugin_data_pb2.HParamsPluginData.FromString(data)
          for tag, data in content.items()}


def _value(value):
  kind = value.WhichOneof('kind')
  return getattr(value, kind)


def _accumulator(path) -> EventAccumulator:
  accumulator = EventAccumulator(str(path))
  accumulator.Reload()
  return accumulator


def read_hparams(workdir) -> tuple[dict, dict]:
  """The experiment's hparams and metrics (name -> display name), and
  each session's ``(hparams, {metric: (step, value)})`` by its run."""
  root = Path(workdir) / hparams.DIRECTORY
  (experiment,) = _plugin_data(_accumulator(root)).values()
  names = ({h.name: h.display_name for h in experiment.experiment.hparam_infos},
           {m.name.tag: m.display_name
            for m in experiment.experiment.metric_infos})
  sessions = {}
  for run in sorted(p for p in root.iterdir() if p.is_dir()):
    accumulator = _accumulator(run)
    (data,) = _plugin_data(accumulator).values()
    start = data.session_start_info
    assert start.group_name == run.name
    values = {k: _value(v) for k, v in start.hparams.items()}
    metrics = {}
    for tag in accumulator.Tags()['scalars']:
      (event,) = accumulator.Scalars(tag)
      metrics[tag] = (event.step, event.value)
    sessions[run.name] = (values, metrics)
  return names, sessions


def check_hparams(workdir, rows) -> None:
  """Every row is a session with its point and its metrics."""
  names, sessions = read_hparams(workdir)
  assert names[0] == dict(hparams.HPARAMS)
  assert names[1] == dict(hparams.METRICS)
  assert set(sessions) == {r['trial'] for r in rows}
  for row in rows:
    values, metrics = sessions[row['trial']]
    expected = {k: row[k] for k, _ in hparams.HPARAMS
                if row.get(k) is not None and k != 'rung'}
    expected['rung'] = bool(row.get('rung_of'))
    assert values == pytest.approx(expected), row['trial']
    assert metrics == {k: (row['steps'], pytest.approx(row[k], rel=1e-6))
                       for k, _ in hparams.METRICS if row[k] is not None}


def test_hparams_rows_read_back_once_each(tmp_path):
  rows = [dict(trial='grid1-a', kind='grid', phi=1, seed=0, alpha=1.2,
               beta=1.1, gamma=1.15, d=1.2, w=1.1, r=1.15, budget=None,
               steps=8, status='ok', val_accuracy=0.625, test_accuracy=0.5,
               macs=23_456_789, params=123_456, rung_of=None),
          dict(trial='grid1-a@4', kind='grid', phi=1, seed=0, alpha=1.2,
               beta=1.1, gamma=1.15, d=1.2, w=1.1, r=1.15, budget=2.0,
               steps=4, status='ok', val_accuracy=0.25, test_accuracy=None,
               macs=23_456_789, params=123_456, rung_of='grid1-a'),
          dict(trial='baseline0-b', kind='baseline', phi=0, seed=1,
               alpha=None, beta=None, gamma=None, d=1.0, w=1.0, r=1.0,
               budget=None, steps=8, status='diverged', val_accuracy=None,
               test_accuracy=None, macs=1_000, params=10, rung_of=None)]
  writer = hparams.HParamsWriter(tmp_path)
  writer.add_missing(rows[:2])
  again = hparams.HParamsWriter(tmp_path)  # a rerun of the sweep
  again.add_missing(rows)
  check_hparams(tmp_path, rows)
  root = tmp_path / hparams.DIRECTORY
  assert len(list(root.glob('events.out.tfevents.*'))) == 1
  for row in rows:
    assert len(list((root / row['trial']).iterdir())) == 1


# -- End to end: the runlocal sweep ------------------------------------------

@pytest.fixture(scope='module')
def env(tmp_path_factory):
  return run_env(tmp_path_factory.mktemp('tfds'),
                 tmp_path_factory.mktemp('jax_cache'))


def _one_core():
  core = min(os.sched_getaffinity(0))
  return lambda: os.sched_setaffinity(0, {core})


def _rows(workdir) -> list[dict]:
  lines = (Path(workdir) / 'results.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


def _results(rows) -> dict:
  return {r['trial']: (r['status'], r['steps'], r['val_accuracy'],
                       r['test_accuracy'], r['test_loss'], r['macs'])
          for r in rows}


@pytest.fixture(scope='module')
def undisturbed(env, tmp_path_factory):
  """The runlocal sweep, 40 steps a trial, in one process on one core."""
  workdir = tmp_path_factory.mktemp('undisturbed') / 'sweep'
  result = launch(SEARCH, workdir, env, *LONGER, timeout=900,
                  preexec_fn=_one_core())
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _rows(workdir)
  assert len(rows) == ROWS and all(r['status'] == 'ok' for r in rows)
  assert all(r['retries'] == 0 for r in rows)
  return workdir, rows


@pytest.mark.slow
def test_the_sweep_in_the_hparams_dashboard(undisturbed):
  workdir, rows = undisturbed
  check_hparams(workdir, rows)


def _training(workdir, total=40):
  """A population with a checkpoint short of the end."""
  for trial in (Path(workdir) / 'trials').glob('pop-*'):
    steps = [int(p.name) for p in (trial / 'checkpoints').glob('*')
             if p.name.isdigit()]
    if steps and max(steps) < total:
      return trial
  return None


def _checkpoints(population) -> list[int]:
  return [int(p.name) for p in (population / 'checkpoints').glob('*')
          if p.name.isdigit()]


def _all_resumable(workdir, total=40) -> bool:
  """Every population started has a checkpoint, one of them short of the
  end: whichever worker dies, its task resumes from a checkpoint."""
  steps = [_checkpoints(p) for p in (Path(workdir) / 'trials').glob('pop-*')]
  return bool(steps) and all(steps) and any(max(s) < total for s in steps)


def _training_worker(driver: int, marker: str, workdir) -> int | None:
  """A descendant of the driver whose command line holds ``marker`` and
  that has a trial's files open (TensorBoard events: it is training)."""
  psutil = pytest.importorskip('psutil')
  trials = str(Path(workdir) / 'trials')
  for child in psutil.Process(driver).children(recursive=True):
    try:
      if marker in ' '.join(child.cmdline()) and any(
          f.path.startswith(trials) for f in child.open_files()):
        return child.pid
    except psutil.Error:
      pass
  return None


def _kill_a_worker_mid_trial(workdir, process, marker) -> int:
  wait_for(lambda: _all_resumable(workdir), process)
  pid = wait_for(lambda: _training_worker(process.pid, marker, workdir),
                  process)
  os.kill(pid, signal.SIGKILL)
  return pid


def _check_recovered(workdir, process, log, undisturbed_rows) -> str:
  assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
  text = log.read_text()
  rows = _rows(workdir)
  assert len(rows) == len({r['trial'] for r in rows}) == ROWS
  assert _results(rows) == _results(undisturbed_rows)
  assert any(r['retries'] >= 1 for r in rows)
  assert 'running it again from its last checkpoint (retry 1 of 2)' in text
  assert ' member(s) from step ' in text  # resumed, not started afresh
  return text


@pytest.mark.slow
def test_a_pool_worker_killed_mid_trial_is_retried(env, tmp_path,
                                                   undisturbed):
  workdir = tmp_path / 'pool'
  process = start(SEARCH + ',executor=pool,workers=2', workdir, env, *LONGER,
                  '--config.sweep.threads_per_worker=1')
  pid = _kill_a_worker_mid_trial(workdir, process, 'spawn_main')
  text = _check_recovered(workdir, process, tmp_path / 'pool.log',
                          undisturbed[1])
  assert f'its worker process (pid {pid}) died; running it again' in text


@pytest.mark.slow
def test_a_ray_worker_killed_mid_trial_is_retried(env, tmp_path, undisturbed):
  workdir = tmp_path / 'ray'
  # Ray does not pin its workers' cores: on one core, XLA's thread pools
  # match the undisturbed sweep's and so do its float roundings.
  workdir.mkdir()
  with open(tmp_path / 'ray.log', 'w') as log:
    process = subprocess.Popen(
        [sys.executable, 'launch.py', '--config',
         SEARCH + ',executor=ray,workers=2', '--workdir', str(workdir),
         *LONGER, '--config.sweep.threads_per_worker=1'], cwd=REPO, env=env,
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_one_core())
  _kill_a_worker_mid_trial(workdir, process, 'ray::run_population')
  text = _check_recovered(workdir, process, tmp_path / 'ray.log',
                          undisturbed[1])
  assert 'its worker or node died (' in text


@pytest.mark.slow
def test_sigterm_then_rerun_gives_the_undisturbed_metrics(env, tmp_path,
                                                          undisturbed):
  workdir = tmp_path / 'stopped'
  process = subprocess.Popen(
      [sys.executable, 'launch.py', '--config', SEARCH, '--workdir',
       str(workdir), *LONGER], cwd=REPO, env=env, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      preexec_fn=_one_core())
  wait_for(lambda: (workdir / workdir_lock.LOCK_NAME).exists(), process)
  second = launch(SEARCH, workdir, env, *LONGER)
  assert second.returncode == 2
  assert f'is in use by sweep (pid {process.pid} on host ' in second.stderr
  wait_for(lambda: (workdir / 'results.jsonl').exists()
            and _training(workdir), process)
  process.send_signal(signal.SIGTERM)
  out, _ = process.communicate(timeout=300)
  assert process.returncode == 0, out[-3000:]
  assert 'sweep stopped' in out
  before = _rows(workdir)
  assert 0 < len(before) < ROWS

  again = launch(SEARCH, workdir, env, *LONGER, timeout=900,
                 preexec_fn=_one_core())
  assert again.returncode == 0, again.stderr[-3000:]
  assert ' member(s) from step ' in again.stdout
  rows = _rows(workdir)
  assert rows[:len(before)] == before
  assert _results(rows) == _results(undisturbed[1])
  check_hparams(workdir, rows)


_ORPHAN_DRIVER = '''
import multiprocessing, os, sys, time
from dvl.sweep import worker

def child(path):
  worker.die_with_parent()
  with open(path, 'w') as f:
    f.write(str(os.getpid()))
  time.sleep(120)

if __name__ == '__main__':
  context = multiprocessing.get_context('spawn')
  context.Process(target=child, args=(sys.argv[1],)).start()
  time.sleep(120)
'''


def _alive(pid: int) -> bool:
  """Whether ``pid`` runs (a zombie awaiting its reaper counts as dead)."""
  try:
    status = Path(f'/proc/{pid}/status').read_text()
  except FileNotFoundError:
    return False
  return '\nState:\tZ' not in status


def _poll(predicate, timeout: float):
  deadline = time.monotonic() + timeout
  while not (found := predicate()) and time.monotonic() < deadline:
    time.sleep(0.2)
  return found


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='parent-death signals are a Linux facility')
def test_a_pool_worker_stops_when_its_driver_is_killed(tmp_path):
  script, pid_file = tmp_path / 'driver.py', tmp_path / 'child.pid'
  script.write_text(_ORPHAN_DRIVER)
  env = dict(os.environ, PYTHONPATH=str(REPO))
  driver = subprocess.Popen([sys.executable, str(script), str(pid_file)],
                            env=env, cwd=REPO)
  child = None
  try:
    assert _poll(lambda: pid_file.exists() and pid_file.read_text(), 60)
    child = int(pid_file.read_text())
    assert _alive(child)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert _poll(lambda: not _alive(child), 30), (
        'the worker outlived its killed driver')
  finally:
    driver.kill()
    if child and _alive(child):
      os.kill(child, signal.SIGKILL)
