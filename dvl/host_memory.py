"""Host memory reuse for XLA on CPU.

XLA's CPU runtime allocates a step's temporaries (gigabytes for a train step
at batch 16 and 224x224) as one block per call, and frees it at the end.
glibc hands a block that large to ``mmap`` and gives it back with
``munmap``, so every step faults in every page of it again: about 940,000
page faults and 2 s of kernel time per EfficientNet-B0 step on two cores,
as much as the arithmetic. Kept in one heap that is never trimmed, the
block is reused from step to step with no faults.

``keep_freed_memory()`` sets that up through ``mallopt``: one malloc arena
(threads beyond the first fall back to ``mmap`` for large blocks whatever
the other settings), no ``mmap`` for large blocks, no trimming of the heap.
It also exports the same settings as glibc's environment variables, so
worker processes started later (sweep pools, Ray workers) get them from
their first allocation. The cost: the process keeps its peak host memory
until it exits, as accelerator runtimes do with device memory.

``launch.py`` calls it before anything else starts a thread. Set
``DVL_KEEP_FREED_MEMORY=0`` to leave the C library's defaults alone.
"""

import ctypes
import ctypes.util
import os

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# The same settings as environment variables, read by glibc at start-up.
GLIBC_ENV = {
    'MALLOC_ARENA_MAX': '1',
    'MALLOC_MMAP_MAX_': '0',
    'MALLOC_TRIM_THRESHOLD_': str(2 ** 62),
}

OPT_OUT = 'DVL_KEEP_FREED_MEMORY'


def _glibc():
  """The C library when it is glibc (it has ``mallopt``), else None."""
  name = ctypes.util.find_library('c')
  if name is None:
    return None
  try:
    libc = ctypes.CDLL(name)
  except OSError:
    return None
  if not hasattr(libc, 'mallopt') or not hasattr(libc, 'gnu_get_libc_version'):
    return None
  return libc


def keep_freed_memory() -> bool:
  """Makes freed host memory stay in the heap for reuse (see the module
  docstring). Returns whether the settings were applied: False on a C
  library other than glibc, or when ``DVL_KEEP_FREED_MEMORY=0``.

  Call it first thing in a process: the one-arena limit only holds for
  threads that have not allocated yet.
  """
  if os.environ.get(OPT_OUT, '1').strip().lower() in ('0', 'false', 'no'):
    return False
  libc = _glibc()
  if libc is None:
    return False
  # A trim threshold of -1 reads as the largest size_t: never trim.
  applied = all(libc.mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
  if applied:
    for key, value in GLIBC_ENV.items():
      os.environ.setdefault(key, value)
  return applied
