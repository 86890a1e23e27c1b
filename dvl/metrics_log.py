"""Metric logging for training runs: TensorBoard, JSON lines and the console.

Everything a run writes lives in its workdir::

    workdir/metrics.jsonl        one JSON object per line:
                                 {"step": 200, "split": "train", "time": 1.7e9,
                                  "loss": 0.41, "accuracy": 0.88, ...}
    workdir/tensorboard/<split>/ TensorBoard event files, one run per split, so
                                 train and val curves of a tag overlay
    workdir/config.json          the resolved config
    workdir/model_info.json      parameter, MAC and activation counts, with
                                 the convention
    workdir/summary.json         the final results

``metrics.jsonl`` is append-only and safe across kills and resumes: every row
is one ``os.write`` of a complete line, and a writer created with
``start_step=k`` first drops rows with ``step > k`` and any torn last line, so
a resumed run never duplicates rows. The TensorBoard event files are cut back
to step ``k`` the same way.

On a terminal the console shows a tqdm bar; otherwise (log files, CI) it
prints one line per logging interval, in this format::

    step 200/1000 loss 0.4127 acc 0.8812 img/s 812 eta 1m12s

Scalars print with 4 significant digits, images/s as an integer, and the ETA
as ``45s``, ``1m12s`` or ``2h03m``. The first step is timed on its own
(``compile_s``: tracing and XLA compilation dominate it) and excluded from
the steady-state images/s.
"""

import contextlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, TextIO

import jax
import numpy as np
import tqdm
from tensorboard.compat.proto import event_pb2

from dvl import errors, fileio

_RESERVED = ("step", "split", "time")
_LINE_KEYS = (("loss", "loss"), ("accuracy", "acc"), ("acc", "acc"))
_CACHE_ENV = "DVL_JAX_CACHE"
_DEFAULT_CACHE = Path("~/.cache/dvl/jax_cache")


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str:
  """Turns on JAX's persistent compilation cache; returns its directory.

  The directory is ``path``, else ``$DVL_JAX_CACHE``, else
  ``~/.cache/dvl/jax_cache``. Every compilation is cached (the minimum compile
  time is set to 0 s so that fast CPU compiles count too). Calling it again is
  a no-op; asking for another directory once one is set warns and keeps the
  first, because JAX opens the cache only once per process.
  """
  chosen = path or os.environ.get(_CACHE_ENV) or _DEFAULT_CACHE
  directory = str(Path(chosen).expanduser().resolve())
  current = jax.config.jax_compilation_cache_dir
  if current and current != directory:
    warnings.warn(f"the JAX compilation cache is already at {current}; "
                  f"keeping it instead of {directory}", stacklevel=2)
    return current
  Path(directory).mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


def format_duration(seconds: float) -> str:
  """``45s``, ``1m12s`` or ``2h03m``."""
  if not math.isfinite(seconds):
    return "?"
  seconds = max(0, round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_summary(results: Mapping[str, Any], *, markdown: bool = False
                   ) -> str:
  """Aligned ``name  value`` lines, or a two-column markdown table."""
  cells = [(str(k), _format_value(v)) for k, v in results.items()]
  if markdown:
    rows = ["| metric | value |", "| --- | --- |"]
    rows += [f"| {k} | {v} |" for k, v in cells]
    return "\n".join(rows)
  width = max((len(k) for k, _ in cells), default=0)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in cells)


def _format_value(value: Any) -> str:
  """4 significant digits, but large numbers in full (812345, not 8.123e+05)."""
  if isinstance(value, float | np.floating):
    return f"{value:.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"
  return str(value)


def truncate_jsonl(path: str | os.PathLike, *, after_step: int) -> int:
  """Drops rows with ``step > after_step`` and unparsable (torn) rows.

  Rewrites the file atomically (``fileio.write_atomic``); returns the
  number of rows dropped. A missing file is left missing.
  """
  path = Path(path)
  if not path.exists():
    return 0
  kept, dropped = [], 0
  for line in path.read_text(errors="replace").splitlines():
    try:
      row = json.loads(line)
      keep = int(row["step"]) <= after_step
    except (ValueError, TypeError, KeyError):
      keep = False
    if keep:
      kept.append(line + "\n")
    else:
      dropped += 1
  if dropped:
    fileio.write_atomic(path, "".join(kept))
  return dropped


