"""The benchmark job against a real Keras 3 peer on TensorFlow."""

import json
import math
import os

import pytest

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

from dvl import flops, models  # noqa: E402
from dvl.jobs import benchmark  # noqa: E402
from dvl import peer as peer_lib  # noqa: E402
from train_runs import experiment_config, launch, run_env  # noqa: E402


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('bench')
  env = run_env(tmp_path_factory.mktemp('tfds'),
                tmp_path_factory.mktemp('unused_cache'))
  result = launch('experiments/benchmark.py:runlocal', workdir, env)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result.stdout


def test_report_rows_hold_consistent_figures(report):
  workdir, _ = report
  data = json.loads((workdir / 'benchmark.json').read_text())
  assert data['matmul_tflops'] > 0
  (row,) = data['rows']
  assert (row['model'], row['peer'], row['batch'], row['resolution']) == (
      'mobilenet_v1', 'MobileNet', 2, 64)
  macs = flops.count(models.build_model('mobilenet_v1'), (64, 64, 3)).macs
  assert row['macs'] == macs
  # Ratios and FLOP/s follow from the measured speeds.
  assert row['train_ratio'] == pytest.approx(
      row['train_img_s'] / row['peer_train_img_s'])
  assert row['tflops'] == pytest.approx(6 * macs * row['train_img_s'] / 1e12)
  assert row['peak_fraction'] == pytest.approx(
      row['tflops'] / data['matmul_tflops'])
  assert row['infer_ratio'] == pytest.approx(
      row['peer_infer_ms'] / row['infer_ms'])
  # Parameters, their momentum and the batch at least: 2 x 4.2M floats.
  assert row['step_memory_mb'] > 2 * 4.2e6 * 4 / 2 ** 20


def test_warm_compile_reads_the_persistent_cache(report):
  workdir, _ = report
  (row,) = json.loads((workdir / 'benchmark.json').read_text())['rows']
  assert row['compile_warm_s'] < 0.5 * row['compile_cold_s']
  assert any(path.name != benchmark.CACHE_MARKER
             for path in (workdir / 'jax_cache').iterdir())


def test_the_cache_cleared_is_only_the_one_the_benchmark_made(tmp_path):
  users = tmp_path / 'jax_cache'
  users.mkdir()
  (users / 'notes.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='was not made by the benchmark'):
    benchmark.empty_cache_dir(tmp_path)
  assert (users / 'notes.txt').read_text() == 'mine'
  fresh = tmp_path / 'fresh'
  cache = benchmark.empty_cache_dir(fresh)
  (cache / 'entry-cache').write_bytes(b'compiled')
  assert benchmark.empty_cache_dir(fresh) == cache
  assert [p.name for p in cache.iterdir()] == [benchmark.CACHE_MARKER]


def test_markdown_table_has_every_column(report):
  workdir, stdout = report
  table = (workdir / 'benchmark.md').read_text()
  header = next(line for line in table.splitlines()
                if line.startswith('| model'))
  assert header.count('|') == len(benchmark.COLUMNS) + 1
  row = next(line for line in table.splitlines()
             if line.startswith('| mobilenet_v1'))
  assert '| MobileNet |' in row and '-' not in row.split('|')[7]
  assert table in stdout


def test_a_model_without_a_peer_gets_dashes():
  row = dict(model='lenet5', peer='', train_img_s=10.0,
             peer_train_img_s=math.nan)
  text = benchmark.markdown([row], dict(
      backend='cpu', device='x', matmul_tflops=1.0, peak_dtype='float32',
      dtype='float32', rounds=1, infer_batch=1))
  assert '| lenet5 | - | - |' in text


@pytest.mark.parametrize('change, message', [
    (dict(models=('resnet5',)), "unknown model 'resnet5'"),
    (dict(peer='torch'), "config.peer must be 'keras' or 'none'"),
    (dict(rounds=0), 'config.rounds must be >= 1'),
    (dict(batch_sizes=()), 'config.batch_sizes needs batch sizes'),
    (dict(remat=True), 'mobilenet_v1 does not support remat'),
])
def test_bad_config_is_refused(change, message):
  config = experiment_config('benchmark', 'runlocal')
  with config.unlocked():
    config.update(change)
  with pytest.raises(ValueError, match=message):
    benchmark.validate(config)


def test_peer_process_answers_and_reports_its_failures():
  """The peer lives in a child process: its timings come back over the
  pipe, and a network Keras refuses to build is an error naming it."""
  peer = peer_lib.PeerProcess('mobilenet_v1', 32)
  try:
    assert peer.process.pid != os.getpid()
    seconds = peer.infer_seconds(1, 2)
    assert 0 < seconds < 60
  finally:
    peer.close()
  assert not peer.process.is_alive()
  # keras.applications.MobileNet needs at least 32x32 inputs.
  with pytest.raises(RuntimeError, match='Keras peer for mobilenet_v1 failed'):
    peer_lib.PeerProcess('mobilenet_v1', 16)
