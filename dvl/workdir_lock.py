"""One writer per workdir: ``with hold(workdir, 'train'): ...``.

The holder keeps an exclusive ``flock`` on ``workdir/dvl.lock``, a JSON record
of its host, pid, start time and what it is (``'train'``, ``'sweep'``). A
second holder is refused with :class:`WorkdirBusyError`, which names them.
The kernel drops the lock when its process dies, however it dies, and the
next holder finds the dead process's record: when that process was on this
host and is gone, the lock is taken over with a warning in the log. A record
from another host whose lock is free is refused too, since its process
cannot be checked from here; the message says which file to delete.

Holds are per directory: a sweep holding ``WORKDIR`` while its trials train in
``WORKDIR/trials/<id>`` takes two locks that never clash. Holding the same
directory again in the same process (nested ``with``) is allowed and does
nothing.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Iterator

from absl import logging

from dvl import errors

LOCK_NAME = 'dvl.lock'
_HELD = {}  # resolved workdir -> (pid of the holder, nesting depth)


class WorkdirBusyError(errors.UserError):
  """Another process holds the workdir."""


def _record(what: str) -> dict:
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': datetime.datetime.now().astimezone().isoformat(
              timespec='seconds'),
          'what': what}


def _read(fd: int) -> dict | None:
  """The record in an open lock file; None when it is empty or torn."""
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 1 << 16).decode(errors='replace')
  try:
    record = json.loads(text)
  except ValueError:
    return None
  return record if isinstance(record, dict) else None


def _describe(record: dict | None) -> str:
  if not record:
    return 'another process'
  return (f"{record.get('what', 'a run')} (pid {record.get('pid')} on host "
          f"{record.get('host')}, started {record.get('started')})")


def _process_gone(record: dict) -> bool:
  """Whether the record's process is gone, judged on this host only."""
  if record.get('host') != socket.gethostname():
    return False
  try:
    os.kill(int(record['pid']), 0)
  except ProcessLookupError:
    return True
  except (PermissionError, KeyError, TypeError, ValueError):
    return False
  return _started_after(int(record['pid']), record.get('started'))


def _started_after(pid: int, started: str | None) -> bool:
  """Whether ``pid`` is a newer process than the record's (a reused pid)."""
  try:
    since = datetime.datetime.fromisoformat(started).timestamp()
    ticks = int(Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1]
                .split()[19])
    uptime = float(Path('/proc/uptime').read_text().split()[0])
  except (OSError, TypeError, ValueError, IndexError):
    return False
  now = datetime.datetime.now().timestamp()
  process_start = now - uptime + ticks / os.sysconf('SC_CLK_TCK')
  return process_start > since + 2  # seconds of slack for rounding


def _lock(path: Path, workdir: Path, what: str) -> int:
  """Opens and locks ``path``; returns the descriptor holding the lock."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read(fd)
      os.close(fd)
      raise WorkdirBusyError(
          f'workdir {workdir} is in use by {_describe(holder)}. Wait for it '
          'to end or stop it, or choose another workdir.') from None
    # A holder that released the lock may have deleted the file meanwhile:
    # lock the file that is at the path now.
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return fd
    os.close(fd)


def _take(fd: int, path: Path, workdir: Path, what: str) -> None:
  """Writes this process's record, over a dead holder's if there is one."""
  previous = _read(fd)
  if previous and not _process_gone(previous):
    os.close(fd)
    raise WorkdirBusyError(
        f'workdir {workdir} holds the lock record of {_describe(previous)}, '
        'whose process cannot be checked from this host. If that run is '
        f'over, delete {path} and start again.')
  if previous:
    logging.warning('took over the lock on %s from %s, whose process is '
                    'gone', workdir, _describe(previous))
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, (json.dumps(_record(what)) + '\n').encode())
  os.fsync(fd)


@contextlib.contextmanager
def hold(workdir: str | os.PathLike, what: str) -> Iterator[Path]:
  """Holds ``workdir`` (created if missing) for ``what`` while the block
  runs; yields the lock file's path. Raises WorkdirBusyError when another
  process holds it."""
  workdir = Path(workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_NAME
  holder, depth = _HELD.get(workdir, (None, 0))
  if holder == os.getpid():
    _HELD[workdir] = (holder, depth + 1)
    try:
      yield path
    finally:
      _HELD[workdir] = (holder, depth)
    return
  fd = _lock(path, workdir, what)
  _take(fd, path, workdir, what)
  _HELD[workdir] = (os.getpid(), 1)
  try:
    yield path
  finally:
    del _HELD[workdir]
    path.unlink(missing_ok=True)
    os.close(fd)
