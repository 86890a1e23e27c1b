"""Metric logging: real TensorBoard event files, JSON lines, console format."""

import io
import json
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from dvl.metrics_log import (MetricWriter, StepTimer, enable_compilation_cache,
                             format_duration, format_summary)


def read_rows(workdir) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def read_tensorboard(directory) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} from the event files in ``directory``."""
  accumulator = event_accumulator.EventAccumulator(
      str(directory),
      size_guidance=event_accumulator.STORE_EVERYTHING_SIZE_GUIDANCE)
  accumulator.Reload()
  out = {}
  for tag in accumulator.Tags()["tensors"]:
    out[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in accumulator.Tensors(tag)]
  return out


def test_tensorboard_events_hold_the_scalars_per_split(tmp_path):
  with MetricWriter(tmp_path, total_steps=20, stream=io.StringIO()) as writer:
    writer.write_scalars(10, {"loss": 0.5, "accuracy": jnp.float32(0.25)})
    writer.write_scalars(20, {"loss": 0.125, "accuracy": 0.75})
    writer.write_scalars(20, {"accuracy": 0.5}, split="val")
  train = read_tensorboard(tmp_path / "tensorboard" / "train")
  assert train["loss"] == [(10, 0.5), (20, 0.125)]
  assert train["accuracy"] == [(10, 0.25), (20, 0.75)]
  assert read_tensorboard(tmp_path / "tensorboard" / "val") == {
      "accuracy": [(20, 0.5)]}


def test_resume_cuts_tensorboard_back_to_the_start_step(tmp_path):
  with MetricWriter(tmp_path, total_steps=8, stream=io.StringIO()) as writer:
    for step in range(1, 9):
      writer.write_scalars(step, {"loss": float(step)})
  with MetricWriter(tmp_path, total_steps=8, start_step=5,
                    stream=io.StringIO()) as writer:
    writer.write_scalars(6, {"loss": 60.0})
  assert read_tensorboard(tmp_path / "tensorboard" / "train")["loss"] == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 60.0)]


def test_jsonl_rows_parse_and_resume_drops_later_and_torn_rows(tmp_path):
  with MetricWriter(tmp_path, total_steps=10, stream=io.StringIO(),
                    tensorboard=False) as writer:
    for step in range(1, 9):
      writer.write_scalars(step, {"loss": 1.0 / step})
    writer.write_scalars(4, {"accuracy": 0.5}, split="val")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 9, "split": "tra')  # a row torn by a kill
  rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(rows) == 10
  with MetricWriter(tmp_path, total_steps=10, start_step=5,
                    stream=io.StringIO(), tensorboard=False) as writer:
    writer.write_scalars(6, {"loss": 0.5})
  rows = read_rows(tmp_path)
  assert [(r["step"], r["split"]) for r in rows] == [
      (1, "train"), (2, "train"), (3, "train"), (4, "train"), (5, "train"),
      (4, "val"), (6, "train")]
  assert rows[0]["loss"] == 1.0 and isinstance(rows[0]["time"], float)


def test_reserved_and_non_scalar_metrics_are_rejected(tmp_path):
  with MetricWriter(tmp_path, total_steps=1, stream=io.StringIO(),
                    tensorboard=False) as writer:
    with pytest.raises(ValueError, match="reserved"):
      writer.write_scalars(1, {"step": 3.0})
    with pytest.raises(ValueError, match="metric 'logits' has shape"):
      writer.write_scalars(1, {"logits": np.zeros(3)})


LINE = re.compile(r"step (\d+)/6 loss (\S+) acc (\S+) img/s (\d+) "
                  r"eta (\d+s|\d+m\d\ds|\d+h\d\dm)")


def test_plain_progress_lines_have_documented_format(tmp_path):
  stream = io.StringIO()
  with MetricWriter(tmp_path, total_steps=6, every_steps=2, stream=stream,
                    interactive=False, tensorboard=False) as writer:
    for step in range(1, 7):
      metrics = {"loss": jnp.float32(1 / step), "accuracy": jnp.float32(0.5)}
      writer.log_train(step, metrics, images=32)
  lines = stream.getvalue().splitlines()
  assert re.fullmatch(r"step 1/6 first step \(compile\) \d+\.\ds", lines[0])
  matches = [LINE.fullmatch(line) for line in lines[1:]]
  assert all(matches), lines
  assert [int(m.group(1)) for m in matches] == [2, 4, 6]
  assert [m.group(2) for m in matches] == ["0.5", "0.25", "0.1667"]
  assert matches[-1].group(5) == "0s"
  rows = read_rows(tmp_path)
  assert [r["step"] for r in rows] == [1, 2, 4, 6]
  assert "compile_s" in rows[0] and rows[1]["images_per_s"] > 0
  assert rows[-1]["loss"] == 0.16666667  # float32 logged by its shortest repr


def test_interactive_mode_draws_a_progress_bar(tmp_path):
  stream = io.StringIO()
  with MetricWriter(tmp_path, total_steps=4, every_steps=2, stream=stream,
                    interactive=True, tensorboard=False) as writer:
    for step in range(1, 5):
      writer.log_train(step, {"loss": 0.5, "accuracy": 0.75}, images=8)
  output = stream.getvalue()
  assert "4/4" in output and "loss 0.5 acc 0.75 img/s" in output
  assert "\r" in output  # redrawn in place, not printed line by line


def test_step_timer_separates_compile_from_steady_state():
  times = iter([100.0, 105.0, 107.0, 108.0])  # start, 1st step, 2 marks
  timer = StepTimer(clock=lambda: next(times))
  timer.add(64)  # the first step: compiling, not counted in throughput
  timer.mark()
  for _ in range(4):
    timer.add(64)
  timer.mark()
  assert timer.compile_s == 5.0
  assert timer.window_images_per_s == 128.0
  timer.add(64)
  timer.mark()
  assert timer.window_images_per_s == 64.0
  assert timer.images_per_s == pytest.approx(320 / 3)


def test_config_model_info_and_summary_files(tmp_path):
  config = ml_collections.ConfigDict({"model": {"name": "resnet18"},
                                      "optim": {"lr": 0.1}})
  stream = io.StringIO()
  with MetricWriter(tmp_path, total_steps=1, stream=stream,
                    tensorboard=False) as writer:
    writer.write_config(config)
    writer.log_model_info(params=11_689_512, macs=1_814_073_856,
                          convention="1 MAC = 1 multiply-add")
    writer.write_summary({"val_accuracy": np.float32(0.75), "epochs": 3})
  assert json.loads((tmp_path / "config.json").read_text()) == config.to_dict()
  assert json.loads((tmp_path / "model_info.json").read_text()) == {
      "params": 11_689_512, "macs": 1_814_073_856,
      "convention": "1 MAC = 1 multiply-add"}
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["val_accuracy"] == 0.75 and summary["epochs"] == 3
  assert "11.69M params, 1.814G MACs" in stream.getvalue()


def test_format_summary_aligns_values():
  results = {"accuracy": 0.756789, "images_per_s": 812.0, "run": "b0"}
  assert format_summary(results).splitlines() == [
      "accuracy      0.7568", "images_per_s  812", "run           b0"]
  assert format_summary(results, markdown=True).splitlines()[2] == (
      "| accuracy | 0.7568 |")


@pytest.mark.parametrize("seconds, text", [
    (45, "45s"), (72, "1m12s"), (7380, "2h03m"), (float("nan"), "?")])
def test_format_duration(seconds, text):
  assert format_duration(seconds) == text


@pytest.fixture
def restore_jax_cache_config():
  names = ("jax_compilation_cache_dir",
           "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  saved = {name: getattr(jax.config, name) for name in names}
  yield
  for name, value in saved.items():
    jax.config.update(name, value)


def test_enable_compilation_cache_sets_jax_config_once(
    tmp_path, monkeypatch, restore_jax_cache_config):
  del restore_jax_cache_config
  jax.config.update("jax_compilation_cache_dir", None)
  monkeypatch.setenv("DVL_JAX_CACHE", str(tmp_path / "cache"))
  path = enable_compilation_cache()
  assert path == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
  assert jax.config.jax_compilation_cache_dir == path
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
  assert enable_compilation_cache() == path
  with pytest.warns(UserWarning, match="already at"):
    assert enable_compilation_cache(tmp_path / "other") == path
