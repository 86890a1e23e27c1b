"""Is training bound by the input pipeline or by the train step?

    python benchmarks/train_vs_input.py --config experiments/cifar10.py
    python benchmarks/train_vs_input.py --config experiments/quickstart.py --steps 30

For an experiment config, measures images/s of

* ``input``: the input pipeline alone (``train_iter``: reading, augmenting,
  batching), with nothing else running;
* ``step``: the jitted train step alone, on one batch already on the device;
* ``loop``: both together, as the train job runs them (the pipeline prefetches
  on its own threads while the step runs).

On a CPU both compete for the same cores, so ``loop`` is below the smaller of
the two. Compilation and the first batches are left out of the timings.
"""

import sys
import time
from pathlib import Path

import jax
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dvl.train import job as job_lib  # noqa: E402
from dvl.train import loop, parallel  # noqa: E402
from dvl import lowering  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. experiments/cifar10.py',
    lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps (or batches).')
flags.mark_flags_as_required(['config'])


def time_input(batches, steps: int) -> float:
  for _ in range(3):
    next(batches)
  start = time.perf_counter()
  for _ in range(steps):
    next(batches)
  return time.perf_counter() - start


def time_step(job, state, batch, steps: int):
  state, metrics = job.train_step(state, batch)  # compiles
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = job.train_step(state, batch)
  jax.block_until_ready(metrics)
  return time.perf_counter() - start, state


def time_loop(job, state, batches, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = job.train_step(
        state, parallel.put_batch(next(batches), job.mesh))
  jax.block_until_ready(metrics)
  return time.perf_counter() - start


def main(argv):
  del argv
  loop.prepare_process(_CONFIG.value)
  job = job_lib.setup(_CONFIG.value)
  print(loop.describe(job))
  steps, batch_size = _STEPS.value, job.config.run.global_batch_size
  state = parallel.replicate(
      job_lib.fresh_state(job.config, job.model, job.tx, job.pipeline),
      job.mesh)
  batches = job.pipeline.train_iter(0)
  input_s = time_input(batches, steps)
  batch = parallel.put_batch(next(batches), job.mesh)
  step_s, state = time_step(job, state, batch, steps)
  loop_s = time_loop(job, state, batches, steps)
  rates = {'input': steps * batch_size / input_s,
           'step': steps * batch_size / step_s,
           'loop': steps * batch_size / loop_s}
  for name, rate in rates.items():
    print(f'{name:6s} {rate:9.1f} images/s')
  bound = 'input pipeline' if rates['input'] < rates['step'] else 'train step'
  print(f'bound by the {bound}; the loop runs at '
        f'{100 * rates["loop"] / min(rates["input"], rates["step"]):.0f}% of '
        'the slower one on its own')


if __name__ == '__main__':
  app.run(main)
