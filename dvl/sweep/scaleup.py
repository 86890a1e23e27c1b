"""The scale-up phase's trials: compound scaling at φ = 1 … max_phi and,
at its cost, every other method of the sweep.

The methods are the single dimensions of ``sweep.baselines`` and the
strategies of ``sweep.strategies`` (``dvl.sweep.strategies``: uniform,
dWr, a given exponent triple). Each is moved along its own direction until
its *counted* cost (``sweep.match``: MACs, activations, parameters, or the
measured train-step time per image of ``dvl.sweep.timing``) is closest to
the compound row's at that φ. A single dimension runs as a trial of its
own kind (``depth``, ``width``, ``resolution``); a strategy as kind
``strategy`` with its spec as the label. The star sweep's arms (one
dimension at a time around the baseline) are planned here too.
"""

import math

from dvl.sweep import candidates, strategies
from dvl.sweep.trials import Planned, Planner, Trial

MATCH_STEPS = 8  # bisections of a method's multiplier


def method_of(row) -> str:
  """The scale-up method of a results row or ``Trial``: its kind, or for
  kind ``strategy`` its spec (the label)."""
  kind = row['kind'] if isinstance(row, dict) else row.kind
  label = row.get('label', '') if isinstance(row, dict) else row.label
  return label if kind == 'strategy' else kind


def methods(sweep) -> list[str]:
  """The methods compared with compound scaling: ``sweep.baselines`` then
  ``sweep.strategies`` (checked by ``check_methods``)."""
  return list(sweep.baselines) + [
      s.spec for s in strategies.check_strategies(sweep)]


def check_methods(sweep) -> list[str]:
  """``methods``, refusing a strategy that repeats compound scaling or a
  method already listed."""
  found = methods(sweep)
  for spec in sweep.get('strategies', ()) or ():
    if spec.strip().lower() == 'compound':
      raise ValueError("sweep.strategies: 'compound' is always trained; "
                       'list only the strategies to compare with it')
  if len(set(found)) != len(found):
    raise ValueError(f'sweep.baselines and sweep.strategies list a method '
                     f'twice: {tuple(found)}; give each once')
  return found


def _trial(method: str, phi, dwr, seed, chosen, budget) -> Trial:
  if method in candidates.SINGLE_DIMENSIONS:
    return Trial(method, phi, *dwr, seed, *chosen, budget=budget)
  return Trial('strategy', phi, *dwr, seed, *chosen, label=method,
               budget=budget)


def counted(planner: Planner, planned: Planned, cost: str) -> float:
  """``planned``'s cost on ``cost`` (``strategies.MATCH``); inf for a
  network that cannot be built."""
  if planned.error:
    return math.inf
  if cost == 'time':
    return planner.seconds_per_image(planned)
  value = getattr(planned, cost)
  return math.inf if not value else float(value)


def matched(planner: Planner, method: str, phi: int, chosen: tuple,
            target: float, cost: str = 'macs') -> tuple:
  """(d, w, r) along ``method``'s direction whose counted ``cost`` is
  closest to ``target`` (on a log scale).

  The direction's exponents ``e`` (``strategies.parse``) are followed by
  the multiplier ``t`` of its leading dimension, ``(d, w, r) = t^(e /
  max e)``, from the nominal ``t`` at compound scaling's nominal cost at
  φ. Rounding repeats up, channels and sides to multiples of 8 moves the
  counted cost of both rows, and every counted cost grows with ``t``, so
  a bisection over ``t`` in [1, 2·nominal] finds the closest. For a
  single dimension ``t`` is its multiplier.
  """
  exponents = strategies.parse(method).exponents
  lead = max(exponents)
  growth = candidates.nominal_growth(*chosen)
  if method in candidates.SINGLE_DIMENSIONS:
    nominal = max(candidates.single_dimension(method, phi, growth))
  else:
    nominal = (growth ** phi) ** lead

  def point(t: float) -> tuple:
    return tuple(t ** (e / lead) if e else 1.0 for e in exponents)

  def probe(t: float) -> tuple[float, tuple, float]:
    """(distance to ``target`` on a log scale, (d, w, r), counted cost)."""
    dwr = point(t)
    value = counted(planner, planner.plan(_trial(method, phi, dwr, 0, chosen,
                                                 None)), cost)
    return abs(math.log(value / target)), dwr, value

  best = probe(nominal)
  lo, hi = 1.0, 2 * nominal
  for _ in range(MATCH_STEPS):
    mid = round((lo + hi) / 2, 4)
    found = probe(mid)
    best = min(best, found)
    lo, hi = (mid, hi) if found[2] < target else (lo, mid)
  return best[1]


def scale_up_trials(planner: Planner, chosen: tuple, sweep,
                    budget=None) -> list[Planned]:
  """Compound φ = 1 … max_phi and, at its counted ``sweep.match`` cost,
  each method of ``methods``, for every seed, at ``budget``. Each planned
  trial carries the cost matched on and its value (``Planned.match``)."""
  cost = sweep.get('match', 'macs')
  plans = []
  for phi in range(1, sweep.max_phi + 1):
    d, w, r = (c ** phi for c in chosen)
    compound = [planner.plan(Trial('compound', phi, d, w, r, seed, *chosen,
                                   budget=budget))
                for seed in sweep.seeds]
    target = counted(planner, compound[0], cost)
    for planned in compound:
      planned.match = (cost, target)
    plans += compound
    for method in methods(sweep):
      dwr = matched(planner, method, phi, chosen, target, cost)
      mine = [planner.plan(_trial(method, phi, dwr, seed, chosen, budget))
              for seed in sweep.seeds]
      value = counted(planner, mine[0], cost)
      for planned in mine:
        planned.match = (cost, value)
      plans += mine
  return plans


def star_label(dimension: str, multiplier: float) -> str:
  return f'{dimension} x{multiplier:g}'


def star_trials(planner: Planner, multipliers, seeds,
                budget=None) -> list[Planned]:
  """The star sweep's arms: each of depth, width and resolution alone at
  every multiplier, for every seed (kind ``star``, labelled
  ``star_label``)."""
  plans = []
  for axis, dimension in enumerate(candidates.SINGLE_DIMENSIONS):
    for m in multipliers:
      dwr = tuple(m if i == axis else 1.0 for i in range(3))
      plans += [planner.plan(Trial('star', 0, *dwr, seed,
                                   label=star_label(dimension, m),
                                   budget=budget))
                for seed in seeds]
  return plans
