"""Reading a sweep's rows: seeds pooled with their confidence intervals, the
chosen coefficients, the scaling curves, the Pareto front, the halving
rungs, and compound scaling against each single dimension as paired
differences (``dvl.sweep.stats``).

A point is one network of the sweep at one budget (a kind, φ, coefficients
and budget); its seeds are its repeats. Rows of a halving rung (``rung_of``
set) are read only by ``rungs``.
"""

import math

import numpy as np

from dvl.sweep import laws, star, stats
from dvl.sweep.scaleup import method_of

METHODS = ('compound', 'depth', 'width', 'resolution')
SCALE_UP = METHODS + ('strategy',)  # the kinds of the scale-up rows


def _key(row) -> tuple:
  return (row['kind'], row['phi'], row['alpha'], row['beta'], row['gamma'],
          row.get('label', ''), row.get('budget'))


def final(rows) -> list[dict]:
  """The rows of trials trained to their full budget."""
  return [r for r in rows if not r.get('rung_of')]


def _point(members: list[dict], metric: str) -> dict:
  values = {m['seed']: m[metric] for m in members}
  ci = stats.mean_ci(list(values.values()))
  return {**members[0], 'values': values, 'ci': ci, 'mean': ci.mean,
          'spread': 0.0 if ci.n < 2 else ci.half_width, 'seeds': ci.n,
          'trials': [m['trial'] for m in members]}


def aggregate(rows, metric: str) -> list[dict]:
  """One entry per point (seeds pooled) of the rows that trained: the
  point's fields, ``values`` ({seed: metric}), ``ci`` (a ``stats.Interval``
  at 95%), ``mean``, ``spread`` (the CI's half-width, 0 for one seed),
  ``seeds`` and ``trials``."""
  groups = {}
  for row in final(rows):
    if row['status'] == 'ok' and row.get(metric) is not None:
      groups.setdefault(_key(row), []).append(row)
  return [_point(members, metric) for members in groups.values()]


def choose(rows, metric: str = 'val_accuracy', budget=None) -> dict:
  """The grid point with the best mean ``metric`` at ``budget`` (ties:
  fewer MACs).

  Raises RuntimeError when no φ = 1 candidate trained.
  """
  grid = grid_points(rows, metric, budget)
  if not grid:
    raise RuntimeError('every phi = 1 candidate failed, so there is nothing '
                       'to choose from: read the status and reason columns '
                       'of results.csv')
  return grid[0]


def grid_points(rows, metric: str, budget=None) -> list[dict]:
  """The φ = 1 candidates trained to the full budget, best first (ties:
  fewer MACs): the order ``choose`` and the bootstrap break ties in."""
  grid = [p for p in aggregate(rows, metric)
          if p['kind'] == 'grid' and p.get('budget') == budget]
  return sorted(grid, key=lambda p: (-p['mean'], p['macs']))


def selection(rows, metric: str, budget=None, draws: int = 2000) -> dict:
  """How firm the choice is: the chosen point, the runner-up and the
  paired difference between them, and how often each candidate has the
  best mean when the seeds are resampled (``stats.bootstrap_selection``)."""
  grid = grid_points(rows, metric, budget)
  out = {'chosen': grid[0] if grid else None, 'runner_up': None,
         'margin': None, 'frequency': {}}
  if len(grid) < 2:
    return out
  scores = {_coeffs(p): p['values'] for p in grid}
  shared = set.intersection(*(set(v) for v in scores.values()))
  if shared:
    out['frequency'] = stats.bootstrap_selection(
        {k: {s: v[s] for s in shared} for k, v in scores.items()},
        draws=draws)
  name, margin = stats.runner_up_margin(scores, _coeffs(grid[0]))
  out['runner_up'] = next(p for p in grid if _coeffs(p) == name)
  out['margin'] = margin
  return out


def _coeffs(point) -> tuple:
  return (point['alpha'], point['beta'], point['gamma'])


def series(rows, metric: str, budget=None) -> dict[str, list[dict]]:
  """Each scaling method's points by φ at ``budget``, starting from the
  baseline (φ = 0)."""
  points = [p for p in aggregate(rows, metric) if p.get('budget') == budget]
  base = [p for p in points if p['kind'] == 'baseline']
  out = {}
  for method in scale_up_methods(points):
    mine = sorted((p for p in points if p['kind'] in SCALE_UP
                   and method_of(p) == method), key=lambda p: p['phi'])
    if mine:
      out[method] = base + mine
  return out


