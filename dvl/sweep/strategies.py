"""Scaling strategies compared at equal cost: where each puts a cost increase.

A strategy is a direction in (depth, width, resolution): cost exponents
``(e_d, e_w, e_r)`` with ``e_d + 2·e_w + 2·e_r = 1``. For a nominal cost
factor ``s`` (MACs ∝ d·w²·r², so d·w²·r² = s) it scales

    d = s^e_d,   w = s^e_w,   r = s^e_r.

Compared at compound scaling's cost at φ, ``s = (α·β²·γ²)^φ`` (≈ 2^φ):

* ``compound`` (Tan & Le 2019, Eq. 3): ``e = (ln α, ln β, ln γ) / ln(αβ²γ²)``,
  so ``(d, w, r) = (α^φ, β^φ, γ^φ)`` exactly;
* ``depth``, ``width``, ``resolution``: one dimension takes the whole cost,
  ``e = (1, 0, 0)``, ``(0, ½, 0)``, ``(0, 0, ½)``;
* ``uniform`` (Dollár, Singh & Girshick 2021, "Fast and Accurate Model
  Scaling"): d, w² and r² each take a third of the cost exponent,
  ``e = (1/3, 1/6, 1/6)``;
* ``dwr:A`` (the same paper's dWr scaling, its recommended A ≈ 0.8): a
  fraction A of the cost exponent goes to width (w² = s^A) and the rest is
  split equally between depth and resolution (d = r² = s^((1 − A)/2)):
  ``e = ((1 − A)/2, A/2, (1 − A)/4)``; A = 1/3 is uniform scaling;
* ``exponents:ED,EW,ER``: a given triple, which must already satisfy
  ``ED + 2·EW + 2·ER = 1`` (it is not normalised silently: the error names
  the normalised triple to write instead), each exponent >= 0.

``match`` moves a strategy along its direction until a *counted* cost
(MACs, activations, parameters, time), not the nominal one, reaches a
target.
"""

import dataclasses
import math
from typing import Callable

from scipy import optimize

from dvl.sweep import candidates

NAMES = ('compound', 'depth', 'width', 'resolution', 'uniform', 'dwr:A',
         'exponents:ED,EW,ER')
MATCH = ('macs', 'activations', 'params', 'time')
TOLERANCE = 1e-6  # on e_d + 2·e_w + 2·e_r = 1

FIXED = {'depth': (1.0, 0.0, 0.0), 'width': (0.0, 0.5, 0.0),
         'resolution': (0.0, 0.0, 0.5), 'uniform': (1 / 3, 1 / 6, 1 / 6)}


@dataclasses.dataclass(frozen=True)
class Strategy:
  """A scaling direction: its spec string and cost exponents (e_d, e_w,
  e_r), ``e_d + 2·e_w + 2·e_r = 1``."""
  spec: str
  exponents: tuple[float, float, float]

  def at_cost(self, factor: float) -> tuple[float, float, float]:
    """(d, w, r) at nominal cost factor ``factor`` (d·w²·r² = factor)."""
    if not factor > 0:
      raise ValueError(f'a cost factor must be > 0; got {factor}')
    return tuple(factor ** e for e in self.exponents)


def compound_exponents(alpha: float, beta: float, gamma: float) -> tuple:
  """The cost exponents of compound scaling with (α, β, γ)."""
  growth = candidates.nominal_growth(alpha, beta, gamma)
  if min(alpha, beta, gamma) <= 0 or not growth > 1:
    raise ValueError(f'compound coefficients {(alpha, beta, gamma)} must be '
                     '> 0 with alpha*beta^2*gamma^2 > 1 (e.g. 1.2, 1.1, 1.15)')
  log = math.log(growth)
  return tuple(math.log(c) / log for c in (alpha, beta, gamma))


def dwr_exponents(share: float) -> tuple[float, float, float]:
  """dWr's exponents for width share ``share`` ∈ [0, 1] (see the module)."""
  if not 0 <= share <= 1:
    raise ValueError(f"dWr's alpha is the width's share of the cost and must "
                     f"lie in [0, 1]; got {share}. Dollar et al. recommend "
                     "0.8, e.g. 'dwr:0.8'")
  return ((1 - share) / 2, share / 2, (1 - share) / 4)


def checked_exponents(triple) -> tuple[float, float, float]:
  """A user's (e_d, e_w, e_r), checked: each >= 0, e_d + 2e_w + 2e_r = 1."""
  if len(triple) != 3:
    raise ValueError(f'exponents {tuple(triple)}: give three numbers '
                     '(e_d, e_w, e_r), e.g. exponents:0.2,0.3,0.1')
  e = tuple(float(x) for x in triple)
  if min(e) < 0 or not all(math.isfinite(x) for x in e):
    raise ValueError(f'exponents {e}: each must be a finite number >= 0 '
                     '(a strategy never shrinks a dimension)')
  total = e[0] + 2 * e[1] + 2 * e[2]
  if abs(total - 1) > TOLERANCE:
    if total > 0:
      fixed = ','.join(f'{x / total:.6g}' for x in e)
      hint = f'; the normalised triple is exponents:{fixed}'
    else:
      hint = ''
    raise ValueError(f'exponents {e} have e_d + 2*e_w + 2*e_r = {total:.6g}, '
                     f'not 1: they must spend exactly the cost{hint}')
  return e


