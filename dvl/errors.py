"""Errors a person can read: which exceptions are the user's, and how
``launch.py`` shows them.

The rule. An error caused by what the person running dvl gave it (a config
field, a dataset, a file, a workdir, a full disk) is raised by dvl's own
checks as

  * a ``ValueError`` (a bad or inconsistent value) or an ``OSError`` such as
    ``FileNotFoundError`` (a missing, unreadable or corrupt file), raised in
    dvl's own code (``dvl/``, ``experiments/``, ``launch.py``), or
  * a subclass of :class:`UserError`, anywhere (for errors whose natural type
    is neither, e.g. ``checkpoint.CheckpointError``, or a busy workdir),

with a message that says what was wrong and what to do. ``launch.py`` prints
such an error as one message and exits with status 2 (``EXIT_USER_ERROR``),
without a traceback. Everything else (a ``ValueError`` raised inside JAX, a
``TypeError``, an ``AssertionError``...) is a bug and keeps its traceback.
``--verbose`` or ``DVL_DEBUG=1`` shows the traceback of user errors too.

``filter_stderr`` keeps the known-harmless lines that TensorFlow and XLA
print from C++ (which no Python setting silences) out of run logs.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

EXIT_USER_ERROR = 2
DEBUG_ENV = 'DVL_DEBUG'
_REPO = Path(__file__).resolve().parents[1]
_OWN_CODE = (_REPO / 'dvl', _REPO / 'experiments', _REPO / 'launch.py')

# Lines that TensorFlow and XLA print however their log level is set, and
# that say nothing about the run.
HARMLESS_LINES = (
    # Grappler cannot cost CropAndResize (tf.image crops in the pipeline).
    r'Error in PredictCost\(\) for the op',
    r'All log messages before absl::InitializeLog\(\) is called',
    r'oneDNN custom operations are on',
    r'Unable to register cu(DNN|FFT|BLAS) factory',
    r'computation placer already registered',
    r'`FeatureConnector\.dtype` is deprecated',
    r'Using custom data configuration',
)


class UserError(Exception):
  """Base of dvl's errors about its input whose type is not a ValueError or
  an OSError; the message says what was wrong and what to do."""


class DiskFullError(UserError, OSError):
  """A write failed for lack of space (``errno.ENOSPC``)."""

  def __init__(self, message: str):
    super().__init__(errno.ENOSPC, message)

  def __str__(self) -> str:
    return self.strerror


def require(ok: bool, message: str) -> None:
  """Raises ``ValueError(message)`` unless ``ok``: the check of a value the
  user gave, whose message says what was wrong and what to do."""
  if not ok:
    raise ValueError(message)


def debugging() -> bool:
  """Whether ``DVL_DEBUG`` asks for tracebacks of user errors too."""
  return os.environ.get(DEBUG_ENV, '').lower() not in ('', '0', 'false', 'no')


def _raised_in_own_code(error: BaseException) -> bool:
  """Whether the innermost frame of ``error``'s traceback is dvl's code."""
  tb = error.__traceback__
  if tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  path = Path(tb.tb_frame.f_code.co_filename).resolve()
  return any(path == own or own in path.parents for own in _OWN_CODE)


def is_user_error(error: BaseException) -> bool:
  """Whether ``error`` is the user's to fix (the rule in the module doc)."""
  if isinstance(error, UserError):
    return True
  return (isinstance(error, (ValueError, OSError))
          and _raised_in_own_code(error))


def disk_full(error: BaseException) -> bool:
  """Whether ``error``, or an error it was raised from, is ENOSPC."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    error = error.__cause__ or error.__context__
  return False


def message(error: BaseException) -> str:
  """The one message shown for a user error."""
  text = str(error).strip() or type(error).__name__
  if isinstance(error, OSError) and not isinstance(error, DiskFullError):
    if error.strerror and error.filename and str(error.filename) not in text:
      text = f'{error.strerror}: {error.filename}'
  return (f'error: {text}\n(add --verbose, or set {DEBUG_ENV}=1, to see the '
          'traceback)')


def exit_with(error: BaseException, *, verbose: bool = False) -> None:
  """Prints a user error as one message and exits with status 2; re-raises
  a bug, or any error when ``verbose`` or ``DVL_DEBUG`` asks for it."""
  if verbose or debugging() or not is_user_error(error):
    raise error
  sys.stdout.flush()
  print(message(error), file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def config_file_error(text: str) -> str | None:
  """The last line of a config file's failure when it is a user error.

  ml_collections reports an exception in ``get_config`` as text holding its
  traceback; its last line is ``ValueError: ...``. Returns that message for
  a ValueError or FileNotFoundError, None for anything else (a bug in the
  config file, whose traceback stays).
  """
  lines = [line for line in text.strip().splitlines() if line.strip()]
  if not lines:
    return None
  match = re.match(r'\s*(ValueError|FileNotFoundError): (.*)', lines[-1])
  return match[2] if match else None


def load_json(path: Path, fix: str):
  """The JSON in ``path``; a truncated or garbled file is a ValueError that
  names it and says what to do (``fix``). Nothing is changed on disk."""
  text = Path(path).read_text(errors='replace')
  try:
    return json.loads(text)
  except ValueError as error:
    raise ValueError(f'{path} is not valid JSON ({error}); it may be '
                     f'truncated or corrupt. {fix}') from None


def filter_stderr(patterns=HARMLESS_LINES) -> None:
  """Routes this process's stderr (file descriptor 2, so C++ logs too)
  through a child that drops lines matching ``patterns``.

  The child ignores SIGINT and SIGTERM (Ctrl-C reaches a whole process
  group) and exits when every writer has closed the pipe, so nothing is
  lost when this process dies.
  """
  original = os.dup(2)
  child = subprocess.Popen(
      [sys.executable, '-I', __file__, *patterns], stdin=subprocess.PIPE,
      stdout=original, close_fds=True)
  os.close(original)
  sys.stderr.flush()
  os.dup2(child.stdin.fileno(), 2)
  child.stdin.close()


def _forward(source: int, sink: int, patterns: list[str]) -> None:
  """Copies ``source`` to ``sink`` line by line (a carriage return ends a
  line too, for progress bars), leaving out lines matching ``patterns``."""
  harmless = re.compile('|'.join(patterns)) if patterns else None
  pending = b''
  while True:
    chunk = os.read(source, 1 << 16)
    pending += chunk
    parts = re.split(rb'(?<=[\r\n])', pending)
    pending = b'' if not chunk else parts.pop()
    for part in parts:
      if part and not (harmless and harmless.search(
          part.decode(errors='replace'))):
        os.write(sink, part)
    if not chunk:
      return


if __name__ == '__main__':
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  _forward(sys.stdin.fileno(), sys.stdout.fileno(), sys.argv[1:])