def truncate_event_files(directory: str | os.PathLike, *, after_step: int
                         ) -> int:
  """Drops TensorBoard summaries with ``step > after_step`` under a directory.

  Every event file below ``directory`` is rewritten without them (and without
  a record torn by a kill), so a resumed run's curves do not double back.
  Returns the number of events dropped.
  """
  paths = sorted(Path(directory).glob("**/*tfevents*"))
  if not paths:
    return 0
  tf = _tensorflow()
  dropped = 0
  for path in paths:
    records, torn = _read_records(tf, path)
    kept = [r for r in records if _event_step(r) <= after_step]
    if len(kept) == len(records) and not torn:
      continue
    dropped += len(records) - len(kept) + torn
    tmp = path.parent.parent / f"{path.parent.name}.rewrite.tmp"
    with tf.io.TFRecordWriter(str(tmp)) as writer:
      for record in kept:
        writer.write(record)
    os.replace(tmp, path)
  return dropped


def _read_records(tf, path: Path) -> tuple[list[bytes], int]:
  """The complete records of a TFRecord file, and 1 if the last was torn."""
  records = []
  try:
    for record in tf.data.TFRecordDataset(str(path)):
      records.append(record.numpy())
  except tf.errors.DataLossError:
    return records, 1
  return records, 0


def _event_step(record: bytes) -> int:
  """The step of a summary event; -1 (always kept) for other events."""
  event = event_pb2.Event.FromString(record)
  return event.step if event.HasField("summary") else -1


class StepTimer:
  """Separates the first step (``compile_s``) from steady-state throughput.

  The clock starts at construction (or :meth:`restart`). The first
  :meth:`mark` ends the first step: its wall time is ``compile_s``. Later
  marks measure images/s over the window since the previous mark and over
  all steady-state steps. Call :meth:`mark` only after blocking on the step's
  results (e.g. fetching metrics), or JAX's async dispatch hides the work.
  """

  def __init__(self, clock=time.perf_counter):
    self._clock = clock
    self.restart()

  def restart(self) -> None:
    self._start = self._clock()
    self.compile_s: float | None = None
    self._steady_start = self._last = None
    self._steady_images = self._window_images = 0
    self._steady_steps = self._window_steps = 0
    self.window_images_per_s = self.window_steps_per_s = float("nan")

  def add(self, images: int) -> None:
    """Counts one finished (dispatched) steady-state step of ``images``."""
    if self.compile_s is not None:
      self._steady_images += images
      self._window_images += images
      self._steady_steps += 1
      self._window_steps += 1

  def mark(self) -> None:
    """Closes the first step or the current window (after blocking)."""
    now = self._clock()
    if self.compile_s is None:
      self.compile_s = now - self._start
      self._steady_start = self._last = now
      return
    elapsed = max(now - self._last, 1e-9)
    if self._window_steps:
      self.window_images_per_s = self._window_images / elapsed
      self.window_steps_per_s = self._window_steps / elapsed
    self._window_images = self._window_steps = 0
    self._last = now

  @property
  def images_per_s(self) -> float:
    """Steady-state images/s since the end of the first step."""
    if self._steady_start is None or not self._steady_images:
      return float("nan")
    elapsed = max(self._last - self._steady_start, 1e-9)
    return self._steady_images / elapsed

  def summary(self) -> dict[str, float]:
    return {"compile_s": self.compile_s if self.compile_s is not None
                         else float("nan"),
            "images_per_s": self.images_per_s,
            "steady_steps": self._steady_steps}


