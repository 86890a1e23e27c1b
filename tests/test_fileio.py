"""Atomic writes: the target holds the old content or the new, never a torn
mix, and a failed write leaves no temporary file behind."""

import errno
import os

import pytest

from dvl import fileio


def test_write_atomic_creates_and_replaces(tmp_path):
  path = tmp_path / 'summary.json'
  fileio.write_atomic(path, '{"steps": 4}\n')
  fileio.write_atomic(path, '{"steps": 8}\n')
  assert path.read_text() == '{"steps": 8}\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['summary.json']


def test_write_atomic_writes_text_as_utf8_and_bytes_as_they_are(tmp_path):
  fileio.write_atomic(tmp_path / 'report.md', 'val — 84.31 ± 1.20')
  fileio.write_atomic(tmp_path / 'blob', b'\x00\xff')
  assert (tmp_path / 'report.md').read_bytes() == (
      'val — 84.31 ± 1.20'.encode())
  assert (tmp_path / 'blob').read_bytes() == b'\x00\xff'


def test_write_atomic_syncs_the_file_and_its_directory(tmp_path, monkeypatch):
  synced = []
  fsync = os.fsync

  def noting_fsync(fd):
    synced.append(os.path.realpath(f'/proc/self/fd/{fd}'))
    fsync(fd)

  monkeypatch.setattr(os, 'fsync', noting_fsync)
  fileio.write_atomic(tmp_path / 'config.json', '{}\n')
  directory = os.path.realpath(tmp_path)
  assert synced == [os.path.join(directory, 'config.json.tmp'), directory]


def test_new_files_get_the_umask_permissions(tmp_path):
  umask = os.umask(0o022)
  try:
    fileio.write_atomic(tmp_path / 'results.csv', 'trial\n')
  finally:
    os.umask(umask)
  assert (tmp_path / 'results.csv').stat().st_mode & 0o777 == 0o644


def test_a_write_that_does_not_fit_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / 'trials.csv'
  fileio.write_atomic(path, 'old\n')
  write = os.write

  def full_after_four_bytes(fd, data):
    write(fd, bytes(data)[:4])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, 'write', full_after_four_bytes)
  with pytest.raises(OSError) as error:
    fileio.write_atomic(path, 'new and longer\n')
  assert error.value.errno == errno.ENOSPC
  assert path.read_text() == 'old\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['trials.csv']


def test_short_writes_are_continued(tmp_path, monkeypatch):
  write = os.write
  monkeypatch.setattr(os, 'write', lambda fd, data: write(fd, data[:3]))
  fileio.write_atomic(tmp_path / 'metrics.jsonl', '{"step": 1}\n')
  assert (tmp_path / 'metrics.jsonl').read_text() == '{"step": 1}\n'
