"""Checkpoints survive kills, corruption and preemption (real orbax on disk)."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dvl.checkpoint import (Checkpointer, CheckpointError, CheckpointWarning,
                            IncompatibleCheckpointError, preemption_guard)

REPO = Path(__file__).resolve().parents[1]


def make_state(seed: int, width: int = 32) -> dict:
  """A train state with every kind of leaf a dvl run checkpoints."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  params = {"dense": {"kernel": jax.random.normal(k1, (64, width)),
                      "bias": jnp.full((width,), float(seed))}}
  return {
      "params": params,
      "batch_stats": {"mean": jnp.arange(width, dtype=jnp.float32) + seed},
      "opt_state": optax.adamw(1e-3).init(params),
      "ema_params": jax.tree.map(lambda x: x * 0.5, params),
      "step": np.int32(seed),
      "epoch": seed,
      "rng": k2,
      "legacy_rng": jax.random.PRNGKey(seed),
  }


def raw_leaves(state) -> list[tuple[str, bytes]]:
  """(dtype, bytes) of every leaf; typed keys as their key data."""
  def raw(leaf):
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
        leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    if type(leaf) in (int, float):  # Python numbers get JAX's dtypes.
      leaf = jnp.asarray(leaf)
    array = np.asarray(leaf)
    return str(array.dtype), array.tobytes()
  return [raw(leaf) for leaf in jax.tree.leaves(state)]


def save_steps(workdir, steps, **kwargs) -> dict:
  states = {}
  with Checkpointer(workdir, every_steps=1, **kwargs) as ckpt:
    for step in steps:
      states[step] = make_state(step)
      assert ckpt.save(step, states[step], metadata={"epoch": step})
  return states


def snapshot(directory: Path) -> dict:
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def test_round_trip_is_bitwise_and_keeps_leaf_types(tmp_path):
  saved = save_steps(tmp_path, [5])[5]
  with Checkpointer(tmp_path) as ckpt:
    restored = ckpt.restore(make_state(0))
  assert restored.step == 5
  assert restored.metadata == {"epoch": 5}
  assert raw_leaves(restored.state) == raw_leaves(saved)
  assert isinstance(restored.state["step"], np.int32)
  assert isinstance(restored.state["epoch"], int)
  assert jax.random.key_impl(restored.state["rng"]) == jax.random.key_impl(
      saved["rng"])
  assert jax.tree.structure(restored.state) == jax.tree.structure(saved)


def test_restore_into_abstract_template(tmp_path):
  saved = save_steps(tmp_path, [2])[2]
  template = jax.eval_shape(lambda: make_state(0))
  with Checkpointer(tmp_path) as ckpt:
    restored = ckpt.restore(template)
  assert raw_leaves(restored.state) == raw_leaves(saved)
  kernel = restored.state["params"]["dense"]["kernel"]
  assert isinstance(kernel, jax.Array) and kernel.sharding.device_set


def test_periodic_saves_and_keep_n(tmp_path):
  with Checkpointer(tmp_path, keep=2, every_steps=2) as ckpt:
    saved = [step for step in range(1, 10)
             if ckpt.save(step, make_state(step))]
    assert saved == [2, 4, 6, 8]
    assert ckpt.all_steps() == [6, 8]
    assert ckpt.save(9, make_state(9), force=True)
    assert not ckpt.save(9, make_state(9), force=True)  # already on disk
    assert ckpt.all_steps() == [8, 9]
    assert ckpt.latest_step() == 9


def test_resume_without_checkpoint_returns_template(tmp_path):
  template = make_state(1)
  with Checkpointer(tmp_path) as ckpt:
    restored = ckpt.resume(template)
  assert restored.step is None and restored.state is template


def test_resuming_with_another_config_warns(tmp_path):
  config = ml_collections.ConfigDict({"name": "resnet18", "lr": 0.1})
  with Checkpointer(tmp_path, every_steps=1, config=config) as ckpt:
    ckpt.save(1, make_state(1))
  config.lr = 0.2
  with Checkpointer(tmp_path, config=config) as ckpt:
    with pytest.warns(CheckpointWarning, match="'resnet18' .*has hash"):
      assert ckpt.resume(make_state(0)).step == 1


def _largest_array_file(step_dir: Path) -> Path:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _garbage(step_dir: Path) -> None:
  path = _largest_array_file(step_dir)
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = os.urandom(64)
  path.write_bytes(bytes(data))