class MetricWriter:
  """Writes train/val/test scalars to TensorBoard, JSON lines and the console.

  Args:
    workdir: the run directory (created if missing).
    total_steps: the last training step, for progress and ETA.
    every_steps: :meth:`log_train` fetches, writes and prints metrics on steps
      divisible by this, on the first step and on ``total_steps``.
    interactive: tqdm bar (True) or plain lines (False); None picks the bar
      when ``stream`` is a terminal.
    start_step: the step the run resumes from (0 for a fresh run). Rows of
      ``metrics.jsonl`` after it are dropped, so the file matches the state.
    stream: where console output goes (default ``sys.stdout``).
    tensorboard: also write TensorBoard event files.
  """

  def __init__(self, workdir: str | os.PathLike, *, total_steps: int,
               every_steps: int = 100, interactive: bool | None = None,
               start_step: int = 0, stream: TextIO | None = None,
               tensorboard: bool = True):
    if every_steps < 1:
      raise ValueError(f"every_steps={every_steps} must be >= 1")
    self.workdir = Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.total_steps, self.every_steps = total_steps, every_steps
    self.start_step = start_step
    self.stream = stream or sys.stdout
    if interactive is None:
      interactive = bool(getattr(self.stream, "isatty", lambda: False)())
    self.jsonl_path = self.workdir / "metrics.jsonl"
    truncate_jsonl(self.jsonl_path, after_step=start_step)
    if tensorboard:
      truncate_event_files(self.workdir / "tensorboard", after_step=start_step)
    self._fd = os.open(self.jsonl_path,
                       os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    self._tensorboard = tensorboard
    self._tb_writers: dict[str, Any] = {}
    self.timer = StepTimer()
    self._bar = None
    if interactive:
      self._bar = tqdm.tqdm(total=total_steps, initial=start_step,
                            file=self.stream, unit="step", dynamic_ncols=True)

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Flushes TensorBoard, closes the JSON-lines file and the bar."""
    for writer in self._tb_writers.values():
      writer.flush()
      writer.close()
    self._tb_writers.clear()
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def log_train(self, step: int, metrics: Mapping[str, Any], *,
                images: int) -> None:
    """Call once per training step with its metrics and batch size.

    Metrics stay on the device except on logging steps, so the loop is not
    synchronised every step. The first call ends the compile timing, which
    starts when the writer is created (or at ``writer.timer.restart()``).
    """
    first = self.timer.compile_s is None
    self.timer.add(images)
    if self._bar is not None:
      self._bar.update(1)
    due = step % self.every_steps == 0 or step == self.total_steps
    if not (first or due):
      return
    scalars = _to_floats(metrics)  # Blocks until the step has finished.
    self.timer.mark()
    if first:
      scalars["compile_s"] = self.timer.compile_s
      self._print(f"step {step}/{self.total_steps} first step (compile) "
                  f"{self.timer.compile_s:.1f}s")
    else:
      scalars["images_per_s"] = self.timer.window_images_per_s
    self.write_scalars(step, scalars, split="train")
    if due:
      self._show_progress(step, scalars)

  def _show_progress(self, step: int, scalars: Mapping[str, float]) -> None:
    parts = [f"{short} {_format_value(scalars[key])}"
             for key, short in _LINE_KEYS if key in scalars]
    rate = self.timer.window_images_per_s
    parts.append(f"img/s {rate:.0f}" if math.isfinite(rate) else "img/s ?")
    if self._bar is not None:
      self._bar.set_postfix_str(" ".join(parts), refresh=True)
      return
    eta = (self.total_steps - step) / self.timer.window_steps_per_s
    parts.append(f"eta {format_duration(eta)}")
    self._print(f"step {step}/{self.total_steps} " + " ".join(parts))

  def write_scalars(self, step: int, scalars: Mapping[str, Any], *,
                    split: str = "train") -> None:
    """One row of ``metrics.jsonl`` and TensorBoard scalars under ``split``.

    Use it directly for evaluation: ``write_scalars(step, m, split="val")``;
    the values are also printed as one line.
    """
    values = _to_floats(scalars)
    clash = [key for key in values if key in _RESERVED]
    if clash:
      raise ValueError(f"metric names {clash} are reserved for the row "
                       f"itself ({', '.join(_RESERVED)}); rename them")
    row = {"step": int(step), "split": split, "time": time.time(), **values}
    line = json.dumps(row, allow_nan=True) + "\n"
    with _stop_when_full(self.jsonl_path, self.workdir):
      os.write(self._fd, line.encode())
    if split != "train":
      shown = " ".join(f"{k} {_format_value(v)}" for k, v in values.items())
      self._print(f"{split} step {step}: {shown}")
    if self._tensorboard:
      self._write_tb(split, step, values)

  def write_images(self, step: int, images: Mapping[str, Any], *,
                   split: str = "train", max_outputs: int = 8) -> None:
    """TensorBoard images: each value is ``[N, H, W, C]``, uint8 or [0, 1]."""
    if not self._tensorboard:
      return
    tf = _tensorflow()
    with self._tb(split).as_default(step=int(step)):
      for name, batch in images.items():
        tf.summary.image(name, np.asarray(batch), max_outputs=max_outputs)
    self._tb(split).flush()

  def write_config(self, config: Any) -> None:
    """Writes ``config.json`` (ml_collections ConfigDict or plain dict)."""
    if hasattr(config, "to_json_best_effort"):
      text = config.to_json_best_effort(indent=2, sort_keys=True)
    else:
      text = json.dumps(config, indent=2, sort_keys=True, default=str)
    _write_file(self.workdir / "config.json", text + "\n")

  def log_model_info(self, *, params: int, macs: int, convention: str,
                     activations: int | None = None) -> None:
    """Records parameter, MAC and activation counts once, with how they
    were counted."""
    info = {"params": int(params), "macs": int(macs), "convention": convention}
    if activations is not None:
      info["activations"] = int(activations)
    _write_file(self.workdir / "model_info.json",
                  json.dumps(info, indent=2) + "\n")
    self._print(f"model: {params / 1e6:.2f}M params, {macs / 1e9:.3f}G MACs "
                f"({convention})")
    if self._tensorboard:
      tf = _tensorflow()
      with self._tb("train").as_default(step=self.start_step):
        tf.summary.text("model_info", json.dumps(info))

  def write_summary(self, results: Mapping[str, Any]) -> str:
    """Prints the results, with compile_s and steady-state images/s, as
    aligned lines and writes them to ``summary.json``."""
    merged = {**results, **self.timer.summary()}
    _write_file(self.workdir / "summary.json",
                  json.dumps(_to_json_values(merged), indent=2) + "\n")
    text = format_summary(merged)
    self._print(text)
    return text

  def _print(self, text: str) -> None:
    if self._bar is not None:
      self._bar.write(text, file=self.stream)
    else:
      print(text, file=self.stream, flush=True)

  def _tb(self, split: str):
    if split not in self._tb_writers:
      directory = self.workdir / "tensorboard" / split
      self._tb_writers[split] = _tensorflow().summary.create_file_writer(
          str(directory))
    return self._tb_writers[split]

  def _write_tb(self, split: str, step: int, values: Mapping[str, float]):
    tf = _tensorflow()
    with _stop_when_full(self.workdir / "tensorboard" / split, self.workdir):
      with self._tb(split).as_default(step=int(step)):
        for name, value in values.items():
          tf.summary.scalar(name, value)
      self._tb(split).flush()


def _to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
  host = jax.device_get(dict(metrics))
  out = {}
  for name, value in host.items():
    array = np.asarray(value)
    if array.size != 1:
      raise ValueError(f"metric '{name}' has shape {array.shape}; log scalars "
                       "(reduce it, e.g. with .mean(), first)")
    scalar = array.reshape(())[()]
    if isinstance(scalar, np.floating) and array.dtype != np.float64:
      scalar = str(scalar)  # shortest repr: float32 0.1 is logged as 0.1
    out[str(name)] = float(scalar)
  return out


def _to_json_values(results: Mapping[str, Any]) -> dict:
  return {k: (v.item() if isinstance(v, np.generic) else v)
          for k, v in results.items()}


def _write_file(path: Path, text: str) -> None:
  """Writes ``path`` whole or not at all (``fileio.write_atomic``); a full
  disk stops the run with a DiskFullError."""
  with _stop_when_full(path, path.parent):
    fileio.write_atomic(path, text)


@contextlib.contextmanager
def _stop_when_full(path: Path, workdir: Path):
  """Turns a write that ran out of space into a DiskFullError saying how to
  resume; other errors pass through."""
  try:
    yield
  except Exception as error:  # TensorFlow raises its own error types
    if not (errors.disk_full(error) or "No space left" in str(error)):
      raise
    raise errors.DiskFullError(
        f"no space left on the device while writing {path}; the run stopped."
        " Free some space and run the same command again: it resumes from "
        f"the newest checkpoint in {workdir / 'checkpoints'}.") from error


def _tensorflow():
  """TensorFlow, imported on first use and kept off any GPU."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # Already initialised: devices are fixed by now.
    pass
  return tf
