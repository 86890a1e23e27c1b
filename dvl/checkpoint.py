"""Checkpoints that survive a kill: a thin layer over orbax-checkpoint.

Layout of a work directory::

    workdir/checkpoints/<step>/state/...   the train state (orbax PyTree, OCDBT)
    workdir/checkpoints/<step>/meta/...    JSON: step, user metadata, config
                                           hash and a per-leaf shape, dtype and
                                           CRC-32 table
    workdir/corrupt_checkpoints/<step>     unreadable steps, moved aside

The train state is any pytree (a flax ``TrainState`` subclass, a dict, ...)
whose leaves are JAX arrays, numpy arrays or scalars, or Python numbers, e.g.
``params``, ``batch_stats``, ``opt_state``, ``ema_params``, ``step`` and
``rng``. A new-style typed PRNG key (``jax.random.key``) is stored as its raw
``jax.random.key_data`` plus the name of its implementation and comes back as a
typed key; raw ``uint32`` keys (``jax.random.PRNGKey``) are stored as they are.

Guarantees:

* A save is atomic with respect to a kill: orbax writes into
  ``<step>.orbax-checkpoint-tmp`` and renames it when complete. Such leftover
  directories are never restored; they are removed, with a warning, when a
  :class:`Checkpointer` opens the directory.
* Restoring checks the CRC-32 of every leaf, because garbage written into an
  array file can otherwise restore silently as wrong numbers. A step that
  cannot be read or fails the check is reported with a
  :class:`CheckpointWarning` naming the step and the error, moved to
  ``corrupt_checkpoints/`` (so the step can be saved again) and the previous
  step is used. If no step can be restored, :class:`CheckpointError`
  says which directory to move away; nothing is moved in that case.
* A save that runs out of space raises :class:`dvl.errors.DiskFullError`
  saying which step is the last good one; the unfinished save is removed and
  the committed steps are untouched.
* A checkpoint from a different model (other tree, shapes or dtypes than the
  template) raises :class:`IncompatibleCheckpointError` (a ``ValueError``)
  naming the first mismatching leaf, and nothing is touched.

Checksums need the whole state on this host; for arrays that are not fully
addressable (multi-host sharding) the check is skipped for that leaf.

Typical loop::

    with Checkpointer(workdir, keep=3, every_steps=1000,
                      config=config) as ckpt, preemption_guard() as guard:
      restored = ckpt.resume(state)      # `state` is the freshly built one
      state, start = restored.state, restored.step or 0
      for step in range(start + 1, total_steps + 1):
        state = train_step(state, next(batches))
        ckpt.save(step, state, metadata={"epoch": epoch})
        if guard.should_stop:
          ckpt.save(step, state, force=True)
          break

The data position is the step: a resumed run positions its input pipeline at
``start`` (e.g. skips ``start`` batches or seeds by step). Epoch and best
metric travel in ``metadata``.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import threading
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from dvl import errors
from dvl.models import scan

_STATE = "state"
_META = "meta"
_FORMAT = 1
_TMP_MARKER = ".orbax-checkpoint-tmp"
_MAX_ERROR_CHARS = 400


class CheckpointError(errors.UserError, RuntimeError):
  """No checkpoint in a directory can be restored."""


class IncompatibleCheckpointError(ValueError):
  """A checkpoint does not match the template (other model or config)."""


class CheckpointWarning(UserWarning):
  """A checkpoint step was skipped or an unfinished save was cleaned up."""


class _CorruptStep(Exception):
  """Internal: one step could not be read or failed its checksum."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """What :meth:`Checkpointer.restore` returns.

  Attributes:
    state: the train state, in the template's structure and shardings.
    step: the restored step, or None when :meth:`Checkpointer.resume` found no
      checkpoint and returned the template unchanged.
    metadata: the ``metadata`` dict given to :meth:`Checkpointer.save`.
  """

  state: Any
  step: int | None
  metadata: dict


def config_fingerprint(config: Any) -> str:
  """A short SHA-256 of a config (ml_collections ConfigDict or plain dict)."""
  if hasattr(config, "to_json_best_effort"):
    text = config.to_json_best_effort(sort_keys=True)
  else:
    text = json.dumps(config, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _path_str(keypath: tuple) -> str:
  """``params/Dense_0/kernel`` for a pytree key path."""
  return jax.tree_util.keystr(keypath, simple=True, separator="/")


def _is_typed_key(leaf: Any) -> bool:
  dtype = getattr(leaf, "dtype", None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _to_savable(leaf: Any) -> Any:
  """One state leaf as something orbax stores: a jax.Array or np.ndarray."""
  if _is_typed_key(leaf):
    return jax.random.key_data(leaf)
  if isinstance(leaf, jax.Array | np.ndarray):
    return leaf
  if isinstance(leaf, np.generic):
    return np.asarray(leaf)
  if isinstance(leaf, int | float | bool):
    return _python_scalar(leaf)
  raise TypeError(
      f"cannot checkpoint a leaf of type {type(leaf).__name__}; state leaves "
      "must be JAX arrays, numpy arrays or scalars, or Python numbers")


def _python_scalar(value: int | float | bool) -> np.ndarray:
  """A Python number with the dtype JAX gives it (int32 unless x64 is on)."""
  dtype = jax.dtypes.canonicalize_dtype(np.asarray(value).dtype)
  return np.asarray(value, dtype=dtype)


def _crc32(host: np.ndarray) -> int:
  flat = np.ascontiguousarray(host).reshape(-1)
  return zlib.crc32(flat.view(np.uint8))


def _host_copies(values: list) -> list[np.ndarray | None]:
  """Host copies of the leaves this process can see whole; None elsewhere."""
  visible = [v if getattr(v, "is_fully_addressable", True) else None
             for v in values]
  return [None if v is None else np.asarray(v)
          for v in jax.device_get(visible)]


def _leaf_table(state: Any) -> tuple[Any, dict]:
  """The savable state and its {path: shape, dtype, crc32, key_impl} table."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(state)
  savable = [_to_savable(leaf) for _, leaf in flat]
  table = {}
  for (keypath, leaf), value, host in zip(flat, savable,
                                          _host_copies(savable)):
    entry = {"shape": list(value.shape), "dtype": str(value.dtype)}
    if host is not None:
      entry["crc32"] = _crc32(host)
    if _is_typed_key(leaf):
      entry["key_impl"] = str(jax.random.key_impl(leaf))
    table[_path_str(keypath)] = entry
  return jax.tree_util.tree_unflatten(treedef, savable), table


