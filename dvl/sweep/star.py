"""The star sweep (``sweep.search = 'star'``): (α, β, γ) from per-dimension
exponents, in the spirit of Alabdulmohsin et al. 2023 ("Getting ViT in
Shape", Sec. 3: a star of one-dimension-at-a-time runs around a centre).

1. Each dimension k alone is scaled by multipliers m > 1 (e.g. 1.25, 1.5,
   2); its cost factor is ``C_k = m^p_k`` with p = 1 for depth and 2 for
   width and resolution (MACs ∝ d·w²·r²).
2. Per dimension, a log-linear law through the baseline (C = 1) and its
   points, by least squares on the seeds' mean errors:
   ``ln E_k = ln A_k − b_k·ln C_k``. Log-linear rather than saturating: three
   or four points per dimension do not pin down a floor.
3. The errors' reductions are taken as separable, ``E ≈ Σ_k A_k·C_k^(−b_k)
   + const``, and a cost increase ``target`` (≈ 2, one step of φ) is split
   as ``ln C_k = share_k · ln target`` by one of two rules:

   * ``'shape'`` (the default): ``share_k = (1/b_k) / Σ_j (1/b_j)``. Under
     the separable law, minimising the error at a large cost gives each
     dimension the same error decrease per unit of log cost, and the shares
     of log cost then tend to these: the slowest-falling dimension is the
     bottleneck and gets the most. Alabdulmohsin et al.'s shape rule has the
     same form (a dimension's optimal growth exponent falls as its error
     exponent rises). The shares do not depend on the budget, as compound
     scaling's (α, β, γ) serve every φ.
   * ``'budget'``: the exact optimum at ``target``:
     ``min Σ_k A_k·C_k^(−b_k)`` subject to ``Σ_k ln C_k = ln target`` and
     ``ln C_k >= 0``. Its KKT conditions give every growing dimension the
     same marginal gain, ``b_k·A_k·C_k^(−b_k) = λ``, so
     ``ln C_k = max(0, ln(b_k·A_k / λ) / b_k)``, λ set by the budget. At a
     budget of 2 it is often a corner (all the cost to the dimension whose
     error falls fastest at the baseline); it tends to ``'shape'`` as the
     budget grows.

   A dimension with ``b_k <= 0`` (its error does not fall) gets no cost.
4. ``α = C_depth``, ``β = C_width^(1/2)``, ``γ = C_resolution^(1/2)``, so
   ``α·β²·γ² = target`` exactly.
"""

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from scipy import optimize

DIMENSIONS = ('depth', 'width', 'resolution')
COST_POWER = {'depth': 1, 'width': 2, 'resolution': 2}  # MACs ∝ d·w²·r²
MIN_MULTIPLIERS = 2
RULES = ('shape', 'budget')


@dataclasses.dataclass(frozen=True)
class Star:
  """Per dimension the fitted ``(A_k, b_k)``, its cost factor ``C_k`` and
  share of the log cost at ``target``; the derived (α, β, γ); the rule."""
  laws: dict
  cost: dict
  share: dict
  coefficients: tuple[float, float, float]
  target: float
  rule: str


def _mean(errors) -> float:
  if isinstance(errors, Mapping):
    errors = list(errors.values())
  values = np.atleast_1d(np.asarray(errors, dtype=float))
  if values.size == 0 or np.any(values <= 0) or np.any(values > 1):
    raise ValueError(f'error rates must lie in (0, 1]; got {errors}')
  return float(values.mean())


def check_multipliers(multipliers, where: str = 'sweep.star.multipliers'
                      ) -> tuple[float, ...]:
  """The star's multipliers, checked: at least ``MIN_MULTIPLIERS``,
  each > 1, none twice."""
  values = tuple(float(m) for m in multipliers)
  bad = [m for m in values if not m > 1]
  if bad:
    raise ValueError(f'{where} must all exceed 1 (the baseline is the star\'s '
                     f'centre, m = 1); got {values}')
  if len(values) < MIN_MULTIPLIERS or len(set(values)) != len(values):
    raise ValueError(f'{where} needs at least {MIN_MULTIPLIERS} distinct '
                     f'multipliers, e.g. (1.25, 1.5, 2.0), so that each '
                     f'dimension\'s law has a residual; got {values}')
  return values


