"""The benchmark job: dvl's training and inference speed against a peer.

    python launch.py --config experiments/benchmark.py --workdir runs/bench

For each model of ``config.models`` it measures, on the backend JAX finds:

* the train step (momentum SGD, softmax cross-entropy, BatchNorm statistics
  updated, the state donated) in images/s at each of ``config.batch_sizes``,
  its achieved FLOP/s (3 x 2 x MACs per image) and their fraction of the
  matrix-multiply peak measured in the same run, and XLA's estimate of the
  step's memory (arguments, outputs and temporaries, less the donated
  buffers it reuses);
* inference latency at ``config.infer_batch`` (1: one image at a time);
* the cold compile time of the train step (an empty persistent cache) and
  the warm one (in-memory caches cleared, programs read back from the
  persistent cache).

The peer is the same architecture from ``keras.applications`` with Keras 3
on the TensorFlow backend, trained with ``train_on_batch`` and SGD and
queried with ``predict_on_batch``: what a user picks instead. Timings of
dvl and of the peer alternate, ``config.rounds`` times, so that both meet
the machine in the same state; the peer runs in a process of its own
(``dvl.peer``). Each figure is the median over rounds, and the table gives
dvl / peer ratios (above 1: dvl is faster). Writes ``benchmark.md`` and
``benchmark.json`` in the workdir.
"""

import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dvl import flops, metrics_log, models
from dvl.peer import PeerProcess, keras_peer, time_calls


@dataclasses.dataclass
class Timing:
  """Per-call seconds of one measured function, one entry per round."""
  seconds: list = dataclasses.field(default_factory=list)

  @property
  def median(self) -> float:
    return statistics.median(self.seconds) if self.seconds else float('nan')


def matmul_peak(backend: str, repeats: int = 5) -> float:
  """FLOP/s of a large jitted matrix product (float32 on CPU, bfloat16 on
  accelerators), the best of ``repeats``: the peak the table compares to."""
  n, dtype = (2048, jnp.float32) if backend == 'cpu' else (8192, jnp.bfloat16)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  product = jax.jit(jnp.matmul)
  product(a, b).block_until_ready()
  best = min(time_calls(lambda: product(a, b).block_until_ready(), 2)
             for _ in range(repeats))
  return 2 * n ** 3 / best


class DvlModel:
  """A dvl model's jitted train step and inference function."""

  def __init__(self, name: str, *, resolution: int, dtype, remat: bool):
    self.name = name
    # build_model refuses remat for a model without the field (validate
    # says so first, in the job's words).
    remat_field = {'remat': True} if remat else {}
    self.model = models.build_model(name, dtype=dtype, **remat_field)
    self.side = resolution or self.model.default_resolution
    self.dtype = jnp.dtype(dtype)
    self.macs = flops.count(self.model, (self.side, self.side, 3)).macs
    self.tx = optax.sgd(0.01, momentum=0.9)

  def _loss(self, params, batch_stats, x, y):
    (logits, _), updates = self.model.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'], rngs={'dropout': jax.random.key(0)})
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), y).mean()
    return loss, updates['batch_stats']

  def _step(self, params, batch_stats, opt_state, x, y):
    (loss, batch_stats), grads = jax.value_and_grad(
        self._loss, has_aux=True)(params, batch_stats, x, y)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  def init(self, batch: int):
    """The state and a batch of random data (1000 classes)."""
    x = jax.random.normal(jax.random.key(0), (batch, self.side, self.side, 3))
    y = jax.random.randint(jax.random.key(1), (batch,), 0, 1000)
    variables = jax.jit(lambda: self.model.init(
        jax.random.key(2), x[:1], train=False))()
    params = variables['params']
    state = (params, variables.get('batch_stats', {}), self.tx.init(params))
    return state, x, y

  def compile_train(self, state, x, y):
    """``(compiled step, seconds to lower and compile, memory bytes)``."""
    start = time.perf_counter()
    compiled = jax.jit(self._step, donate_argnums=(0, 1, 2)).lower(
        *state, x, y).compile()
    seconds = time.perf_counter() - start
    return compiled, seconds, step_memory(compiled)

  def compile_infer(self, variables, x):
    def infer(variables, x):
      return self.model.apply(variables, x, train=False)[0]
    return jax.jit(infer).lower(variables, x).compile()


def step_memory(compiled) -> float:
  """Bytes XLA plans for one call: arguments, outputs and temporaries,
  less the donated buffers that outputs reuse (NaN when not reported)."""
  try:
    info = compiled.memory_analysis()
  except (NotImplementedError, AttributeError):
    return float('nan')
  if info is None:
    return float('nan')
  return float(info.argument_size_in_bytes + info.output_size_in_bytes
               + info.temp_size_in_bytes - info.alias_size_in_bytes)


