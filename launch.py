"""dvl's one entry point: ``python launch.py --config FILE[:ARGS] --workdir DIR``.

The config file's ``get_config(arg)`` builds a locked ml-collections config;
``--config.a.b=value`` overrides a field (a misspelt key is an error) and
``config.job`` names the job that runs it.
"""

import importlib
import os

from dvl import host_memory

# Before any import starts a thread: XLA's per-step temporaries then stay in
# the heap instead of being faulted in afresh every step (dvl.host_memory).
host_memory.keep_freed_memory()

# Imports JAX, so after the above; before JAX starts its backend, which reads
# the flags (dvl.lowering).
from dvl import lowering  # pylint: disable=g-import-not-at-top

lowering.add_cpu_xla_flags()

# TensorFlow (the TFDS reader) reads this when it loads: quiet its C++
# warnings before anything imports it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags
from ml_collections import config_flags

JOBS = {
    'model_table': 'dvl.model_table',
    'train': 'dvl.train',
    'lr_range': 'dvl.lr_range',
    'import_weights': 'dvl.convert',
    'benchmark': 'dvl.benchmark',
    'imagenet_eval': 'dvl.imagenet_eval',
    'visualize': 'dvl.visualize',
    'scaling_search': 'dvl.sweep.search',
    'scaling_report': 'dvl.sweep.report',
    'scaling_table3': 'dvl.sweep.table3',
}

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. experiments/model_table.py',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the outputs.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  if config.job not in JOBS:
    raise app.UsageError(f'unknown job {config.job!r}; choose one of: '
                         f'{", ".join(JOBS)}')
  importlib.import_module(JOBS[config.job]).run(config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
