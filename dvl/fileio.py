"""Files that a kill or a power cut leaves either old or new, never torn.

``write_atomic`` writes ``<name>.tmp`` beside the target, syncs it to disk,
renames it over the target and syncs the directory, so the new content and
its name survive a crash once it returns. One process writes a given path at
a time (a run holds its workdir's lock, a sweep's driver alone writes the
sweep's files), so the temporary name is fixed: a write interrupted by a
kill leaves at most that one file, which the next write of the path replaces.
"""

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
  """Replaces ``path`` with ``data`` (text is written as UTF-8) durably.

  On an error (a full disk, say) the temporary file is removed and ``path``
  keeps its old content; the error propagates.
  """
  path = Path(path)
  tmp = path.with_name(path.name + '.tmp')
  if isinstance(data, str):
    data = data.encode()
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
  try:
    try:
      _write_all(fd, data)
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  fsync_directory(path.parent)


def fsync_directory(directory: str | os.PathLike) -> None:
  """Syncs ``directory``'s entries, so a file created or renamed in it
  survives a crash."""
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
  """``os.write`` until all of ``data`` is written (it may write less)."""
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]