def bench_model(name: str, config, peak: float) -> list[dict]:
  """The table rows of one model: one per training batch size."""
  dtype = jnp.dtype(config.dtype)
  dvl_model = DvlModel(name, resolution=config.resolution, dtype=dtype,
                       remat=config.remat)
  use_peer = config.peer == 'keras' and keras_peer(name) is not None
  peer = PeerProcess(name, dvl_model.side) if use_peer else None
  try:
    rows = [_bench_batch(dvl_model, peer, batch, config, peak)
            for batch in config.batch_sizes]
    rows[-1].update(infer_latency(dvl_model, peer, config))
  finally:
    if peer:
      peer.close()
  return rows


def _bench_batch(dvl_model: DvlModel, peer, batch: int, config,
                 peak: float) -> dict:
  """One table row: the train step of dvl (and the peer) at ``batch``."""
  state, x, y = dvl_model.init(batch)
  step, cold_s, memory = dvl_model.compile_train(state, x, y)
  warm_s = float('nan')
  if config.warm_compile:
    jax.clear_caches()
    _, warm_s, _ = dvl_model.compile_train(state, x, y)
  holder = {'state': state}

  def dvl_train():
    *new_state, loss = step(*holder['state'], x, y)
    holder['state'] = tuple(new_state)
    loss.block_until_ready()

  timings = {'dvl': Timing(), 'peer': Timing()}
  time_calls(dvl_train, config.warmup)
  if peer:
    peer.train_seconds(batch, config.warmup)
  for _ in range(config.rounds):
    timings['dvl'].seconds.append(time_calls(dvl_train, config.steps))
    if peer:
      timings['peer'].seconds.append(peer.train_seconds(batch, config.steps))
  dvl_s, peer_s = timings['dvl'].median, timings['peer'].median
  achieved = 6 * dvl_model.macs * batch / dvl_s
  return dict(
      model=dvl_model.name, peer=keras_peer(dvl_model.name) if peer else '',
      batch=batch, resolution=dvl_model.side, dtype=dvl_model.dtype.name,
      macs=dvl_model.macs,
      train_img_s=batch / dvl_s,
      peer_train_img_s=batch / peer_s if peer else float('nan'),
      train_ratio=peer_s / dvl_s if peer else float('nan'),
      tflops=achieved / 1e12, peak_fraction=achieved / peak,
      compile_cold_s=cold_s, compile_warm_s=warm_s,
      warm_over_cold=warm_s / cold_s, step_memory_mb=memory / 2 ** 20)


def infer_latency(dvl_model: DvlModel, peer, config) -> dict:
  """Median milliseconds of one inference call at ``config.infer_batch``."""
  if not config.infer_batch:
    return {}
  state, x, _ = dvl_model.init(config.infer_batch)
  variables = {'params': state[0], 'batch_stats': state[1]}
  infer = dvl_model.compile_infer(variables, x)
  # Each maps a number of calls to seconds per call.
  timed = {'dvl': lambda calls: time_calls(
      lambda: infer(variables, x).block_until_ready(), calls)}
  if peer:
    timed['peer'] = lambda calls: peer.infer_seconds(config.infer_batch,
                                                     calls)
  timings = {k: Timing() for k in timed}
  for fn in timed.values():
    fn(config.warmup)
  for _ in range(config.rounds):
    for key, fn in timed.items():
      timings[key].seconds.append(fn(config.infer_calls))
  out = {'infer_batch': config.infer_batch,
         'infer_ms': 1e3 * timings['dvl'].median}
  if peer:
    out.update(peer_infer_ms=1e3 * timings['peer'].median,
               infer_ratio=timings['peer'].median / timings['dvl'].median)
  return out


COLUMNS = (
    ('model', 'model', '{}'), ('peer', 'peer', '{}'), ('batch', 'batch', '{}'),
    ('resolution', 'res', '{}'), ('train_img_s', 'dvl train img/s', '{:.1f}'),
    ('peer_train_img_s', 'peer train img/s', '{:.1f}'),
    ('train_ratio', 'dvl/peer train', '{:.2f}'),
    ('tflops', 'TFLOP/s', '{:.3f}'), ('peak_fraction', 'of matmul peak',
                                      '{:.0%}'),
    ('infer_ms', 'dvl infer ms', '{:.1f}'),
    ('peer_infer_ms', 'peer infer ms', '{:.1f}'),
    ('infer_ratio', 'dvl/peer infer', '{:.2f}'),
    ('compile_cold_s', 'compile cold s', '{:.1f}'),
    ('compile_warm_s', 'warm s', '{:.1f}'),
    ('step_memory_mb', 'step MiB', '{:.0f}'),
)


