"""dvl's one entry point: ``python launch.py --config FILE[:ARGS] --workdir DIR``.

The config file's ``get_config(arg)`` builds a locked ml-collections config;
``--config.a.b=value`` overrides a field (a misspelt key is an error) and
``config.job`` names the job that runs it. An error in what it was given
(a config typo, a missing dataset, a bad value) prints one message and exits
with status 2; ``--verbose`` (or ``DVL_DEBUG=1``) shows its traceback
(``dvl.errors`` has the rule).
"""

import ast
import os
import sys

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

from dvl import errors, jobs  # pylint: disable=g-import-not-at-top


_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. experiments/model_table.py',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the outputs.')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Show the traceback of errors in the input too (as '
    f'{errors.DEBUG_ENV}=1 does).')
flags.mark_flags_as_required(['config', 'workdir'])


def verbose(argv) -> bool:
  return errors.debugging() or '--verbose' in argv


def parse_flags(argv):
  """absl's flag parsing; a mistake on the command line or in a config
  file's arguments is one message and status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    text = str(error)
    if 'Error whilst parsing config file' in text:
      text = errors.config_file_error(text)
      if text is None:  # A bug in the config file: keep its traceback.
        raise
    else:
      text += ('. Usage: python launch.py --config FILE[:ARGS] --workdir DIR '
               '[--config.FIELD=VALUE ...]')
    shown = ValueError(text)
  except AttributeError as error:  # A misspelt --config.a.b override.
    text = str(error)
    if text[:1] in '\'"':
      text = ast.literal_eval(text)
    key, _, hint = text.partition('\n')
    where = [a for a in argv if a.startswith('--config.')
             and f'.{key.strip(chr(39))}' in a.split('=')[0]]
    shown = ValueError(f'unknown config field {key} in '
                       f'{where[0] if where else "a --config override"}. '
                       f'{hint}'.strip())
  if verbose(argv):
    raise shown
  print(errors.message(shown), file=sys.stderr, flush=True)
  sys.exit(errors.EXIT_USER_ERROR)


def load_config():
  """The parsed config; a config file that cannot be read is a user error."""
  config = _CONFIG.value
  try:
    config.get('job')  # A file that failed to load raises on first use.
  except OSError as error:  # ml_collections' report, the reason last.
    reason = str(error).strip().splitlines()[-1].strip()
    raise FileNotFoundError(f'cannot load the config file: {reason}. Pass an '
                            'experiments/NAME.py file as --config') from None
  return config


def main(argv):
  try:
    if len(argv) > 1:
      raise ValueError(f'unexpected arguments: {argv[1:]}; pass options as '
                       '--name=value')
    config = load_config()
    jobs.run(config, _WORKDIR.value)
  except Exception as error:  # pylint: disable=broad-except
    errors.exit_with(error, verbose=_VERBOSE.value)


if __name__ == '__main__':
  if not verbose(sys.argv):
    errors.filter_stderr()
  app.run(main, flags_parser=parse_flags)