def _abstract_leaf(leaf: Any) -> jax.ShapeDtypeStruct | np.ndarray:
  """The orbax restore target for one template leaf."""
  if not isinstance(leaf, jax.Array | jax.ShapeDtypeStruct):
    return _to_savable(leaf)  # a numpy target: orbax restores it as numpy
  shape_dtype = leaf
  if _is_typed_key(leaf):
    shape_dtype = jax.eval_shape(jax.random.key_data, leaf)
  sharding = leaf.sharding
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.ShapeDtypeStruct(shape_dtype.shape, shape_dtype.dtype,
                              sharding=sharding)


def _check_compatible(target: Any, table: Mapping[str, dict], where: str):
  """Raises IncompatibleCheckpointError at the first leaf that differs."""
  hint = ("The checkpoint was written by a different model or config. Restore "
          "with the config that wrote it, or start fresh with a new workdir; "
          "nothing was changed on disk.")
  expected = {_path_str(k): v
              for k, v in jax.tree_util.tree_flatten_with_path(target)[0]}
  for path, want in expected.items():
    found = table.get(path)
    if found is None:
      raise IncompatibleCheckpointError(
          f"{where} has no leaf '{path}' (template expects shape "
          f"{tuple(want.shape)} {want.dtype}). {hint}")
    if tuple(found["shape"]) != tuple(want.shape):
      raise IncompatibleCheckpointError(
          f"{where}, leaf '{path}': template expects shape {tuple(want.shape)}"
          f", checkpoint has shape {tuple(found['shape'])}. {hint}")
    if found["dtype"] != str(want.dtype):
      raise IncompatibleCheckpointError(
          f"{where}, leaf '{path}': template expects dtype {want.dtype}, "
          f"checkpoint has dtype {found['dtype']}. {hint}")
  extra = [path for path in table if path not in expected]
  if extra:
    shape = tuple(table[extra[0]]["shape"])
    raise IncompatibleCheckpointError(
        f"{where} has leaf '{extra[0]}' (shape {shape}) that the template "
        f"lacks. {hint}")


