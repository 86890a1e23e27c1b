"""Aggregate training images per second of the sweep's populations: one
process against pool workers packed on the same host.

    python benchmarks/packing.py                      # four populations, 60 steps
    python benchmarks/packing.py --steps 100 --workers 2 --populations 4

Plans the first populations of the scaling search's default sweep
(``experiments/scaling_search.py``: the baseline and the first φ = 1 grid
points, every seed of each) and trains them for ``--steps`` steps of the
full schedule (a halving rung), once through the sequential executor (one
process, XLA on every core) and once through a pool of ``--workers``
workers (``--threads`` cores each, or the cores divided among them). Each
run has its own workdir and an empty persistent compilation cache.
Prints, for each, the wall time, the images trained (steps × seeds ×
batch, summed over the populations) and their ratio, and the compile and
train seconds the populations recorded.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dvl import lowering  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts

from population import experiment_config  # noqa: E402  (benchmarks/)
from dvl.sweep import executors, search  # noqa: E402
from dvl.sweep.trials import Planner  # noqa: E402


def tasks(config, count: int, steps: int, root: Path) -> list:
  """The first ``count`` populations of the sweep's φ = 1 search."""
  planner = Planner(config)
  plans = search.search_trials(planner, search.check(config.sweep),
                               config.sweep.seeds)
  families = {}
  for planned in plans:
    families.setdefault(planned.family, []).append(planned)
  out = []
  for i, members in enumerate(list(families.values())[:count]):
    name = f'pop{i}'
    out.append(executors.Task(
        name, members[0].config, str(root / name),
        [(p.id, p.trial.seed, str(root / p.id)) for p in members], steps))
  return out


def timed(executor, work: list) -> tuple[float, dict]:
  started = time.perf_counter()
  try:
    outcomes = {t: o for _, out in executor.run(work) for t, o in out.items()}
  finally:
    executor.close()
  return time.perf_counter() - started, outcomes


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--populations', type=int, default=4)
  parser.add_argument('--steps', type=int, default=60)
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--threads', type=int, default=0)
  args = parser.parse_args()
  config = experiment_config('scaling_search', None)
  batch = config.input.batch_size
  for name in ('sequential', 'pool'):
    root = Path(tempfile.mkdtemp(prefix=f'packing-{name}-'))
    sweep = config.sweep
    sweep.executor, sweep.workers = name, args.workers
    sweep.threads_per_worker = args.threads
    # Read by the populations (this process's, the pool's workers').
    os.environ['DVL_JAX_CACHE'] = str(root / 'jax_cache')
    work = tasks(config, args.populations, args.steps, root)
    make = executors.Sequential if name == 'sequential' else executors.Pool
    wall, outcomes = timed(make(sweep), work)
    bad = [o for o in outcomes.values() if o['status'] != 'ok']
    if bad:
      raise RuntimeError(f'{name}: {bad[0]}')
    images = args.steps * batch * len(outcomes)
    runs = {(o['compile_s'], o['train_s']) for o in outcomes.values()}
    compiled = sum(c for c, _ in runs)
    trained = sum(t for _, t in runs)
    print(f'{name} ({args.workers if name == "pool" else 1} process(es)): '
          f'{len(work)} populations, {images} images in {wall:.1f} s: '
          f'{images / wall:.1f} images/s; the populations recorded compile '
          f'{compiled:.1f} s and train {trained:.1f} s '
          f'({images / trained:.1f} images/s of train time summed over '
          'processes)', flush=True)


if __name__ == '__main__':
  main()
