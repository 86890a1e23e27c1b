"""The benchmark's peer: the same network on Keras 3 + TensorFlow.

The peer runs in a child process of its own (``PeerProcess``), driven over
a pipe, so that each framework has a process as a user would give it. With
both in one process, TensorFlow's thread pools shared the two cores with
XLA's: dvl's train steps measured 12-16% slower in a run beside the peer
than in a run without it (EfficientNet-B0 7.1 against 8.1 img/s,
MobileNetV1 11.6 against 13.8), and the peer was slower too.
"""

import multiprocessing
import os
import time
import traceback

import numpy as np

def keras_peer(name: str) -> str | None:
  """The ``keras.applications`` constructor of the same network as the
  registered model ``name`` (its spec's Keras peer), or None."""
  from dvl import models  # pylint: disable=import-outside-toplevel
  keras = models.get_spec(name).keras
  return keras.application if keras is not None and keras.peer else None


def time_calls(fn, calls: int) -> float:
  """Seconds per call of ``fn`` (which must block until its work is done);
  ``calls`` may be 0 (no warm-up)."""
  start = time.perf_counter()
  for _ in range(calls):
    fn()
  return (time.perf_counter() - start) / max(calls, 1)


def import_keras():
  """Keras 3 on the TensorFlow backend (set before Keras is first imported)."""
  os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import keras  # pylint: disable=g-import-not-at-top
  if keras.backend.backend() != 'tensorflow':
    raise RuntimeError(
        f'Keras runs on {keras.backend.backend()!r} in this process; the '
        'peer is Keras on TensorFlow: unset KERAS_BACKEND or set it to '
        'tensorflow')
  return keras


class KerasPeer:
  """The same network from keras.applications, trained with SGD through
  ``train_on_batch`` and queried with ``predict_on_batch``."""

  def __init__(self, application: str, side: int):
    keras = import_keras()
    self.model = getattr(keras.applications, application)(
        weights=None, input_shape=(side, side, 3), classes=1000,
        classifier_activation=None)
    self.model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    self.side = side
    self.batches = {}

  def _data(self, batch: int):
    if batch not in self.batches:
      rng = np.random.default_rng(0)
      x = rng.normal(size=(batch, self.side, self.side, 3)).astype(np.float32)
      self.batches[batch] = (x, rng.integers(0, 1000, batch))
    return self.batches[batch]

  def train_seconds(self, batch: int, calls: int) -> float:
    """Seconds per train step at ``batch`` (``calls`` steps timed)."""
    x, y = self._data(batch)
    return time_calls(lambda: self.model.train_on_batch(x, y), calls)

  def infer_seconds(self, batch: int, calls: int) -> float:
    """Seconds per inference call at ``batch``."""
    x, _ = self._data(batch)
    return time_calls(lambda: self.model.predict_on_batch(x), calls)


def _serve(conn, application: str, side: int) -> None:
  """The child process: builds the peer, then answers ``(method, args)``
  requests with ``('ok', value)`` or ``('error', traceback)``."""
  try:
    peer = KerasPeer(application, side)
    conn.send(('ok', None))
  except Exception:  # pylint: disable=broad-except
    conn.send(('error', traceback.format_exc()))
    return
  while True:
    request = conn.recv()
    if request is None:
      return
    method, args = request
    try:
      conn.send(('ok', getattr(peer, method)(*args)))
    except Exception:  # pylint: disable=broad-except
      conn.send(('error', traceback.format_exc()))


class PeerProcess:
  """A ``KerasPeer`` in a child process; same methods, same answers."""

  def __init__(self, name: str, side: int):
    application = keras_peer(name)
    if application is None:
      raise ValueError(f'{name} has no Keras peer (its spec names none)')
    context = multiprocessing.get_context('spawn')
    self.conn, child = context.Pipe()
    self.process = context.Process(target=_serve,
                                   args=(child, application, side),
                                   daemon=True)
    self.process.start()
    child.close()
    self.name = name
    try:
      self._answer()
    except RuntimeError:
      self.close()
      raise

  def _answer(self):
    try:
      status, value = self.conn.recv()
    except EOFError:
      raise RuntimeError(
          f'the Keras peer process for {self.name} died (exit code '
          f'{self.process.exitcode}); run with peer=none to benchmark dvl '
          'alone') from None
    if status == 'error':
      raise RuntimeError(f'the Keras peer for {self.name} failed:\n{value}')
    return value

  def _call(self, method: str, *args):
    self.conn.send((method, args))
    return self._answer()

  def train_seconds(self, batch: int, calls: int) -> float:
    return self._call('train_seconds', batch, calls)

  def infer_seconds(self, batch: int, calls: int) -> float:
    return self._call('infer_seconds', batch, calls)

  def close(self) -> None:
    if self.process.is_alive():
      try:
        self.conn.send(None)
      except (BrokenPipeError, OSError):
        pass
      self.process.join(timeout=30)
    if self.process.is_alive():
      self.process.kill()
    self.conn.close()
