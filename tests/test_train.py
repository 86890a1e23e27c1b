"""The train job end to end: ``python launch.py`` in a subprocess, real TFDS
reading of the shapes dataset, real orbax checkpoints, real signals."""

import json
import signal
from pathlib import Path

import pytest

from train_runs import (QUICK, checkpoint_steps, launch, rows, run_env,
                        start, summary, wait_for)

# A run long enough to be killed in the middle: 40 steps, a checkpoint
# every 10, the val split every 20.
RESUMABLE = ('--config.train.steps=40', '--config.train.checkpoint_every=10',
             '--config.train.eval_every=20')


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  return run_env(tmp_path_factory.mktemp('tfds'),
                 tmp_path_factory.mktemp('jax_cache'))


@pytest.mark.slow
def test_quickstart_runlocal_end_to_end(env, tmp_path):
  workdir = tmp_path / 'quick'
  result = launch(QUICK, workdir, env)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert 'first step (compile)' in out
  for line in ('test_accuracy', 'params', 'macs', 'wall_s', 'images_per_s'):
    assert line in out, f'summary lacks {line}:\n{out[-2000:]}'
  assert summary(workdir)['steps'] == 27
  assert 0.0 <= summary(workdir)['test_accuracy'] <= 1.0
  config = json.loads((workdir / 'config.json').read_text())
  assert config['run']['total_steps'] == 27
  assert config['model']['num_classes'] == 6
  assert config['input']['resolution'] == 32
  info = json.loads((workdir / 'model_info.json').read_text())
  assert info['params'] == summary(workdir)['params'] > 0
  assert 0 < info['activations'] < info['macs']
  assert 'MACs' in info['convention']
  train = rows(workdir, 'train')
  assert train[0]['step'] == 1 and 'compile_s' in train[0]
  assert train[-1]['step'] == 27 and 'images_per_s' in train[-1]
  assert [r['step'] for r in rows(workdir, 'val')] == [9, 18, 27]
  assert [r['step'] for r in rows(workdir, 'test')] == [27]
  for split in ('train', 'val', 'test'):
    assert list((workdir / 'tensorboard' / split).glob('*tfevents*'))
  assert checkpoint_steps(workdir) == [9, 18, 27]


@pytest.fixture(scope='module')
def straight(env, tmp_path_factory):
  """The RESUMABLE run, undisturbed: its workdir."""
  workdir = tmp_path_factory.mktemp('straight') / 'run'
  assert launch(QUICK, workdir, env, *RESUMABLE).returncode == 0
  return workdir


def test_killed_run_resumes_to_the_same_metrics(env, tmp_path, straight):
  killed = tmp_path / 'killed'
  process = start(QUICK, killed, env, *RESUMABLE)
  wait_for(lambda: checkpoint_steps(killed), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  stopped_at = checkpoint_steps(killed)[-1]
  assert stopped_at < 40
  again = launch(QUICK, killed, env, *RESUMABLE)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'resuming from step {stopped_at}' in again.stdout
  _assert_same_run(killed, straight, stopped_at)


@pytest.mark.slow
def test_sigterm_then_rerun_resumes_to_the_same_metrics(env, tmp_path,
                                                        straight):
  stopped = tmp_path / 'stopped'
  process = start(QUICK, stopped, env, *RESUMABLE)
  wait_for(lambda: (stopped / 'metrics.jsonl').exists() and rows(
      stopped, 'train'), process)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 0
  log = (tmp_path / 'stopped.log').read_text()
  stopped_at = int(log.split('stopped by SIGTERM after step ')[1].split(';')[0])
  assert stopped_at < 40 and checkpoint_steps(stopped)[-1] == stopped_at
  assert not (stopped / 'dvl.lock').exists()  # released on the way out
  again = launch(QUICK, stopped, env, *RESUMABLE)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'resuming from step {stopped_at}' in again.stdout
  _assert_same_run(stopped, straight, stopped_at)


def _assert_same_run(resumed, straight, stopped_at):
  """The resumed run's summary and logged losses are the undisturbed run's."""
  for key in ('test_accuracy', 'test_loss', 'val_accuracy',
              'best_val_accuracy', 'best_val_step', 'steps'):
    assert summary(resumed)[key] == pytest.approx(summary(straight)[key],
                                                 rel=1e-6, abs=1e-7), key
  # Same data order and dropout draws: every logged training loss agrees,
  # and the resumed log has each step once (plus the first step after the
  # restart, which is always logged, for its compile time).
  ours = {r['step']: r['loss'] for r in rows(resumed, 'train')}
  theirs = {r['step']: r['loss'] for r in rows(straight, 'train')}
  assert len(ours) == len(rows(resumed, 'train'))
  assert set(ours) - set(theirs) <= {stopped_at + 1}
  assert set(theirs) <= set(ours)
  for step in theirs:
    assert ours[step] == pytest.approx(theirs[step], rel=1e-6), step


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(env, tmp_path):
  workdir = tmp_path / 'term'
  process = start(QUICK, workdir, env, '--config.train.steps=400',
                  '--config.train.checkpoint_every=1000')
  wait_for(lambda: (workdir / 'metrics.jsonl').exists() and any(
      r['step'] >= 5 for r in rows(workdir, 'train')), process)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=120) == 0
  log = (tmp_path / 'term.log').read_text()
  assert 'stopped by SIGTERM after step' in log
  stopped_at = int(log.split('stopped by SIGTERM after step ')[1].split(';')[0])
  assert 5 <= stopped_at < 400
  assert checkpoint_steps(workdir) == [stopped_at]
  assert not (workdir / 'summary.json').exists()


def test_divergence_stops_naming_the_step_and_keeps_the_good_checkpoint(
    env, tmp_path):
  workdir = tmp_path / 'nan'
  result = launch(QUICK, workdir, env, '--config.optim.optimizer=sgd',
                  '--config.optim.learning_rate=1e30',
                  '--config.optim.warmup_epochs=0',
                  '--config.optim.warmup_steps=4',
                  '--config.train.checkpoint_every=1')
  assert result.returncode == 2  # one message, no traceback
  assert 'error: training diverged at step ' in result.stderr
  assert 'Traceback' not in result.stderr
  message = result.stderr.split('training diverged at step ')[1]
  bad_step = int(message.split(':')[0])
  saved = checkpoint_steps(workdir)
  assert saved and max(saved) == bad_step - 1
  assert f'the last good checkpoint, step {bad_step - 1}, is kept' in message
  assert not (workdir / 'summary.json').exists()


@pytest.mark.slow
def test_lr_range_writes_the_curve_and_suggests_a_rate(env, tmp_path):
  workdir = tmp_path / 'lr_range'
  result = launch('experiments/lr_range.py:runlocal', workdir, env)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = (workdir / 'lr_range.csv').read_text().splitlines()
  assert lines[0] == 'step,lr,loss,smoothed_loss'
  lrs = [float(line.split(',')[1]) for line in lines[1:]]
  assert len(lrs) >= 3 and lrs == sorted(lrs)
  assert lrs[0] == pytest.approx(1e-5)
  assert (workdir / 'lr_range.png').read_bytes()[:4] == b'\x89PNG'
  suggested = float(result.stdout.split('suggested learning rate: ')[1]
                    .split()[0])
  assert lrs[0] <= suggested <= lrs[-1]
