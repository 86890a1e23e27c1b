"""A population of k seeds against k separate runs: train images per second.

    python benchmarks/population.py                       # the default sweep's proxy
    python benchmarks/population.py --seeds 3 --steps 30 --rounds 5

Builds the scaling search's baseline proxy (``experiments/scaling_search.py``)
and times, in alternating rounds in one process, the train step of one
network stepped ``k`` times (``k`` separate runs' steps, each on its own
batch) against the population's vmapped step of ``k`` members (one call, a
batch per member). Both are compiled before timing; the inputs are random
batches of the dataset's shape, so the input pipeline is left out. Prints
the median images per second of each and their ratio (population /
separate): above 1, the population costs less per image.
"""

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dvl import lowering  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts

import importlib.util  # noqa: E402

from dvl.train import population, steps  # noqa: E402
from dvl.train.job import fresh_state, setup  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def experiment_config(name: str, arg: str | None):
  """``experiments/<name>.py``'s ``get_config(arg)``."""
  spec = importlib.util.spec_from_file_location(
      name, REPO / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--rounds', type=int, default=5)
  args = parser.parse_args()
  config = experiment_config('scaling_search', args.config or None)
  with config.unlocked():
    del config['sweep']
  config.job = 'train'
  job = setup(config)
  k = args.seeds
  batch_size = job.config.run.global_batch_size
  shape = tuple(job.config.run.image_shape)
  rng = np.random.default_rng(0)
  batch = {'image': rng.standard_normal((batch_size, *shape), np.float32),
           'label': rng.integers(0, job.config.run.num_classes, batch_size,
                                 dtype=np.int32)}
  batches = {key: np.stack([v] * k) for key, v in batch.items()}

  single = jax.jit(functools.partial(
      steps.train_step, model=job.model, tx=job.tx, schedule=job.schedule,
      hparams=job.hparams), donate_argnums=0)
  pop = population.PopulationSteps(job, k)
  states = [fresh_state(population.member_config(job.config, s), job.model,
                        job.tx, job.pipeline) for s in range(k)]
  stacked = population.stack(states)
  pop.compile(batches)

  def run_single(states):
    for _ in range(args.steps):
      states = [single(s, batch)[0] for s in states]
    jax.block_until_ready(states)
    return states

  def run_population(stacked):
    for _ in range(args.steps):
      stacked, _ = pop.train(stacked, batches)
    jax.block_until_ready(stacked)
    return stacked

  states, stacked = run_single(states), run_population(stacked)  # warm up
  rates = {'separate': [], 'population': []}
  images = args.steps * k * batch_size
  for _ in range(args.rounds):
    start = time.perf_counter()
    states = run_single(states)
    rates['separate'].append(images / (time.perf_counter() - start))
    start = time.perf_counter()
    stacked = run_population(stacked)
    rates['population'].append(images / (time.perf_counter() - start))
  sep = statistics.median(rates['separate'])
  together = statistics.median(rates['population'])
  print(f'{config.model.name} proxy at {shape[0]}px, batch {batch_size}, '
        f'{k} seeds, {args.rounds} alternating rounds of {args.steps} steps '
        f'on {jax.devices()[0].platform}:')
  print(f'  separate runs: {sep:.0f} img/s (rounds: '
        f'{", ".join(f"{r:.0f}" for r in rates["separate"])})')
  print(f'  population:    {together:.0f} img/s (rounds: '
        f'{", ".join(f"{r:.0f}" for r in rates["population"])})')
  print(f'  population / separate: {together / sep:.2f}')


if __name__ == '__main__':
  main()
