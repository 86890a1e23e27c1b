"""What compiling the train steps alone costs a finished scaling search.

    python benchmarks/compile_floor.py --workdir runs/search
    python benchmarks/compile_floor.py --workdir runs/search --job-wall 822

For every distinct network that the sweep in ``--workdir`` trained (its
trials' ``config.json``, one per population key: the config without its
seed, the number of seeds), builds that population's vmapped train step
(``dvl.train.population.PopulationSteps``) and times its trace, its lowering
and XLA's compile of it, one network after another in this process, with
the persistent compilation cache off. The init and evaluation programs are
not compiled.

The sum of the XLA compiles is what the sweep pays for its train steps even
if tracing, lowering and the other programs cost nothing: set against the
sweep's wall time (``--job-wall`` seconds; else the populations' wall time
from ``results.jsonl``), it bounds from below the compile share that any
change outside XLA's compiler can reach on this machine.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dvl import lowering  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts

import jax  # noqa: E402
import ml_collections  # noqa: E402

from dvl import errors  # noqa: E402
from dvl.train import population  # noqa: E402
from dvl.train.job import setup  # noqa: E402


def networks(workdir: Path) -> list[tuple[str, ml_collections.ConfigDict,
                                          list[int]]]:
  """``(first trial id, config, seeds)`` of each distinct population key in
  the order the sweep first trained it."""
  rows = [json.loads(line) for line in
          (workdir / 'results.jsonl').read_text().splitlines() if line]
  seen, out = {}, []
  for row in rows:
    trial = row['trial']
    path = workdir / 'trials' / str(trial).split('@')[0] / 'config.json'
    if not path.is_file():
      continue
    config = ml_collections.ConfigDict(errors.load_json(
        path, 'It is the config the sweep wrote for that trial: run the '
        'sweep again in a new workdir to write it anew.'))
    tree = config.to_dict()
    seed = tree['train'].pop('seed', 0)
    key = json.dumps(tree, sort_keys=True, default=str)
    if key not in seen:
      seen[key] = (str(trial), config, [])
      out.append(key)
    if seed not in seen[key][2]:
      seen[key][2].append(int(seed))
  return [seen[k] for k in out]


def populations_wall(workdir: Path) -> float:
  """The populations' wall time: each population run's ``wall_s`` once."""
  runs = {}
  for line in (workdir / 'results.jsonl').read_text().splitlines():
    if line:
      row = json.loads(line)
      if row.get('population_dir'):  # not a row that reuses another's run
        runs[(row['population_dir'], row.get('steps'))] = row['wall_s'] or 0.0
  return float(sum(runs.values()))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True,
                      help='a finished scaling search (launch.py --workdir)')
  parser.add_argument('--job-wall', type=float, default=0.0,
                      help="the sweep's whole wall time in seconds")
  args = parser.parse_args()
  workdir = Path(args.workdir)
  if not (workdir / 'results.jsonl').is_file():
    sys.exit(f'{workdir} has no results.jsonl: point --workdir at the work '
             'directory of a finished scaling search')
  jax.config.update('jax_enable_compilation_cache', False)
  found = networks(workdir)
  if not found:
    sys.exit(f'{workdir}/trials holds no config.json of any trial in '
             'results.jsonl')
  total = {'trace': 0.0, 'lower': 0.0, 'compile': 0.0}
  print(f'{"network (first trial)":28s} {"seeds":>5s} {"trace s":>8s} '
        f'{"lower s":>8s} {"XLA compile s":>14s}')
  for trial, config, seeds in found:
    config = population.member_config(config, seeds[0])
    job = setup(config)
    pop = population.PopulationSteps(job, len(seeds))
    batch = next(population._stacked_batches(job, seeds, 0))  # pylint: disable=protected-access
    abstract = population._abstract(batch)  # pylint: disable=protected-access
    t0 = time.perf_counter()
    traced = pop.train_fn.trace(pop.abstract_state(), abstract)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    times = {'trace': t1 - t0, 'lower': t2 - t1, 'compile': t3 - t2}
    for name, value in times.items():
      total[name] += value
    print(f'{trial:28s} {len(seeds):5d} {times["trace"]:8.2f} '
          f'{times["lower"]:8.2f} {times["compile"]:14.2f}', flush=True)
  wall = args.job_wall or populations_wall(workdir)
  what = ('the job' if args.job_wall else "the populations' recorded")
  print(f'{len(found)} networks: trace {total["trace"]:.1f} s, lower '
        f'{total["lower"]:.1f} s, XLA compile {total["compile"]:.1f} s; '
        f'{what} wall {wall:.1f} s: XLA compile of the train steps alone is '
        f'{100 * total["compile"] / wall:.1f}% of it, with tracing and '
        f'lowering {100 * sum(total.values()) / wall:.1f}%')


if __name__ == '__main__':
  main()