def _truncate(step_dir: Path) -> None:
  path = _largest_array_file(step_dir)
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete_manifest(step_dir: Path) -> None:
  (step_dir / "state" / "manifest.ocdbt").unlink()


def _garbage_metadata(step_dir: Path) -> None:
  (step_dir / "meta" / "metadata").write_bytes(b"\x00{not json")


# Reading a damaged step makes tensorstore complete futures on orbax's
# already-closed event loop; Python reports that as an unraisable exception.
tolerate_orbax_loop_noise = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning")


@tolerate_orbax_loop_noise
@pytest.mark.parametrize("corrupt", [_garbage, _truncate, _delete_manifest,
                                     _garbage_metadata])
def test_corrupt_latest_step_falls_back_with_warning(tmp_path, corrupt):
  states = save_steps(tmp_path, [1, 2, 3])
  corrupt(tmp_path / "checkpoints" / "3")
  with Checkpointer(tmp_path) as ckpt:
    with pytest.warns(CheckpointWarning, match=r"step 3 .* corrupt: \w+"):
      restored = ckpt.restore(make_state(0))
    assert restored.step == 2
    assert raw_leaves(restored.state) == raw_leaves(states[2])
    assert (tmp_path / "corrupt_checkpoints" / "3").is_dir()
    assert ckpt.all_steps() == [1, 2]
    assert ckpt.save(3, make_state(3), force=True)  # the step can be redone


@tolerate_orbax_loop_noise
def test_no_restorable_step_raises_and_moves_nothing(tmp_path):
  save_steps(tmp_path, [4])
  _garbage(tmp_path / "checkpoints" / "4")
  before = snapshot(tmp_path)
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(CheckpointError) as error:
      ckpt.resume(make_state(0))
  message = str(error.value)
  assert str(tmp_path / "checkpoints") in message and "step 4" in message
  assert "move" in message and "new workdir" in message
  assert snapshot(tmp_path) == before


def test_leftover_tmp_directory_is_ignored_and_removed(tmp_path):
  states = save_steps(tmp_path, [1, 2])
  checkpoints = tmp_path / "checkpoints"
  leftover = checkpoints / "3.orbax-checkpoint-tmp"
  shutil.copytree(checkpoints / "2", leftover)
  (leftover / "state" / "manifest.ocdbt").unlink()
  with pytest.warns(CheckpointWarning, match="3.orbax-checkpoint-tmp"):
    ckpt = Checkpointer(tmp_path)
  with ckpt:
    assert ckpt.latest_step() == 2
    restored = ckpt.resume(make_state(0))
  assert restored.step == 2
  assert raw_leaves(restored.state) == raw_leaves(states[2])
  assert not leftover.exists()


def test_incompatible_template_names_leaf_and_touches_nothing(tmp_path):
  save_steps(tmp_path, [1])
  before = snapshot(tmp_path)
  other_model = make_state(0)
  other_model["params"]["dense"]["kernel"] = jnp.zeros((64, 16))
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(ValueError, match=r"'params/dense/kernel': template "
                       r"expects shape \(64, 16\), checkpoint has shape "
                       r"\(64, 32\)"):
      ckpt.restore(other_model)
    template = {**make_state(0), "extra": jnp.zeros(3)}
    with pytest.raises(IncompatibleCheckpointError, match="no leaf 'extra'"):
      ckpt.restore(template)
  assert snapshot(tmp_path) == before


# A tiny deterministic training loop, run as a subprocess so it can be killed.
LOOP = textwrap.dedent("""
    import os, signal, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from dvl.checkpoint import Checkpointer, preemption_guard

    def fresh_state():
      return {"w": jnp.zeros((16, 16)), "rng": jax.random.key(0)}

    @jax.jit
    def train_step(state):
      rng, sub = jax.random.split(state["rng"])
      w = state["w"] * 0.5 + jax.random.normal(sub, state["w"].shape)
      return {"w": w, "rng": rng}

    def die_inside_save_of_step(step):
      # Fault injection: SIGKILL after the files are written, before the
      # rename that commits them.
      from orbax.checkpoint._src.path import atomicity
      commit = atomicity.AtomicRenameTemporaryPath.finalize
      async def finalize(self):
        if self._final_path.name == step:
          os.kill(os.getpid(), signal.SIGKILL)
        return await commit(self)
      atomicity.AtomicRenameTemporaryPath.finalize = finalize

    def train(workdir, total, pause):
      with Checkpointer(workdir, keep=2, every_steps=3) as ckpt, \\
          preemption_guard() as guard:
        restored = ckpt.resume(fresh_state())
        state, start = restored.state, restored.step or 0
        print(f"resumed from {start}", flush=True)
        for step in range(start + 1, total + 1):
          state = train_step(state)
          ckpt.save(step, state)
          print(f"step {step}", flush=True)
          if guard.should_stop:
            ckpt.save(step, state, force=True)
            print(f"stopped at {step} on {guard.signal_name}", flush=True)
            return
          time.sleep(pause)
      np.savez(os.path.join(workdir, "final.npz"), w=np.asarray(state["w"]),
               rng=np.asarray(jax.random.key_data(state["rng"])))

    if __name__ == "__main__":
      if os.environ.get("DIE_INSIDE_SAVE_OF_STEP"):
        die_inside_save_of_step(os.environ["DIE_INSIDE_SAVE_OF_STEP"])
      train(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
    """)