def parse(spec: str, coefficients=candidates.PAPER) -> Strategy:
  """The Strategy of a spec string (``NAMES``); ``compound`` uses
  ``coefficients`` (α, β, γ)."""
  if not isinstance(spec, str):
    raise ValueError(f'a scaling strategy is a string such as '
                     f"'uniform' or 'dwr:0.8'; got {spec!r}")
  name, _, arg = spec.strip().partition(':')
  name = name.strip().lower()
  if name in FIXED and not arg:
    return Strategy(spec, FIXED[name])
  if name == 'compound' and not arg:
    return Strategy(spec, compound_exponents(*coefficients))
  try:
    if name == 'dwr' and arg:
      return Strategy(spec, dwr_exponents(float(arg)))
    if name == 'exponents' and arg:
      return Strategy(spec, checked_exponents(
          [float(x) for x in arg.split(',')]))
  except ValueError as err:
    if 'could not convert' not in str(err):
      raise
    raise ValueError(f'scaling strategy {spec!r}: {arg!r} is not a number '
                     f'(or comma-separated numbers); e.g. dwr:0.8 or '
                     f'exponents:0.2,0.3,0.1') from None
  raise ValueError(f'unknown scaling strategy {spec!r}; choose one of: '
                   f'{", ".join(NAMES)} (A in [0, 1]; ED + 2*EW + 2*ER = 1)')


def at_phi(spec: str, phi: float, coefficients=candidates.PAPER) -> tuple:
  """(d, w, r) of ``spec`` at compound scaling's nominal cost at φ,
  ``(α·β²·γ²)^φ`` with ``coefficients`` (α, β, γ)."""
  factor = candidates.nominal_growth(*coefficients) ** phi
  return parse(spec, coefficients).at_cost(factor)


def match(strategy: Strategy, cost: Callable[[float, float, float], float],
          target: float, max_factor: float = 1e4) -> tuple:
  """(d, w, r) along ``strategy`` at which ``cost(d, w, r)`` equals
  ``target``: a root of ``cost(strategy.at_cost(s)) − target`` for s in
  [1, max_factor], found by ``scipy.optimize.brentq`` on ln s.

  ``cost`` must grow with s (counted MACs, activations, parameters, time
  do). For a cost that moves in steps (rounded channels and sides) it
  returns the point just past the step that crosses ``target`` (cost >=
  target, ln s within about 1e-9 of the step). Raises ValueError when ``target``
  lies below the baseline's cost or above the cost at ``max_factor``.
  """
  def gap(log_s):
    return cost(*strategy.at_cost(math.exp(log_s))) - target

  low, high = gap(0.0), gap(math.log(max_factor))
  if low > 0:
    raise ValueError(f'{strategy.spec}: target cost {target:g} is below the '
                     f'baseline\'s {low + target:g}; a strategy only grows '
                     'the network')
  if high < 0:
    raise ValueError(f'{strategy.spec}: target cost {target:g} is out of '
                     f'reach: the cost at {max_factor:g}x the nominal is '
                     f'{high + target:g}; raise max_factor or lower the '
                     'target (a strategy whose exponents leave cost unmoved '
                     'cannot reach it)')
  if low == 0:
    return strategy.at_cost(1.0)
  root = optimize.brentq(gap, 0.0, math.log(max_factor), xtol=1e-12)
  for _ in range(100):  # on a step, take its upper side: cost >= target
    if gap(root) >= 0:
      break
    root += 1e-11
  return strategy.at_cost(math.exp(root))


def check_strategies(sweep) -> list[Strategy]:
  """Checks ``sweep.strategies`` (spec strings, ``NAMES``) and
  ``sweep.match`` (``MATCH``); returns the strategies. Missing fields are
  the defaults: no strategies, match on MACs."""
  specs = sweep.get('strategies', ()) or ()
  if isinstance(specs, str):
    raise ValueError(f"sweep.strategies must be a tuple of strings, e.g. "
                     f"('uniform', 'dwr:0.8'); got the string {specs!r}")
  parsed = [parse(s) for s in specs]
  seen = [p.spec for p in parsed]
  if len(set(seen)) != len(seen):
    raise ValueError(f'sweep.strategies lists a strategy twice: {tuple(seen)}')
  how = sweep.get('match', 'macs')
  if how not in MATCH:
    raise ValueError(f'unknown sweep.match {how!r}; choose one of: '
                     f'{", ".join(MATCH)}')
  return parsed
