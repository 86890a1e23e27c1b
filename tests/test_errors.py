"""Errors a person can read: launch.py prints an error in its input as one
message with status 2, keeps the traceback of bugs, and keeps known-harmless
TensorFlow and XLA lines out of the log (dvl.errors)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from dvl import config_args, errors
from dvl.data import npz_folder
from train_runs import QUICK, REPO, launch, run_env


@pytest.fixture
def env(tmp_path):
  return run_env(tmp_path / 'tfds', tmp_path / 'cache')


@pytest.mark.parametrize('overrides, message', [
    (('--config.train.stepz=3',),
     """unknown config field 'stepz' in --config.train.stepz=3. Did you mean "steps" """),
    (('--config.train.steps=abc',),
     "flag --config.train.steps=abc: invalid literal for int()"),
    (('--config.input.dataset=cifar11',),
     "unknown dataset 'cifar11'. Did you mean cifar10_1, cifar10"),
    (('--config.input.dataset=npz_folder',
      '--config.input.path=/nonexistent/folder'),
     "no folder of numpy archives at '/nonexistent/folder'"),
    (('--config.model.name=resnet5',), "unknown model 'resnet5'; choose one"),
    (('--config.job=trian',), "unknown job 'trian'; choose one of: "),
])
def test_a_user_error_is_one_message_and_status_2(tmp_path, env, overrides,
                                                  message):
  result = launch(QUICK, tmp_path / 'run', env, *overrides)
  assert result.returncode == errors.EXIT_USER_ERROR, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.startswith('error: ')]
  assert len(lines) == 1 and message.strip() in lines[0], result.stderr


def test_a_missing_config_file_or_argument_is_one_message(tmp_path, env):
  result = launch('experiments/nope.py', tmp_path / 'run', env)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert "No such file or directory: 'experiments/nope.py'" in result.stderr
  result = launch('experiments/quickstart.py:runlokal', tmp_path / 'run', env)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert "unknown config argument 'runlokal'" in result.stderr


def test_verbose_and_dvl_debug_show_the_traceback(tmp_path, env):
  result = launch(QUICK, tmp_path / 'run', env, '--config.model.name=resnet5',
                  '--verbose')
  assert result.returncode not in (0, 2)
  assert 'Traceback' in result.stderr and "unknown model 'resnet5'" in (
      result.stderr)
  result = launch(QUICK, tmp_path / 'run', dict(env, DVL_DEBUG='1'),
                  '--config.model.name=resnet5')
  assert 'Traceback' in result.stderr


def test_a_bug_keeps_its_traceback(tmp_path, env):
  config = tmp_path / 'buggy.py'
  config.write_text('def get_config(arg=None):\n  return None + 1\n')
  result = launch(str(config), tmp_path / 'run', env)
  assert result.returncode not in (0, 2)
  assert 'Traceback' in result.stderr and 'TypeError' in result.stderr


def test_harmless_tensorflow_lines_are_kept_out_and_the_rest_kept():
  code = ('import os\nfrom dvl import errors\nerrors.filter_stderr()\n'
          'os.write(2, b"W0000 op_level_cost_estimator.cc:699] Error in '
          'PredictCost() for the op: op: CropAndResize\\n")\n'
          'os.write(2, b"a real problem\\n50%\\r100%\\r")\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, timeout=60)
  assert result.stderr == b'a real problem\n50%\r100%\r'


def test_the_rule_tells_user_errors_from_bugs(tmp_path):
  with pytest.raises(ValueError) as bad_value:
    config_args.parse_arg('runlokal', runlocal=False)
  assert errors.is_user_error(bad_value.value)
  with pytest.raises(FileNotFoundError) as missing:
    npz_folder.split_files(tmp_path / 'absent')
  assert errors.is_user_error(missing.value)
  assert errors.is_user_error(errors.DiskFullError('disk full'))
  with pytest.raises(ValueError) as elsewhere:  # raised inside numpy
    np.zeros(3).reshape(2)
  assert not errors.is_user_error(elsewhere.value)
  with pytest.raises(AttributeError) as bug:  # a wrong call: a bug
    config_args.parse_arg(3, runlocal=False)
  assert not errors.is_user_error(bug.value)
