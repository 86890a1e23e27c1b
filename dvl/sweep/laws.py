"""Scaling laws that predict: a law fitted on φ <= k − 1, judged at φ = k,
and the star sweep's coefficients from per-dimension exponents.

**The law.** Error against cost, saturating (Hestness et al. 2017; Kaplan
et al. 2020): ``E(C) = a·x^(−b) + c`` with ``x = C / C_ref`` (``C_ref``: the
smallest cost fitted, the baseline's, so ``a`` is the error above the floor
there), bounds ``a > 0``, ``0 < b <= 10``, ``0 <= c <= 1``, fitted by
``scipy.optimize.curve_fit``. It is fitted on the *per-seed* points, not on
the means: with equal seeds per φ both give the same parameters, but the
per-seed fit has the seeds' scatter as residuals, so the covariance (and the
standard errors) sees the seed noise even when three φ values leave a fit of
the means no residual degrees of freedom.

**Held out.** The law fitted on every φ below ``k`` predicts the error at
``k``; the prediction error (predicted − measured mean, in points) is judged
against the 95% Student-t half-width of the measured mean over its seeds
(``stats.mean_ci``, the report's "spread").

**Star sweep.** See ``star``.
"""

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import optimize

from dvl.sweep import stats

MIN_FIT_PHIS = 3
BOUNDS = ((1e-12, 1e-6, 0.0), (np.inf, 10.0, 1.0))  # (a, b, c)
WITHIN = 'within the seeds\' spread'
OUTSIDE = 'outside the seeds\' spread'
NO_SPREAD = 'no spread to judge by (one seed at the held-out phi)'


def saturating(x, a, b, c):
  """``a·x^(−b) + c``."""
  return a * np.power(x, -b) + c


@dataclasses.dataclass(frozen=True)
class Law:
  """A fitted ``E = a·(C / cost_ref)^(−b) + c``, the standard errors of
  (a, b, c) from the fit's covariance (nan where it is undefined, e.g. one
  seed at each of three φ) and the φ values it was fitted on; calling it
  on a cost gives the predicted error."""
  a: float
  b: float
  c: float
  stderr: tuple[float, float, float]
  cost_ref: float
  phis: tuple

  def __call__(self, cost):
    return saturating(np.asarray(cost, dtype=float) / self.cost_ref, self.a,
                      self.b, self.c)


def _values(errors) -> list[float]:
  """The error rates of a {seed: error} mapping or a sequence."""
  return list(errors.values()) if isinstance(errors, Mapping) else list(
      errors)


def _start(x, y) -> tuple[float, float, float]:
  """Starting (a, b, c): c half the smallest error, then a log-log line of
  the excess ``y − c`` against x."""
  c = 0.5 * float(np.min(y))
  slope, intercept = np.polyfit(np.log(x), np.log(np.maximum(y - c, 1e-12)),
                                1)
  lo, hi = BOUNDS
  b = float(np.clip(-slope, 0.05, 5.0))
  a = float(np.clip(math.exp(intercept), 1e-6, 1e6))
  return a, b, float(np.clip(c, lo[2], hi[2]))


