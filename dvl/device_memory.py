"""How much memory a JAX device has free: the one place that asks.

Used by the population (does a vmapped step fit?) and by the device input
pipeline (does the dataset fit?).
"""

from pathlib import Path

import jax


def free_memory_bytes(device=None) -> int | None:
  """Free memory of ``device`` (an accelerator's, or the host's for a CPU);
  None when the backend does not say."""
  device = device or jax.devices()[0]
  if device.platform == 'cpu':
    try:
      for line in Path('/proc/meminfo').read_text().splitlines():
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
    except OSError:
      return None
    return None
  stats = device.memory_stats() or {}
  if 'bytes_limit' not in stats:
    return None
  return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
