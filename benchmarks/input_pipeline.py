"""Input images/s of both pipelines against the train step of the proxy.

Usage (from the repository root):
  python benchmarks/input_pipeline.py --dataset cifar10 --batch_size 256
  python benchmarks/input_pipeline.py --dataset shapes --crop inception --mix

For the scaling search's input config (``experiments/scaling_search.py``,
``--dataset``: its flips, and pad-and-random-crop on cifar10) and its default
proxy (``dvl.models.get_spec('efficientnet').scaling.proxy`` at 32x32), on
whatever device JAX finds, measures images/s of

* ``input``: each pipeline alone (``train_iter``: gathering, augmenting,
  normalising), for ``tfdata`` (the host pipeline) and ``device``;
* ``step``: the jitted train step alone, on one batch already on the device;
* ``loop``: pipeline and step together, as the train loop runs them (the host
  pipeline prefetches on its own threads while the step runs; the device
  pipeline's program runs in the device's queue between steps);

then prints each pipeline's input rate as a multiple of the step's rate (below
1: the pipeline is the bound). ``--crop``, ``--jitter`` and ``--mix`` add
augmentations. The first ``--warmup`` batches and steps (tracing, compiling,
prefetch fill) are not timed.
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dvl import lowering  # noqa: E402
from dvl.data import default_input_config, make_pipeline  # noqa: E402
from dvl.train import job as job_lib  # noqa: E402
from dvl.train import parallel  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts
PIPELINES = ('tfdata', 'device')


def search_config(args):
  """The scaling search's config for ``args.dataset``, with the benchmark's
  batch size and augmentations."""
  path = REPO / 'experiments' / 'scaling_search.py'
  spec = importlib.util.spec_from_file_location('scaling_search', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(f'dataset={args.dataset}')
  config.job = 'train'
  config.train.compilation_cache = False
  config.input.batch_size = args.batch_size
  if args.crop:
    config.input.augment.crop = args.crop
  if args.jitter:
    config.input.augment.color_jitter = args.jitter
  if args.mix:
    config.input.augment.update(dict(mixup_alpha=0.2, cutmix_alpha=1.0))
  return config


def timed(batches, steps: int, warmup: int) -> float:
  """Seconds for ``steps`` batches of ``batches`` after ``warmup`` untimed."""
  for _ in range(warmup):
    jax.block_until_ready(next(batches))
  start = time.perf_counter()
  for _ in range(steps):
    last = next(batches)
  jax.block_until_ready(last)
  return time.perf_counter() - start


def step_seconds(job, state, batch, steps: int, warmup: int):
  for _ in range(warmup):
    state, metrics = job.train_step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = job.train_step(state, batch)
  jax.block_until_ready(metrics)
  return time.perf_counter() - start, state


def loop_seconds(job, state, batches, steps: int, warmup: int):
  def run(count, state):
    for _ in range(count):
      state, metrics = job.train_step(
          state, parallel.put_batch(next(batches), job.mesh))
    jax.block_until_ready(metrics)
    return state
  state = run(warmup, state)
  start = time.perf_counter()
  state = run(steps, state)
  return time.perf_counter() - start, state


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default='shapes',
                      help="the scaling search's: shapes or cifar10")
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--crop', default='', help='pad_crop or inception')
  parser.add_argument('--jitter', type=float, default=0.0)
  parser.add_argument('--mix', action='store_true')
  parser.add_argument('--repeats', type=int, default=1,
                      help='loop measurements per pipeline (median kept)')
  args = parser.parse_args()
  config = search_config(args)
  device = jax.devices()[0]
  default = default_input_config().augment
  augment = {k: v for k, v in config.input.augment.items() if v != default[k]}
  print(f'backend {jax.default_backend()} ({device.device_kind}), '
        f'{len(jax.devices())} device(s); dataset {config.input.dataset} at '
        f'{config.input.resolution}px, batch {args.batch_size}, augment '
        f'{augment}')
  images = args.steps * args.batch_size
  rates = {}
  for name in PIPELINES:
    started = time.perf_counter()
    pipeline = make_pipeline(dict(config.input.to_dict(), pipeline=name),
                             seed=0)
    ready = time.perf_counter() - started
    seconds = timed(pipeline.train_iter(0), args.steps, args.warmup)
    rates[f'input {name}'] = images / seconds
    print(f'input {name:7s} {images / seconds:10,.0f} images/s '
          f'(ready in {ready:.1f}s)', flush=True)
  job = job_lib.setup(config)
  state = parallel.replicate(
      job_lib.fresh_state(job.config, job.model, job.tx), job.mesh)
  batch = parallel.put_batch(next(job.pipeline.train_iter(0)), job.mesh)
  seconds, state = step_seconds(job, state, batch, args.steps, args.warmup)
  step_rate = rates['step'] = images / seconds
  print(f'step {config.model.name} proxy {step_rate:10,.0f} images/s '
        f'({job.cost.macs / 1e6:.1f}M MACs per image)', flush=True)
  loops = {name: [] for name in PIPELINES}
  for _ in range(args.repeats):  # alternated: the load of a shared machine
    for name in PIPELINES:       # drifts between measurements
      pipeline = make_pipeline(dict(config.input.to_dict(), pipeline=name),
                               seed=0)
      seconds, state = loop_seconds(job, state, pipeline.train_iter(0),
                                    args.steps, args.warmup)
      loops[name].append(images / seconds)
      print(f'loop  {name:7s} {images / seconds:10,.0f} images/s', flush=True)
  for name, measured in loops.items():
    rates[f'loop {name}'] = float(np.median(measured))
  for name in PIPELINES:
    ratio = rates[f'input {name}'] / step_rate
    print(f'input {name} / step: {ratio:.2f}'
          + (' (the pipeline is the bound)' if ratio < 1 else ''))
  print(f"input device / input tfdata: "
        f"{rates['input device'] / rates['input tfdata']:.2f}; "
        f"loop device / loop tfdata (medians): "
        f"{rates['loop device'] / rates['loop tfdata']:.2f}")


if __name__ == '__main__':
  main()