def scale_up_methods(rows) -> list[str]:
  """The methods of the scale-up rows: compound and the single dimensions
  first, then the strategies in the order they first appear."""
  found = []
  for r in rows:
    if r['kind'] in SCALE_UP and method_of(r) not in found:
      found.append(method_of(r))
  return [m for m in METHODS if m in found] + [
      m for m in found if m not in METHODS]


def budgets(rows) -> list:
  """The budgets of the scale-up rows (None: the train section's)."""
  found = {r.get('budget') for r in final(rows) if r['kind'] in SCALE_UP}
  return sorted(found, key=lambda b: -1 if b is None else b)


def pareto(points, cost: str = 'macs') -> list[dict]:
  """The points no other point beats: at most the cost and more accurate."""
  front, best = [], -math.inf
  for p in sorted(points, key=lambda p: (p[cost], -p['mean'])):
    if p['mean'] > best:
      front.append(p)
      best = p['mean']
  return front


def compared(rows, metric: str, budget=None,
                 delta: float = 0.01) -> list[dict]:
  """Per φ >= 1 at ``budget``: each method's point, the method with the
  best mean, and compound minus each single dimension as a seed-paired
  difference with its CI, its verdict (``stats.verdict``) and, when
  unresolved, the seeds a true difference of ``delta`` would need."""
  by_phi = {}
  for method, points in series(rows, metric, budget).items():
    for p in points:
      if p['phi'] >= 1:
        by_phi.setdefault(p['phi'], {})[method] = p
  out = []
  for phi in sorted(by_phi):
    entries = by_phi[phi]
    winner = max(entries, key=lambda m: entries[m]['mean'])
    comparisons = {}
    compound = entries.get('compound')
    for method, p in entries.items():
      if method == 'compound' or compound is None:
        continue
      try:
        diff = stats.paired_difference(compound['values'], p['values'])
      except ValueError:
        continue
      word = stats.verdict(diff)
      needed = (stats.seeds_to_resolve(diff.sd, delta)
                if word == stats.UNRESOLVED else None)
      comparisons[method] = {'diff': diff, 'verdict': word,
                             'seeds_needed': needed}
    out.append({'phi': phi, 'entries': entries, 'winner': winner,
                'comparisons': comparisons})
  return out


def rungs(rows, metric: str = 'val_accuracy') -> list[dict]:
  """The halving rungs in step order: each rung's steps and its candidates
  (the points with ``values`` and ``mean`` of ``metric`` there); the last
  rung is the candidates trained to the full budget."""
  by_steps = {}
  for row in rows:
    if row.get('rung_of') and row['status'] == 'ok' and row.get(metric) \
        is not None:
      by_steps.setdefault(row['steps'], {}).setdefault(
          _coeffs(row), []).append(row)
  if not by_steps:
    return []
  out = [{'steps': steps,
          'points': {k: _point(v, metric) for k, v in groups.items()}}
         for steps, groups in sorted(by_steps.items())]
  top = {}
  for row in final(rows):
    if row['kind'] == 'grid' and row['status'] == 'ok' and row.get(metric) \
        is not None:
      top.setdefault(_coeffs(row), []).append(row)
  if top:
    steps = max(r['steps'] for v in top.values() for r in v)
    out.append({'steps': steps,
                'points': {k: _point(v, metric) for k, v in top.items()}})
  for lower, upper in zip(out, out[1:]):
    both = [k for k in upper['points'] if k in lower['points']]
    upper['spearman'] = stats.spearman(
        [lower['points'][k]['mean'] for k in both],
        [upper['points'][k]['mean'] for k in both])
    upper['compared'] = len(both)
  return out


def same_networks(rows) -> list[tuple]:
  """Grid points that build the same network as another grid point at the
  same budget: ``(point, point it shares its network with)``."""
  owner = {r['trial']: r for r in final(rows)}
  out = set()
  for r in final(rows):
    donor = owner.get(r.get('same_as') or '')
    if r['kind'] == 'grid' and donor is not None and donor['kind'] == 'grid':
      out.add((_coeffs(r), _coeffs(donor)))
  return sorted(out)


def _errors(members: list[dict], metric: str) -> dict:
  return {m['seed']: 1 - m[metric] for m in members}


