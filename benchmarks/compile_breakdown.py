"""Where one population's compile time goes: every program, how often, how long.

    python benchmarks/compile_breakdown.py                   # the default sweep's baseline
    python benchmarks/compile_breakdown.py --steps 4 --cache /tmp/cache
    python benchmarks/compile_breakdown.py --config runlocal=True

Plans the scaling search's baseline trial (``experiments/scaling_search.py``)
and trains its seeds as one population (``dvl.train.population.run``) for
``--steps`` steps of the full schedule, evaluating the validation split at
the end, in a fresh process with the persistent compilation cache at
``--cache`` (an empty temporary directory by default: a cold start). Then
does it again in the same process (``--again``: a promoted trial resuming
in the same worker) when asked.

Prints one line per program that JAX traced, lowered or compiled (from
``jax.monitoring``'s duration events and ``jax_log_compiles``), with its
count and seconds, the persistent cache's hits and misses, and the
population's own ``compile_s``, its wall time and this process's CPU time.
"""

import argparse
import collections
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dvl import lowering  # noqa: E402

lowering.add_cpu_xla_flags()  # as launch.py does, before JAX starts

import jax  # noqa: E402

from population import experiment_config  # noqa: E402  (benchmarks/)
from dvl import metrics_log  # noqa: E402
from dvl.sweep.trials import Planner, Trial  # noqa: E402
from dvl.train import population  # noqa: E402

_EVENTS = collections.defaultdict(list)  # event -> [seconds]
_PROGRAMS = []  # (phase, program name, seconds) from jax_log_compiles
_LINE = re.compile(r'Finished (tracing \+ transforming|jaxpr to MLIR module '
                   r'conversion|XLA compilation of) (.+?) in ([0-9.e-]+) ?sec')


class _Programs(logging.Handler):
  """Collects jax_log_compiles' per-program lines."""

  def emit(self, record):
    found = _LINE.search(record.getMessage())
    if found:
      _PROGRAMS.append(found.groups()[:2] + (float(found.group(3)),))


def listen() -> None:
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, secs, **kw: _EVENTS[event].append(secs))
  jax.monitoring.register_event_listener(
      lambda event, **kw: _EVENTS[event].append(0.0))
  jax.config.update('jax_log_compiles', True)
  handler = _Programs()
  for name in ('jax._src.dispatch', 'jax._src.interpreters.pxla',
               'jax._src.compiler', 'jax._src.pjit'):
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False


def summary(title: str) -> None:
  print(f'\n== {title}')
  per = collections.defaultdict(lambda: [0, 0.0])
  for phase, name, secs in _PROGRAMS:
    key = (phase.split()[0], name)
    per[key][0] += 1
    per[key][1] += secs
  print('XLA compilations (backend compile; a persistent-cache hit does not '
        'appear here):')
  for (phase, name), (count, secs) in sorted(per.items(),
                                              key=lambda kv: -kv[1][1]):
    if phase == 'XLA':
      print(f'  {count:3d} x {secs:7.2f} s  {name}')
  for phase, title_ in (('tracing', 'traced'), ('jaxpr', 'lowered')):
    total = sum(v[1] for k, v in per.items() if k[0] == phase)
    count = sum(v[0] for k, v in per.items() if k[0] == phase)
    print(f'{title_}: {count} programs, {total:.2f} s')
  for event in sorted(_EVENTS):
    if 'compil' in event or 'cache' in event:
      values = _EVENTS[event]
      print(f'  {event}: {len(values)} events, {sum(values):.2f} s')
  _PROGRAMS.clear()
  _EVENTS.clear()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='')
  parser.add_argument('--steps', type=int, default=4)
  parser.add_argument('--cache', default='')
  parser.add_argument('--again', action='store_true')
  args = parser.parse_args()
  config = experiment_config('scaling_search', args.config or None)
  cache = args.cache or tempfile.mkdtemp(prefix='jax-cache-')
  metrics_log.enable_compilation_cache(cache)
  planned = Planner(config).plan(Trial('baseline', 0, 1.0, 1.0, 1.0, 0))
  listen()
  seeds = list(config.sweep.seeds)
  work = Path(tempfile.mkdtemp(prefix='compile-breakdown-'))
  rounds = [args.steps] + ([2 * args.steps] if args.again else [])
  for i, stop_at in enumerate(rounds):
    started, cpu = time.perf_counter(), time.process_time()
    results = population.run(planned.config, work / 'pop', seeds,
                             [work / f'seed{s}' for s in seeds],
                             stop_at=stop_at)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    first = results[seeds[0]]
    summary(f'population {i + 1}: {len(seeds)} seeds, {planned.side}px, '
            f'to step {stop_at}: compile_s {first["compile_s"]:.2f} s, '
            f'wall {wall:.2f} s, process CPU time {cpu:.2f} s (cache {cache})')


if __name__ == '__main__':
  main()