def fit_dimension(dimension: str, baseline, runs: Mapping) -> tuple:
  """``(A_k, b_k)`` of ``ln E = ln A − b·ln C`` for one dimension: the
  baseline (C = 1) and ``runs`` {multiplier: errors}, C = m^p_k."""
  if dimension not in COST_POWER:
    raise ValueError(f'unknown dimension {dimension!r}; choose one of: '
                     f'{", ".join(DIMENSIONS)}')
  multipliers = check_multipliers(runs, f'the {dimension} multipliers')
  log_c = [0.0] + [COST_POWER[dimension] * math.log(m) for m in multipliers]
  log_e = [math.log(_mean(baseline))] + [math.log(_mean(runs[m]))
                                         for m in runs]
  slope, intercept = np.polyfit(log_c, log_e, 1)
  return float(math.exp(intercept)), float(-slope)


def _falling(laws: Mapping) -> dict:
  falling = {k: (a, b) for k, (a, b) in laws.items() if b > 0 and a > 0}
  if not falling:
    raise ValueError(f'no dimension\'s error falls with its cost (exponents '
                     f'{ {k: b for k, (_, b) in laws.items()} }): the star '
                     'gives nothing to allocate; train longer or check the '
                     'runs')
  return falling


def allocate(laws: Mapping, target: float = 2.0, rule: str = 'shape'
             ) -> dict:
  """``ln C_k`` per dimension, summing to ``ln target``, from ``laws``
  {dimension: (A_k, b_k)} by ``rule`` (``RULES``; see the module)."""
  if not target > 1:
    raise ValueError(f'the cost target must be > 1; got {target}')
  if rule not in RULES:
    raise ValueError(f'unknown star rule {rule!r}; choose one of: '
                     f'{", ".join(RULES)}')
  falling = _falling(laws)
  budget = math.log(target)
  if rule == 'shape':
    total = sum(1 / b for _, b in falling.values())
    return {k: budget / falling[k][1] / total if k in falling else 0.0
            for k in laws}

  def grown(k, log_lambda):
    a, b = falling[k]
    return max(0.0, (math.log(b * a) - log_lambda) / b)

  def spent(log_lambda):
    return sum(grown(k, log_lambda) for k in falling) - budget

  top = max(math.log(b * a) for a, b in falling.values())  # nothing grows
  low = top - 1.0
  while spent(low) < 0:
    low = top - 2 * (top - low)
  log_lambda = optimize.brentq(spent, low, top, xtol=1e-14)
  return {k: grown(k, log_lambda) if k in falling else 0.0 for k in laws}


def derive(baseline, runs: Mapping, target: float = 2.0,
           rule: str = 'shape') -> Star:
  """(α, β, γ) with ``α·β²·γ² = target`` by ``rule`` from a star sweep:
  ``baseline``
  the baseline's errors ({seed: error}, a list, or one number) and ``runs``
  {dimension: {multiplier: errors}} for each of depth, width, resolution."""
  missing = [k for k in DIMENSIONS if k not in runs]
  extra = [k for k in runs if k not in DIMENSIONS]
  if missing or extra:
    raise ValueError(f'a star sweep needs runs for exactly '
                     f'{", ".join(DIMENSIONS)}; missing {missing}, unknown '
                     f'{extra}')
  laws = {k: fit_dimension(k, baseline, runs[k]) for k in DIMENSIONS}
  log_cost = allocate(laws, target, rule)
  cost = {k: math.exp(v) for k, v in log_cost.items()}
  share = {k: v / math.log(target) for k, v in log_cost.items()}
  coefficients = (cost['depth'], math.sqrt(cost['width']),
                  math.sqrt(cost['resolution']))
  return Star(laws, cost, share, coefficients, target, rule)


def check_star(sweep) -> tuple[float, ...] | None:
  """Checks ``sweep.star.multipliers`` (and ``sweep.star.rule``, default
  'shape') when ``sweep.search = 'star'``; returns the multipliers (None
  for another search)."""
  if sweep.get('search') != 'star':
    return None
  star = sweep.get('star', None)
  if not star or not star.get('multipliers'):
    raise ValueError("sweep.search = 'star' needs sweep.star.multipliers, "
                     'e.g. (1.25, 1.5, 2.0)')
  rule = star.get('rule', 'shape')
  if rule not in RULES:
    raise ValueError(f'unknown sweep.star.rule {rule!r}; choose one of: '
                     f'{", ".join(RULES)}')
  return check_multipliers(star['multipliers'])
