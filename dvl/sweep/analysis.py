"""Reading a sweep's rows: seeds averaged, the chosen coefficients, the
scaling curves, the Pareto front and who won at matched MACs."""

import math
import statistics

METHODS = ('compound', 'depth', 'width', 'resolution')


def _key(row) -> tuple:
  return (row['kind'], row['phi'], row['alpha'], row['beta'], row['gamma'],
          row.get('label', ''))


def aggregate(rows, metric: str) -> list[dict]:
  """One entry per point (seeds pooled) of the rows that trained: the
  point's fields, ``mean`` and ``spread`` (sample standard deviation, 0 for
  one seed) of ``metric`` and the seeds' count."""
  groups = {}
  for row in rows:
    if row['status'] == 'ok' and row.get(metric) is not None:
      groups.setdefault(_key(row), []).append(row)
  out = []
  for members in groups.values():
    values = [m[metric] for m in members]
    first = members[0]
    out.append({**first, 'mean': statistics.fmean(values),
                'spread': statistics.stdev(values) if len(values) > 1 else 0.0,
                'seeds': len(values),
                'trials': [m['trial'] for m in members]})
  return out


def choose(rows, metric: str = 'val_accuracy') -> dict:
  """The grid point with the best mean ``metric`` (ties: fewer MACs).

  Raises RuntimeError when no φ = 1 candidate trained.
  """
  grid = [p for p in aggregate(rows, metric) if p['kind'] == 'grid']
  if not grid:
    raise RuntimeError('every phi = 1 candidate failed, so there is nothing '
                       'to choose from: read the status and reason columns '
                       'of results.csv')
  return max(grid, key=lambda p: (p['mean'], -p['macs']))


def series(rows, metric: str) -> dict[str, list[dict]]:
  """Each scaling method's points by φ, starting from the baseline (φ = 0)."""
  points = aggregate(rows, metric)
  base = [p for p in points if p['kind'] == 'baseline']
  out = {}
  for method in METHODS:
    mine = sorted((p for p in points if p['kind'] == method),
                  key=lambda p: p['phi'])
    if mine:
      out[method] = base + mine
  return out


def pareto(points, cost: str = 'macs') -> list[dict]:
  """The points no other point beats: at most the cost and more accurate."""
  front, best = [], -math.inf
  for p in sorted(points, key=lambda p: (p[cost], -p['mean'])):
    if p['mean'] > best:
      front.append(p)
      best = p['mean']
  return front


def matched_macs(rows, metric: str) -> list[dict]:
  """Per φ >= 1: each method's mean ``metric`` and MACs, and the winner."""
  by_phi = {}
  for method, points in series(rows, metric).items():
    for p in points:
      if p['phi'] >= 1:
        by_phi.setdefault(p['phi'], {})[method] = p
  out = []
  for phi in sorted(by_phi):
    entries = by_phi[phi]
    winner = max(entries, key=lambda m: entries[m]['mean'])
    out.append({'phi': phi, 'entries': entries, 'winner': winner})
  return out