def _cell(row: dict, key: str, fmt: str) -> str:
  value = row.get(key)
  if value is None or value == '' or (isinstance(value, float)
                                      and np.isnan(value)):
    return '-'
  return fmt.format(value)


def markdown(rows: list[dict], header: dict) -> str:
  """The report: the machine, the peak, then one table row per measurement."""
  lines = [
      f"# dvl benchmark ({header['backend']}: {header['device']})", '',
      f"Matrix-multiply peak measured in this run: "
      f"{header['matmul_tflops']:.3f} TFLOP/s ({header['peak_dtype']}). "
      'Train step: momentum SGD, softmax cross-entropy, BatchNorm statistics '
      f"updated, {header['dtype']} compute; FLOP/s count 3 x 2 x MACs per "
      'image. Ratios are dvl / peer speed (above 1: dvl is faster), medians '
      f"of {header['rounds']} alternating rounds. Inference latency at batch "
      f"{header['infer_batch']}. Warm compile: in-memory caches cleared, the "
      'program read back from the persistent cache.', '',
      '| ' + ' | '.join(title for _, title, _ in COLUMNS) + ' |',
      '|' + '---|' * len(COLUMNS)]
  for row in rows:
    lines.append('| ' + ' | '.join(_cell(row, key, fmt)
                                   for key, _, fmt in COLUMNS) + ' |')
  return '\n'.join(lines) + '\n'


def validate(config) -> None:
  """Raises ValueError on an unknown model, peer or a bad number."""
  for name in config.models:
    models.build_model(name)  # an unknown name lists the valid ones
    if config.remat and not models.get_spec(name).remat:
      able = [n for n, s in models.MODELS.items() if s.remat]
      raise ValueError(f'config.remat is set but {name} does not support '
                       f'remat; these models do: {", ".join(able)}. Drop '
                       'remat or choose one of them')
  if config.peer not in ('keras', 'none'):
    raise ValueError(f"config.peer must be 'keras' or 'none'; got "
                     f'{config.peer!r}')
  for field in ('rounds', 'steps', 'infer_calls'):
    if config[field] < 1:
      raise ValueError(f'config.{field} must be >= 1; got {config[field]}')
  if not config.batch_sizes or min(config.batch_sizes) < 1:
    raise ValueError('config.batch_sizes needs batch sizes >= 1; got '
                     f'{tuple(config.batch_sizes)}')


CACHE_MARKER = '.dvl_benchmark_cache'


def empty_cache_dir(workdir: Path) -> Path:
  """``workdir/jax_cache``, empty, for the cold compile.

  The benchmark clears only a cache it made itself (marked by
  ``CACHE_MARKER``); any other directory of that name is the user's, and is
  refused rather than deleted.
  """
  cache = workdir / 'jax_cache'
  if cache.exists():
    if not (cache / CACHE_MARKER).is_file():
      raise FileExistsError(
          f'{cache} exists and was not made by the benchmark, which needs an '
          'empty compilation cache there for the cold compile; move it away '
          'or choose another workdir')
    shutil.rmtree(cache)
  cache.mkdir(parents=True)
  (cache / CACHE_MARKER).write_text(
      'made by the dvl benchmark, which empties it on every run\n')
  return cache


def run(config, workdir: str) -> list[dict]:
  """Runs the benchmark of ``config`` and writes the report in ``workdir``."""
  validate(config)
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  metrics_log.enable_compilation_cache(empty_cache_dir(workdir))
  backend = jax.default_backend()
  header = dict(backend=backend, device=jax.devices()[0].device_kind,
                dtype=config.dtype, rounds=config.rounds,
                infer_batch=config.infer_batch,
                peak_dtype='float32' if backend == 'cpu' else 'bfloat16')
  peak = matmul_peak(backend)
  header['matmul_tflops'] = peak / 1e12
  print(f"{backend} ({header['device']}): matmul peak "
        f'{peak / 1e12:.3f} TFLOP/s', flush=True)
  rows = []
  for name in config.models:
    for row in bench_model(name, config, peak):
      rows.append(row)
      print(' '.join(f'{k}={_cell(row, k, f)}' for k, _, f in COLUMNS),
            flush=True)
  report = markdown(rows, header)
  (workdir / 'benchmark.md').write_text(report)
  (workdir / 'benchmark.json').write_text(json.dumps(
      dict(header, rows=rows), indent=2, default=float))
  print(report, flush=True)
  return rows