def fit(points: Sequence[tuple]) -> Law:
  """The saturating law fitted on ``points``, each ``(phi, cost, errors)``
  with ``errors`` a {seed: error rate} mapping (or a sequence).

  Raises ValueError with fewer than ``MIN_FIT_PHIS`` distinct φ values, a
  cost that is not > 0, or an error outside [0, 1].
  """
  phis = sorted({p[0] for p in points})
  if len(phis) < MIN_FIT_PHIS:
    raise ValueError(f'a scaling law needs at least {MIN_FIT_PHIS} phi values '
                     f'to fit its three parameters; got {len(phis)} '
                     f'({phis}): train more phi values or hold out a later one')
  costs, errors = [], []
  for phi, cost, values in points:
    values = _values(values)
    if not cost > 0:
      raise ValueError(f'phi {phi}: cost must be > 0; got {cost}')
    if any(not 0 <= v <= 1 for v in values):
      raise ValueError(f'phi {phi}: error rates must lie in [0, 1]; got '
                       f'{values} (pass 1 - accuracy)')
    costs += [cost] * len(values)
    errors += values
  ref = min(costs)
  x, y = np.asarray(costs) / ref, np.asarray(errors, dtype=float)
  try:
    with warnings.catch_warnings():  # an undefined covariance: nan below
      warnings.simplefilter('ignore', optimize.OptimizeWarning)
      params, cov = optimize.curve_fit(saturating, x, y, p0=_start(x, y),
                                       bounds=BOUNDS, maxfev=20000)
  except RuntimeError as err:
    raise ValueError(f'the law E = a*x^(-b) + c did not converge on phi '
                     f'{phis}: {err}') from None
  with np.errstate(invalid='ignore'):
    stderr = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else (
        np.full(3, np.nan))
  return Law(*map(float, params), tuple(map(float, stderr)), ref, tuple(phis))


@dataclasses.dataclass(frozen=True)
class Heldout:
  """A law's prediction at the held-out φ against its measurement.
  ``error_points``: 100·(predicted − measured mean); ``spread_points``:
  100·the 95% half-width of the measured mean (nan with one seed)."""
  law: Law
  phi: float
  predicted: float
  measured: stats.Interval
  error_points: float
  spread_points: float
  verdict: str


def heldout(points: Sequence[tuple], phi=None) -> Heldout:
  """Fits on every point with φ < ``phi`` (default: the largest φ) and
  judges the prediction at ``phi``: ``WITHIN`` when |predicted − measured
  mean| <= the 95% half-width of the mean over the seeds there."""
  phis = sorted({p[0] for p in points})
  phi = phis[-1] if phi is None else phi
  held = [p for p in points if p[0] == phi]
  if not held:
    raise ValueError(f'no points at the held-out phi {phi}; the phi values '
                     f'are {phis}')
  law = fit([p for p in points if p[0] < phi])
  measured = stats.mean_ci([e for _, _, v in held for e in _values(v)])
  predicted = float(law(held[0][1]))
  error = 100 * (predicted - measured.mean)
  spread = 100 * measured.half_width
  if measured.n < 2:
    word = NO_SPREAD
  else:
    word = WITHIN if abs(error) <= spread else OUTSIDE
  return Heldout(law, phi, predicted, measured, error, spread, word)


def points_from_series(series: Sequence[Mapping], cost: str = 'macs'
                       ) -> list[tuple]:
  """``(phi, cost, {seed: error})`` of one method's points as
  ``analysis.series`` gives them (accuracies in ``values``)."""
  return [(p['phi'], p[cost], {s: 1 - v for s, v in p['values'].items()})
          for p in series]


def check_law(sweep) -> None:
  """Checks ``sweep.law``: ``holdout``, the φ the law is judged at (0: no
  held-out fit), which leaves φ = 0 … holdout − 1, at least
  ``MIN_FIT_PHIS`` values, to fit, and is at most ``sweep.max_phi``."""
  law = sweep.get('law', None)
  if not law:
    return
  holdout = law.get('holdout', 0)
  if holdout == 0:
    return
  if not isinstance(holdout, int) or holdout < MIN_FIT_PHIS:
    raise ValueError(f'sweep.law.holdout must be 0 (off) or an integer >= '
                     f'{MIN_FIT_PHIS}, leaving phi = 0 ... holdout - 1 (at '
                     f'least {MIN_FIT_PHIS} values) to fit; got {holdout!r}')
  max_phi = sweep.get('max_phi', holdout)
  if holdout > max_phi:
    raise ValueError(f'sweep.law.holdout = {holdout} is beyond sweep.max_phi '
                     f'= {max_phi}: raise max_phi to {holdout}')
