"""A full disk: a checkpoint, metrics or summary write that fails with ENOSPC
stops the run with one clear message, leaves the last good checkpoint
intact, and the same run started again after space is freed resumes to the
metrics of an undisturbed run. ENOSPC is injected at the write itself."""

import errno
import json
import os
from pathlib import Path

import orbax.checkpoint as ocp
import pytest

from dvl import errors
from dvl.train import run
from train_runs import checkpoint_steps, experiment_config

COMPARED = ('test_accuracy', 'test_loss', 'val_accuracy', 'best_val_accuracy',
            'best_val_step', 'steps')


@pytest.fixture(autouse=True)
def _data_dir(tmp_path_factory, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR',
                     str(tmp_path_factory.getbasetemp() / 'tfds'))


def _config():
  config = experiment_config('quickstart', 'runlocal')
  config.train.steps = 8
  config.train.checkpoint_every = 2
  config.train.eval_every = 4
  config.train.log_every = 1
  config.train.compilation_cache = False
  return config


@pytest.fixture(scope='module')
def undisturbed(tmp_path_factory):
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('TFDS_DATA_DIR',
                 str(tmp_path_factory.getbasetemp() / 'tfds'))
    return run(_config(), str(tmp_path_factory.mktemp('undisturbed')))


def _no_space(path=''):
  return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _resumes_to_the_same_metrics(workdir, undisturbed):
  results = run(_config(), str(workdir))
  for key in COMPARED:
    assert results[key] == pytest.approx(undisturbed[key], rel=1e-6), key


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_keeps_the_last_one(
    tmp_path, monkeypatch, undisturbed):
  save = ocp.CheckpointManager.save

  def full_at_step_6(self, step, *args, **kwargs):
    if step == 6:  # orbax had begun writing its temporary directory
      partial = Path(self.directory) / '6.orbax-checkpoint-tmp-1'
      partial.mkdir()
      (partial / 'array').write_bytes(b'half')
      raise _no_space(partial / 'array')
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', full_at_step_6)
  with pytest.raises(errors.DiskFullError) as error:
    run(_config(), str(tmp_path))
  assert ('no space left on the device while saving checkpoint step 6 in '
          f'{tmp_path}/checkpoints; the last good checkpoint, step 4, is '
          'intact') in str(error.value)
  assert errors.is_user_error(error.value)
  assert checkpoint_steps(tmp_path) == [2, 4]
  assert not list((tmp_path / 'checkpoints').glob('*tmp*'))
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  _resumes_to_the_same_metrics(tmp_path, undisturbed)


@pytest.mark.slow
def test_a_metrics_row_that_does_not_fit_stops_the_run(
    tmp_path, monkeypatch, undisturbed):
  write = os.write

  def full_at_step_5(fd, data):
    if b'"step": 5, "split": "train"' in bytes(data):
      raise _no_space()
    return write(fd, data)

  monkeypatch.setattr(os, 'write', full_at_step_5)
  with pytest.raises(errors.DiskFullError,
                     match=f'while writing {tmp_path}/metrics.jsonl; the run '
                           'stopped. Free some space and run the same command'):
    run(_config(), str(tmp_path))
  monkeypatch.setattr(os, 'write', write)
  assert checkpoint_steps(tmp_path) == [2, 4]
  _resumes_to_the_same_metrics(tmp_path, undisturbed)
  steps = [json.loads(line)['step'] for line in
           (tmp_path / 'metrics.jsonl').read_text().splitlines()
           if '"train"' in line]
  assert steps == list(range(1, 9))  # the resumed log has each step once


@pytest.mark.slow
def test_a_summary_that_does_not_fit_is_written_on_the_rerun(
    tmp_path, monkeypatch, undisturbed):
  open_, write = os.open, os.write
  summary_fds, failed = set(), []

  def noting_the_summary(path, *args, **kwargs):
    fd = open_(path, *args, **kwargs)
    if os.path.basename(os.fsdecode(path)) == 'summary.json.tmp':
      summary_fds.add(fd)
    return fd

  def full_for_the_summary(fd, data):
    if fd in summary_fds:
      summary_fds.remove(fd)  # the number is reused once the file closes
      write(fd, b'{"half": ')
      failed.append(fd)
      raise _no_space(tmp_path / 'summary.json.tmp')
    return write(fd, data)

  monkeypatch.setattr(os, 'open', noting_the_summary)
  monkeypatch.setattr(os, 'write', full_for_the_summary)
  with pytest.raises(errors.DiskFullError, match='summary.json; the run '
                                                 'stopped'):
    run(_config(), str(tmp_path))
  monkeypatch.setattr(os, 'open', open_)
  monkeypatch.setattr(os, 'write', write)
  assert failed
  assert not (tmp_path / 'summary.json').exists()
  assert not (tmp_path / 'summary.json.tmp').exists()
  assert checkpoint_steps(tmp_path)[-1] == 8
  _resumes_to_the_same_metrics(tmp_path, undisturbed)
  assert json.loads((tmp_path / 'summary.json').read_text())['steps'] == 8
