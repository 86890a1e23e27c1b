"""Train-step throughput of dvl models alone, on whatever backend JAX finds.

    python benchmarks/train_step.py --models efficientnet_b0,resnet50 \
        --batch 256 --resolution 224 --dtype bfloat16

The step of ``dvl.jobs.benchmark`` (momentum SGD, softmax cross-entropy,
BatchNorm statistics updated, the state donated) without the peer or the
report: a quick look while changing a model. ``--depthwise xla,shifted``
compares the depthwise implementations of the models that have them,
``--scan on,off`` scanned stages against unrolled ones (``compile`` is the
cold lowering and compilation of the step; run it with an empty JAX cache).
``--kernels N`` lists the N XLA kernels the step spends most time in (from
``jax.profiler``'s trace of a few more steps): where a variant loses time.
The benchmark job (``experiments/benchmark.py``) is the full comparison.
"""

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dvl import lowering, models  # noqa: E402
from dvl.jobs import benchmark  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts


# Kernels that run others (their time includes their bodies' kernels).
_ENCLOSING = ('while', 'conditional', 'call')


def kernel_times(call, calls: int) -> dict[str, tuple[float, float]]:
  """``{HLO op: (microseconds, runs)}`` per call of ``call()``, over
  ``calls`` calls traced by ``jax.profiler``: every kernel event that names
  its HLO op."""
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      for _ in range(calls):
        call()
    path = next(Path(directory).rglob('perfetto_trace.json.gz'), None)
    if path is None:
      return {}
    with gzip.open(path) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  total, runs = collections.Counter(), collections.Counter()
  for event in events:
    op = (event.get('args') or {}).get('hlo_op')
    if event.get('ph') == 'X' and op:
      total[op] += event.get('dur', 0.0)
      runs[op] += 1
  return {op: (total[op] / calls, runs[op] / calls) for op in total}


def print_kernels(times: dict, top: int) -> None:
  """The ``top`` kinds of kernel (an HLO op's name without its number) and
  the ``top`` single kernels by time per step."""
  inner = {op: t for op, t in times.items()
           if op.split('.')[0] not in _ENCLOSING}
  whole = sum(us for us, _ in inner.values()) or 1.0
  kinds = collections.defaultdict(lambda: [0.0, 0.0])
  for op, (us, runs) in inner.items():
    kind = op.rsplit('.', 1)[0] if op.rsplit('.', 1)[-1].isdigit() else op
    kinds[kind][0] += us
    kinds[kind][1] += runs
  print(f'    kernel time summed over threads: {whole / 1e3:.1f} ms/step')
  for title, table in (('kind', kinds), ('kernel', inner)):
    print(f'    {title:40s} {"us/step":>10s} {"runs/step":>9s} {"share":>6s}')
    for op, (us, runs) in sorted(table.items(), key=lambda kv: -kv[1][0])[:top]:
      print(f'    {op:40s} {us:10.0f} {runs:9.0f} {100 * us / whole:5.1f}%')


def bench(name, batch, side, dtype, steps, kernels=0, **fields):
  runner = benchmark.DvlModel(name, resolution=side, dtype=dtype, remat=False)
  if fields:
    runner.model = models.build_model(name, dtype=dtype, **fields)
  state, x, y = runner.init(batch)
  start = time.perf_counter()
  step, _, memory = runner.compile_train(state, x, y)
  *state, loss = step(*state, x, y)
  loss.block_until_ready()
  compile_s = time.perf_counter() - start
  for _ in range(3):
    *state, loss = step(*state, x, y)
  loss.block_until_ready()

  def one():
    nonlocal state
    *state, loss = step(*state, x, y)
    loss.block_until_ready()
  seconds = benchmark.time_calls(one, steps)
  tflops = 6 * runner.macs * batch / seconds / 1e12
  print(f'{name:18s} {str(fields):28s} batch {batch:4d} res {runner.side} '
        f'{jnp.dtype(dtype).name:8s} {batch / seconds:9.1f} img/s  '
        f'compile {compile_s:5.1f}s  {tflops:7.2f} TFLOP/s  '
        f'{memory / 2 ** 20:7.0f} MiB', flush=True)
  if kernels:
    print_kernels(kernel_times(one, max(steps, 3)), kernels)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='efficientnet_b0,resnet50')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--resolution', type=int, default=224)
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--depthwise', default='',
                      help="compare depthwise impls, e.g. 'xla,shifted'")
  parser.add_argument('--scan', default='',
                      help="compare scanned and unrolled stages: 'on,off'")
  parser.add_argument('--kernels', type=int, default=0,
                      help='list the N kernels with the most time per step')
  args = parser.parse_args()
  print('backend', jax.default_backend(), jax.devices()[0].device_kind)
  for name in args.models.split(','):
    impls = [i for i in args.depthwise.split(',') if i]
    variants = [dict(depthwise_impl=i) for i in impls] if (
        impls and 'depthwise_impl' in models.model_fields(name)) else [{}]
    scans = [s == 'on' for s in args.scan.split(',') if s]
    if scans and 'scan' in models.model_fields(name):
      variants = [dict(v, scan=s) for v in variants for s in scans]
    for fields in variants:
      bench(name, args.batch, args.resolution, jnp.dtype(args.dtype),
            args.steps, kernels=args.kernels, **fields)


if __name__ == '__main__':
  main()
