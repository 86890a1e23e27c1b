"""Host memory reuse: the second call of a jitted function whose temporaries
are large must not fault its pages in again."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dvl import host_memory

REPO = Path(__file__).resolve().parents[1]

# A 4096x4096 float32 intermediate (64 MiB) that XLA cannot fuse away: the
# product of two matrix products. Prints the minor page faults of the
# second and third calls, and what keep_freed_memory() returned.
_PROBE = """
import json, resource, sys
from dvl import host_memory
applied = host_memory.keep_freed_memory()
import jax, jax.numpy as jnp
n = 4096
x = jnp.ones((n, n), jnp.float32) / n
f = jax.jit(lambda x: jnp.sum((x @ x) @ x))
f(x).block_until_ready()
faults = []
for _ in range(2):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({'applied': applied, 'faults': faults}))
"""

# Pages of the 64 MiB intermediate (4 KiB pages).
_TEMP_PAGES = 4096 * 4096 * 4 // 4096


def _probe(opt_out: bool) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in host_memory.GLIBC_ENV and k != host_memory.OPT_OUT}
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO),
                                                    env.get('PYTHONPATH')]))
  env['JAX_PLATFORMS'] = 'cpu'
  if opt_out:
    env[host_memory.OPT_OUT] = '0'
  out = subprocess.run([sys.executable, '-c', _PROBE], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


glibc_only = pytest.mark.skipif(host_memory._glibc() is None,  # pylint: disable=protected-access
                                reason='mallopt is glibc-only')


@glibc_only
def test_reused_temporaries_are_not_faulted_in_again():
  kept = _probe(opt_out=False)
  assert kept['applied'] is True
  # The C library's defaults fault in the whole intermediate on every call;
  # kept in the heap it costs (next to) nothing after the first call.
  assert max(kept['faults']) < _TEMP_PAGES // 10, kept


@pytest.mark.slow
@glibc_only
def test_opting_out_keeps_the_c_library_defaults():
  default = _probe(opt_out=True)
  assert default['applied'] is False
  assert min(default['faults']) > _TEMP_PAGES // 2, default


@glibc_only
def test_settings_are_exported_for_worker_processes(monkeypatch):
  for key in (*host_memory.GLIBC_ENV, host_memory.OPT_OUT):
    monkeypatch.delenv(key, raising=False)
  assert host_memory.keep_freed_memory()
  for key, value in host_memory.GLIBC_ENV.items():
    assert os.environ[key] == value
