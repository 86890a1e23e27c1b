"""One writer per workdir (dvl.workdir_lock), and a train run refusing a
second one through launch.py."""

import json
import socket
import subprocess
import sys
import textwrap

import pytest

from dvl import workdir_lock
from train_runs import QUICK, REPO, launch, run_env

HOLD = textwrap.dedent('''
    import sys, time
    from dvl import workdir_lock
    with workdir_lock.hold(sys.argv[1], 'sweep'):
      print('held', flush=True)
      time.sleep(120)
''')


@pytest.fixture
def other_holder(tmp_path):
  """A second process holding ``tmp_path / 'run'``."""
  process = subprocess.Popen([sys.executable, '-c', HOLD, str(tmp_path / 'run')],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == 'held'
  yield process
  process.kill()
  process.wait()


def test_a_second_holder_is_refused_with_the_holders_host_and_pid(
    tmp_path, other_holder):
  with pytest.raises(workdir_lock.WorkdirBusyError) as error:
    with workdir_lock.hold(tmp_path / 'run', 'train'):
      pass
  message = str(error.value)
  assert f'pid {other_holder.pid} on host {socket.gethostname()}' in message
  assert 'sweep' in message
  record = json.loads((tmp_path / 'run' / workdir_lock.LOCK_NAME).read_text())
  assert record['pid'] == other_holder.pid


def test_the_lock_is_released_and_its_file_removed(tmp_path):
  with workdir_lock.hold(tmp_path, 'train') as path:
    record = json.loads(path.read_text())
    assert (record['what'], record['host']) == ('train', socket.gethostname())
  assert not path.exists()
  with workdir_lock.hold(tmp_path, 'train'):
    pass


def test_a_dead_holders_lock_on_this_host_is_taken_over(tmp_path, caplog):
  gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  pid = int(gone.stdout)
  record = dict(host=socket.gethostname(), pid=pid, what='train',
                started='2020-01-01T00:00:00+00:00')
  (tmp_path / workdir_lock.LOCK_NAME).write_text(json.dumps(record))
  with workdir_lock.hold(tmp_path, 'train') as path:
    assert json.loads(path.read_text())['pid'] != pid
  assert f'pid {pid} on host {socket.gethostname()}' in caplog.text
  assert 'took over the lock' in caplog.text


def test_a_lock_left_on_another_host_is_not_taken_over(tmp_path):
  record = dict(host='elsewhere', pid=1, what='train', started='2020-01-01')
  (tmp_path / workdir_lock.LOCK_NAME).write_text(json.dumps(record))
  with pytest.raises(workdir_lock.WorkdirBusyError,
                     match='pid 1 on host elsewhere.*delete'):
    with workdir_lock.hold(tmp_path, 'train'):
      pass


def test_a_sweep_and_its_trials_hold_their_own_directories(tmp_path):
  with workdir_lock.hold(tmp_path, 'sweep'):
    with workdir_lock.hold(tmp_path / 'trials' / '0', 'train'):
      with workdir_lock.hold(tmp_path, 'sweep'):  # nested: same process
        pass
    assert (tmp_path / workdir_lock.LOCK_NAME).exists()
  assert not (tmp_path / workdir_lock.LOCK_NAME).exists()


def test_a_train_run_on_a_held_workdir_exits_with_one_message(
    tmp_path, other_holder):
  env = run_env(tmp_path / 'tfds', tmp_path / 'cache')
  result = launch(QUICK, tmp_path / 'run', env)
  assert result.returncode == 2, result.stderr[-3000:]
  assert f'pid {other_holder.pid} on host' in result.stderr
  assert 'Traceback' not in result.stderr