def star_multiplier(point: dict, base: dict, dimension: str) -> float:
  """The multiplier a star arm's network actually has: its counted MACs
  over the baseline's, to the power ``1 / p`` (p = 1 for depth, 2 for
  width and resolution), so arms that round to one network coincide."""
  ratio = point['macs'] / base['macs']
  return round(ratio ** (1 / star.COST_POWER[dimension]), 6)


def star_choice(rows, metric: str, sweep, budget=None) -> star.Star:
  """(α, β, γ) of the star sweep (``dvl.sweep.star.derive``) from the
  baseline's and the star arms' ``metric`` at ``budget``, as error rates
  per seed, each arm at its counted multiplier (``star_multiplier``);
  ``sweep.star.rule`` and ``sweep.target`` set the split.

  Raises ValueError when the baseline or an arm has no trained row.
  """
  points = [p for p in aggregate(rows, metric) if p.get('budget') == budget]
  base = [p for p in points if p['kind'] == 'baseline']
  if not base:
    raise ValueError('the star sweep has no trained baseline: read the '
                     'status and reason columns of results.csv')
  runs = {k: {} for k in star.DIMENSIONS}
  for p in points:
    if p['kind'] == 'star':
      dimension = star.DIMENSIONS[[p['d'], p['w'], p['r']].index(
          max(p['d'], p['w'], p['r']))]
      multiplier = star_multiplier(p, base[0], dimension)
      if multiplier > 1:  # else it rounds to the baseline's network
        runs[dimension][multiplier] = {s: 1 - v
                                       for s, v in p['values'].items()}
  missing = [k for k, v in runs.items() if len(v) < star.MIN_MULTIPLIERS]
  if missing:
    raise ValueError(f'the star sweep has fewer than {star.MIN_MULTIPLIERS} '
                     f'distinct trained networks for {", ".join(missing)} '
                     '(multipliers that round to one network count once): '
                     'use multipliers further apart, or read the status and '
                     'reason columns of results.csv')
  settings = sweep.get('star') or {}
  return star.derive({s: 1 - v for s, v in base[0]['values'].items()}, runs,
                     target=sweep['target'], rule=settings.get('rule',
                                                               'shape'))


LAW_COSTS = ('macs', 'activations', 'params')


def law_fits(rows, metric: str, holdout: int, cost: str = 'macs',
             budget=None) -> dict:
  """Per scale-up method, the saturating law of error against ``cost``
  fitted on φ = 0 … holdout − 1 and judged at φ = ``holdout``
  (``laws.heldout``), or why it could not be fitted (a str)."""
  if cost not in LAW_COSTS:
    raise ValueError(f'a law is fitted against one of {", ".join(LAW_COSTS)};'
                     f' got {cost!r}')
  out = {}
  for method, line in series(rows, metric, budget).items():
    line = [p for p in line if p['phi'] <= holdout]
    try:
      out[method] = laws.heldout(laws.points_from_series(line, cost),
                                 phi=holdout)
    except ValueError as error:
      out[method] = str(error)
  return out


def networks(rows) -> list[dict]:
  """One entry per network trained to the full budget with a measured step
  (seeds and rows sharing it pooled): its fields and ``us_per_image``,
  the train step's measured microseconds per image."""
  out = {}
  for r in final(rows):
    if r['status'] != 'ok' or r.get('same_as') or not r.get(
        'train_images_per_s'):
      continue
    rate = r['train_images_per_s']
    if not (rate and math.isfinite(rate)):
      continue
    key = r.get('population_dir') or r['trial']
    out.setdefault(key, {**r, 'us_per_image': 1e6 / rate})
  return list(out.values())


def time_correlation(rows, draws: int = 2000) -> dict | None:
  """How well MACs and activations track the measured step time over the
  sweep's networks: Pearson's r of log time with log MACs and with log
  activations, and their difference, each with a bootstrap interval over
  the networks (``stats.correlation_contrast``); None with fewer than
  three networks."""
  found = [n for n in networks(rows) if n.get('macs') and n.get(
      'activations')]
  if len(found) < 3:
    return None
  time = np.log([n['us_per_image'] for n in found])
  result = stats.correlation_contrast(
      time, np.log([n['macs'] for n in found]),
      np.log([n['activations'] for n in found]), draws=draws)
  return {'macs': result['a'], 'activations': result['b'],
          'activations_minus_macs': result['b_minus_a'],
          'networks': len(found)}