def _table_tree(table: Mapping[str, dict], prefix: str) -> dict:
  """The leaves of ``table`` under ``prefix`` as a nested dict of shapes
  (tuples)."""
  tree: dict = {}
  start = f"{prefix}/" if prefix else ""
  for path, entry in table.items():
    if not path.startswith(start):
      continue
    *parents, name = path[len(start):].split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[name] = tuple(entry["shape"])
  return tree


def _in_saved_layout(tree: Any, table: Mapping[str, dict]) -> Any:
  """``tree`` with its scanned stages (``dvl.models.scan``) stacked or split
  as the checkpoint's leaf table has them; ``tree`` itself when no mapping
  in it changes."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=scan.is_mapping)
  out, changed = [], False
  for keypath, leaf in flat:
    if scan.is_mapping(leaf):
      saved = _table_tree(table, _path_str(keypath))
      new = scan.stack_like(scan.unstack_mapping(leaf), saved)
      if (jax.tree_util.tree_structure(new)
          != jax.tree_util.tree_structure(dict(leaf))):
        leaf, changed = new, True
    out.append(leaf)
  return treedef.unflatten(out) if changed else tree


def _verify_checksums(restored_leaves: list, paths: list[str],
                      table: Mapping[str, dict]) -> None:
  """Raises _CorruptStep if a restored leaf differs from what was saved."""
  for path, host in zip(paths, _host_copies(restored_leaves)):
    expected = table[path].get("crc32")
    if host is not None and expected is not None and _crc32(host) != expected:
      raise _CorruptStep(f"checksum mismatch in leaf '{path}'")


def _as_template_type(like: Any, value: Any, entry: Mapping) -> Any:
  """A restored leaf with the type of the template leaf ``like``."""
  if _is_typed_key(like):
    impl = entry.get("key_impl") or (
        jax.random.key_impl(like) if isinstance(like, jax.Array)
        else jax.config.jax_default_prng_impl)
    return jax.random.wrap_key_data(value, impl=impl)
  if isinstance(like, jax.Array | jax.ShapeDtypeStruct):
    return value
  host = np.asarray(jax.device_get(value))
  if isinstance(like, np.ndarray):
    return host
  if isinstance(like, np.generic):
    return host[()]
  return type(like)(host.item())


def _json_ready(metadata: Mapping[str, Any]) -> dict:
  def default(obj):
    if isinstance(obj, np.generic | np.ndarray | jax.Array):
      return np.asarray(obj).tolist()
    raise TypeError(
        f"checkpoint metadata must be JSON-serialisable; got "
        f"{type(obj).__name__} ({obj!r})")
  return json.loads(json.dumps(dict(metadata), default=default))


def _short(error: BaseException) -> str:
  text = f"{type(error).__name__}: {error}"
  if len(text) > _MAX_ERROR_CHARS:
    text = text[:_MAX_ERROR_CHARS] + " ..."
  return text


class Checkpointer:
  """Periodic, keep-N, kill-safe checkpoints of a train state in ``workdir``.

  Args:
    workdir: the run directory; checkpoints go to ``workdir/checkpoints``.
    keep: how many most recent steps to keep (None keeps all).
    every_steps: :meth:`save` writes when ``step % every_steps == 0`` (or when
      forced); 0 or None saves only when forced.
    config: optional run config; its fingerprint (and ``config.name`` if set)
      is stored with every step, and resuming with another config warns.
    async_save: write in a background thread; :meth:`restore` and
      :meth:`close` wait for it. Synchronous by default.
  """

  def __init__(self, workdir: str | os.PathLike, *, keep: int | None = 3,
               every_steps: int | None = 1000, config: Any = None,
               async_save: bool = False):
    if keep is not None and keep < 1:
      raise ValueError(f"keep={keep}: keep at least 1 checkpoint, or None "
                       "to keep all")
    if every_steps is not None and every_steps < 0:
      raise ValueError(f"every_steps={every_steps} must be >= 0")
    self.workdir = Path(workdir)
    self.directory = self.workdir / "checkpoints"
    self.every_steps = every_steps or 0
    self._config_info = {}
    if config is not None:
      self._config_info = {"config_hash": config_fingerprint(config),
                           "config_name": _config_name(config)}
    self.directory.mkdir(parents=True, exist_ok=True)
    self._remove_unfinished_saves()
    policy = checkpoint_managers.LatestN(keep) if keep else None
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    """Waits for a pending save to land on disk and releases orbax."""
    self._manager.wait_until_finished()
    self._manager.close()

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def all_steps(self) -> list[int]:
    """Committed steps on disk, oldest first (not checked for corruption)."""
    self._manager.wait_until_finished()
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest committed step, or None; see :meth:`restore` for checks."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def should_save(self, step: int) -> bool:
    return bool(self.every_steps) and step % self.every_steps == 0

  def save(self, step: int, state: Any, *,
           metadata: Mapping[str, Any] | None = None,
           force: bool = False) -> bool:
    """Saves ``state`` as ``step`` if it is due (or forced); returns whether.

    A step that is already on disk is not written again, so a forced final
    save right after a periodic one is harmless. ``metadata`` is a small
    JSON-serialisable dict (epoch, best metric, ...) returned on restore.
    """
    step = int(step)
    if not (force or self.should_save(step)):
      return False
    if step in self._manager.all_steps():
      return False
    savable, table = _leaf_table(state)
    meta = {"format": _FORMAT, "step": step, "time": time.time(),
            **self._config_info, "user": _json_ready(metadata or {}),
            "leaves": table}
    try:
      self._manager.save(step, force=True, args=ocp.args.Composite(**{
          _STATE: ocp.args.StandardSave(savable),
          _META: ocp.args.JsonSave(meta)}))
    except Exception as error:  # orbax may wrap the OSError
      if not errors.disk_full(error):
        raise
      raise self._disk_full(step) from error
    return True

  def _disk_full(self, step: int) -> errors.DiskFullError:
    """The error for a save that ran out of space, after removing its
    unfinished files; the committed steps are untouched."""
    for path in self.directory.glob(f"*{_TMP_MARKER}*"):
      shutil.rmtree(path, ignore_errors=True)
    kept = sorted(self._manager.all_steps())
    last = (f"the last good checkpoint, step {kept[-1]}, is intact"
            if kept else "no checkpoint had been saved yet")
    return errors.DiskFullError(
        f"no space left on the device while saving checkpoint step {step} in "
        f"{self.directory}; {last}. Free some space and run the same command "
        "again: it resumes from the newest checkpoint.")

  def resume(self, template: Any) -> Restored:
    """Restores the newest good step, or returns the template if none exists."""
    if not self.all_steps():
      return Restored(state=template, step=None, metadata={})
    return self.restore(template)

  def restore(self, template: Any, *, step: int | None = None) -> Restored:
    """Restores ``step`` (default: the newest good one) into ``template``.

    ``template`` is a concrete or abstract (``jax.eval_shape``) state with the
    structure, shapes, dtypes and shardings to restore into. Unreadable newer
    steps are reported, moved aside, and skipped.
    """
    target = jax.tree.map(_abstract_leaf, template)
    steps = self.all_steps()
    if step is not None:
      if step not in steps:
        raise CheckpointError(f"no checkpoint for step {step} in "
                              f"{self.directory}; steps on disk: {steps}")
      steps = [step]
    if not steps:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    failures = []
    for candidate in reversed(steps):
      try:
        restored = self._restore_step(candidate, template, target)
      except _CorruptStep as error:
        failures.append((candidate, str(error)))
        continue
      self._set_aside(failures, fallback=candidate)
      return restored
    raise CheckpointError(self._nothing_restorable(failures))

  def _restore_step(self, step: int, template: Any, target: Any) -> Restored:
    where = f"checkpoint step {step} in {self.directory}"
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(
          **{_META: ocp.args.JsonRestore()}))[_META]
      table = meta["leaves"]
    except Exception as error:  # Any failure to read means a damaged step.
      raise _CorruptStep(f"unreadable metadata ({_short(error)})") from error
    try:
      _check_compatible(target, table, where)
    except IncompatibleCheckpointError:
      # Written with the model's stages scanned where they are now unrolled,
      # or the other way round: restore that layout, then convert.
      saved = _in_saved_layout(target, table)
      if saved is target:
        raise
      try:
        _check_compatible(saved, table, where)
      except IncompatibleCheckpointError:
        _check_compatible(target, table, where)  # the error about this layout
      restored = self._restore_step(
          step, _in_saved_layout(template, table), saved)
      return dataclasses.replace(
          restored, state=scan.relayout(restored.state, template))
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    paths = [_path_str(keypath) for keypath, _ in flat]
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          **{_STATE: ocp.args.StandardRestore(target)}))[_STATE]
      leaves = treedef.flatten_up_to(restored)
    except Exception as error:  # Any failure to read means a damaged step.
      raise _CorruptStep(f"unreadable state ({_short(error)})") from error
    _verify_checksums(leaves, paths, table)
    state = treedef.unflatten(
        _as_template_type(like, value, table[path])
        for (_, like), value, path in zip(flat, leaves, paths))
    self._warn_if_other_config(step, meta)
    return Restored(state=state, step=step, metadata=meta.get("user", {}))

  def _warn_if_other_config(self, step: int, meta: Mapping[str, Any]) -> None:
    saved = meta.get("config_hash")
    current = self._config_info.get("config_hash")
    if saved and current and saved != current:
      warnings.warn(
          f"checkpoint step {step} in {self.directory} was written with config "
          f"{meta.get('config_name')!r} (hash {saved}); the current config "
          f"{self._config_info.get('config_name')!r} has hash {current}. "
          "Resuming anyway.", CheckpointWarning, stacklevel=4)

  def _set_aside(self, failures: list[tuple[int, str]], fallback: int) -> None:
    """Moves unreadable steps to ``corrupt_checkpoints/`` and warns."""
    for step, error in failures:
      moved = _free_path(self.workdir / "corrupt_checkpoints" / str(step))
      moved.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(self.directory / str(step), moved)
      warnings.warn(
          f"checkpoint step {step} in {self.directory} is corrupt: {error}. "
          f"Moved it to {moved} and restored step {fallback} instead.",
          CheckpointWarning, stacklevel=4)
    if failures:
      self._manager.reload()

  def _nothing_restorable(self, failures: list[tuple[int, str]]) -> str:
    lines = "\n".join(f"  step {step}: {error}" for step, error in failures)
    return (f"no checkpoint in {self.directory} can be restored:\n{lines}\n"
            f"To start fresh, move {self.directory} away (or delete it) or "
            "choose a new workdir.")

  def _remove_unfinished_saves(self) -> None:
    for path in sorted(self.directory.glob(f"*{_TMP_MARKER}*")):
      warnings.warn(
          f"removing {path}: an unfinished save, interrupted before it was "
          "committed; it is never restored.", CheckpointWarning, stacklevel=3)
      shutil.rmtree(path, ignore_errors=True)


def _config_name(config: Any) -> str | None:
  try:
    name = config.get("name")
  except AttributeError:
    return None
  return None if name is None else str(name)


def _free_path(path: Path) -> Path:
  candidate, n = path, 1
  while candidate.exists():
    candidate = path.with_name(f"{path.name}-{n}")
    n += 1
  return candidate


@dataclasses.dataclass
class PreemptionGuard:
  """Set by :func:`preemption_guard` when a stop signal arrives."""

  should_stop: bool = False
  signal_name: str | None = None


@contextlib.contextmanager
def preemption_guard(
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[PreemptionGuard]:
  """Turns SIGTERM / SIGINT into a flag the training loop polls.

  Inside the block the first signal sets ``guard.should_stop``; the loop then
  saves a checkpoint and returns normally, so the process exits with code 0.
  A second SIGINT (Ctrl-C twice) raises KeyboardInterrupt for a hard stop.
  The previous handlers are restored on exit. Must run in the main thread.
  """
  if threading.current_thread() is not threading.main_thread():
    raise RuntimeError("preemption_guard() installs signal handlers and must "
                       "be entered from the main thread")
  guard = PreemptionGuard()

  def handle(signum, frame):
    del frame
    if guard.should_stop and signum == signal.SIGINT:
      raise KeyboardInterrupt
    guard.should_stop = True
    guard.signal_name = signal.Signals(signum).name

  previous = {sig: signal.signal(sig, handle) for sig in signals}
  try:
    yield guard
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