TOTAL = 12


def start_loop(tmp_path: Path, workdir: Path, pause: float, **env):
  script = tmp_path / "loop.py"
  script.write_text(LOOP)
  return subprocess.Popen(
      [sys.executable, str(script), str(workdir), str(TOTAL), str(pause)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
           **env})


def run_loop(tmp_path: Path, workdir: Path, **env) -> tuple[str, str]:
  proc = start_loop(tmp_path, workdir, 0.0, **env)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == (-signal.SIGKILL if env else 0), err
  return out, err


def read_until(proc: subprocess.Popen, line: str) -> None:
  for got in proc.stdout:
    if got.strip() == line:
      return
  raise AssertionError(f"loop ended before '{line}': {proc.stderr.read()}")


def final_state(workdir: Path) -> dict:
  with np.load(workdir / "final.npz") as data:
    return {k: data[k].tobytes() for k in data.files}


@pytest.fixture(scope="module")
def uninterrupted() -> dict:
  """The loop's final state without checkpoints, computed in this process."""
  loop = {"__name__": "loop"}
  exec(compile(LOOP, "loop.py", "exec"), loop)  # pylint: disable=exec-used
  state = loop["fresh_state"]()
  for _ in range(TOTAL):
    state = loop["train_step"](state)
  return {"w": np.asarray(state["w"]).tobytes(),
          "rng": np.asarray(jax.random.key_data(state["rng"])).tobytes()}


def test_sigkill_mid_loop_then_resume_matches_uninterrupted(
    tmp_path, uninterrupted):
  workdir = tmp_path / "run"
  proc = start_loop(tmp_path, workdir, pause=0.2)
  read_until(proc, "step 7")
  proc.kill()
  proc.communicate(timeout=60)
  assert not (workdir / "final.npz").exists()
  out, _ = run_loop(tmp_path, workdir)
  resumed = int(out.splitlines()[0].split()[-1])
  assert resumed in (6, 9)  # the last periodic save before the kill
  assert final_state(workdir) == uninterrupted


def test_sigkill_inside_save_leaves_tmp_dir_that_resume_skips(
    tmp_path, uninterrupted):
  workdir = tmp_path / "run"
  out, _ = run_loop(tmp_path, workdir, DIE_INSIDE_SAVE_OF_STEP="6")
  assert out.splitlines()[-1] == "step 5"
  checkpoints = workdir / "checkpoints"
  assert sorted(p.name for p in checkpoints.iterdir()) == [
      "3", "6.orbax-checkpoint-tmp"]
  out, err = run_loop(tmp_path, workdir)
  assert "unfinished save" in err
  assert out.splitlines()[0] == "resumed from 3"
  assert final_state(workdir) == uninterrupted


def test_sigterm_under_preemption_guard_saves_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  proc = start_loop(tmp_path, workdir, pause=0.2)
  read_until(proc, "step 4")
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 0, err
  stopped = out.splitlines()[-1]
  assert stopped.startswith("stopped at ") and stopped.endswith("on SIGTERM")
  step = int(stopped.split()[2])
  with Checkpointer(workdir) as ckpt:
    assert ckpt.latest_step() == step
  assert not (workdir / "final.npz").exists()


def test_preemption_guard_restores_previous_handlers():
  calls = []
  previous = signal.signal(signal.SIGTERM, lambda *_: calls.append("outer"))
  try:
    with preemption_guard() as guard:
      assert not guard.should_stop
      signal.raise_signal(signal.SIGTERM)
      assert guard.should_stop and guard.signal_name == "SIGTERM"
    assert calls == []
    signal.raise_signal(signal.SIGTERM)
    assert calls == ["outer"]
  finally:
    signal.signal(signal.SIGTERM, previous)
