"""The statistics a sweep's verdicts are stated with.

Accuracies are fractions in [0, 1]; a point's accuracies are a dict
``{seed: value}``. Intervals are Student's t intervals (Student 1908); the
seeds needed to resolve a difference come from the power of the paired t-test
through the noncentral t distribution (Cohen 1988, Ch. 2); how sure a choice
is comes from the paired percentile bootstrap (Efron & Tibshirani 1993).
Pure numpy and scipy.
"""

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

WINS = 'wins'
LOSES = 'loses'
UNRESOLVED = 'no difference resolved at this budget'

MAX_SEEDS = 10_000  # seeds_to_resolve gives up (returns None) beyond this.


@dataclasses.dataclass(frozen=True)
class Interval:
  """A mean and its confidence interval [low, high] from ``n`` values of
  sample standard deviation ``sd`` (ddof = 1). With one value there is no
  interval: ``low``, ``high`` and ``sd`` are nan."""
  mean: float
  low: float
  high: float
  n: int
  sd: float

  @property
  def half_width(self) -> float:
    """(high − low) / 2; nan for one value."""
    return (self.high - self.low) / 2


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
  """The mean with Student's t interval:

      mean ± t_{(1 + level)/2, n − 1} · sd / √n,   sd with ddof = 1.

  Raises ValueError for no values or a level outside (0, 1).
  """
  if not 0 < level < 1:
    raise ValueError(f'level must lie in (0, 1), got {level}')
  x = np.asarray(values, dtype=float)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f'mean_ci needs a non-empty list of values, '
                     f'got {values!r}')
  mean = float(x.mean())
  if x.size == 1:
    return Interval(mean, math.nan, math.nan, 1, math.nan)
  sd = float(x.std(ddof=1))
  half = float(stats.t.ppf((1 + level) / 2, x.size - 1)) * sd / math.sqrt(
      x.size)
  return Interval(mean, mean - half, mean + half, int(x.size), sd)


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
                      level: float = 0.95) -> Interval:
  """a − b paired by seed: Student's t interval (``mean_ci``) of the per-seed
  differences a[s] − b[s] over the seeds both have. Pairing removes what a
  seed does to both (its data order, its initialisation).

  Raises ValueError naming both seed sets when they share none.
  """
  shared = [s for s in a if s in b]
  if not shared:
    raise ValueError(f'no seed in common to pair: a has seeds '
                     f'{sorted(a, key=repr)}, b has seeds '
                     f'{sorted(b, key=repr)}; train both on the same seeds')
  return mean_ci([a[s] - b[s] for s in shared], level)


def verdict(diff: Interval) -> str:
  """WINS when the whole interval of a − b lies above 0, LOSES when it lies
  below, UNRESOLVED otherwise, and always with fewer than two seeds."""
  if diff.n < 2:
    return UNRESOLVED
  if diff.low > 0:
    return WINS
  if diff.high < 0:
    return LOSES
  return UNRESOLVED


def _paired_t_power(n: int, sd: float, delta: float, level: float) -> float:
  """P(|T| > t_crit), T ~ nct(df = n − 1, nc = delta / (sd / √n)).

  The lower tail P(T < −t_crit) is taken as P(−T > t_crit) with −T ~
  nct(df, −nc): scipy's ``nct.cdf`` returns nan far in that tail (df = 9999,
  nc = 20), its ``sf`` does not.
  """
  df = n - 1
  crit = stats.t.ppf((1 + level) / 2, df)
  nc = delta / (sd / math.sqrt(n))
  return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def seeds_to_resolve(sd: float, delta: float = 0.01, level: float = 0.95,
                     power: float = 0.8) -> int | None:
  """The fewest seeds n ≥ 2 at which a two-sided paired t-test at ``level``
  detects a true mean difference ``delta`` with probability ≥ ``power``,
  given per-seed differences of standard deviation ``sd``:

      power(n) = P(|T| > t_{(1 + level)/2, n − 1}),
      T ~ noncentral t(df = n − 1, nc = delta / (sd / √n)).

  power(n) grows with n, so the search doubles n and then bisects. None when
  ``sd`` is nan or more than MAX_SEEDS seeds would be needed; 2 when
  ``sd`` is 0 (any difference is exact).
  """
  if math.isnan(sd):
    return None
  if sd < 0 or delta <= 0:
    raise ValueError(f'need sd >= 0 and delta > 0, got sd={sd}, delta={delta}')
  if not (0 < level < 1 and 0 < power < 1):
    raise ValueError(f'level and power must lie in (0, 1), got level={level}, '
                     f'power={power}')
  if sd == 0:
    return 2

  def enough(n):
    return _paired_t_power(n, sd, delta, level) >= power

  if enough(2):
    return 2
  if not enough(MAX_SEEDS):
    return None
  short, long = 2, 4  # power(short) falls short; find a long that suffices.
  while long < MAX_SEEDS and not enough(long):
    short, long = long, 2 * long
  long = min(long, MAX_SEEDS)
  while long - short > 1:
    middle = (short + long) // 2
    if enough(middle):
      long = middle
    else:
      short = middle
  return long


def _shared_matrix(scores: Mapping[Hashable, Mapping[Hashable, float]]):
  """The candidates' keys and a (candidates, shared seeds) array."""
  if not scores:
    raise ValueError('no candidates to compare')
  keys = list(scores)
  seeds = [s for s in scores[keys[0]] if all(s in scores[k] for k in keys)]
  if not seeds:
    raise ValueError('the candidates share no seed: '
                     + '; '.join(f'{k!r} has {sorted(scores[k], key=repr)}'
                                 for k in keys))
  return keys, np.array([[scores[k][s] for s in seeds] for k in keys],
                        dtype=float)


def bootstrap_selection(scores: Mapping[Hashable, Mapping[Hashable, float]],
                        draws: int = 2000, seed: int = 0
                        ) -> dict[Hashable, float]:
  """How often each candidate has the best mean when the seeds are resampled
  with replacement (paired bootstrap; Efron & Tibshirani 1993).

  Only the seeds every candidate has are used, and each draw resamples one
  list of them that every candidate is scored on, so a seed's effect on all
  candidates cancels. Ties go to the candidate that comes first in
  ``scores``, as the report's choice breaks them: order ``scores`` by the
  report's preference (fewer MACs first) before calling. Returns each
  candidate's frequency of being chosen; they sum to 1. Random numbers come
  from ``numpy.random.Generator(PCG64(seed))``.
  """
  if draws < 1:
    raise ValueError(f'draws must be at least 1, got {draws}')
  keys, values = _shared_matrix(scores)
  rng = np.random.Generator(np.random.PCG64(seed))
  picks = rng.integers(0, values.shape[1], size=(draws, values.shape[1]))
  means = values[:, picks].mean(axis=-1)  # (candidates, draws)
  best = np.argmax(means, axis=0)  # the first of equal maxima
  counts = np.bincount(best, minlength=len(keys))
  return {k: float(c) / draws for k, c in zip(keys, counts)}


def runner_up_margin(scores: Mapping[Hashable, Mapping[Hashable, float]],
                     chosen: Hashable) -> tuple[Hashable, Interval]:
  """The runner-up (the best mean over its seeds among the candidates other
  than ``chosen``, ties to the first in ``scores``) and the paired difference
  chosen − runner-up (``paired_difference``)."""
  if chosen not in scores:
    raise ValueError(f'{chosen!r} is not a candidate; choose one of: '
                     f'{", ".join(map(repr, scores))}')
  others = [k for k in scores if k != chosen]
  if not others:
    raise ValueError(f'{chosen!r} is the only candidate: no runner-up')
  runner_up = max(others, key=lambda k: math.fsum(scores[k].values())
                  / len(scores[k]))
  return runner_up, paired_difference(scores[chosen], scores[runner_up])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's rank correlation (``scipy.stats.spearmanr``: Pearson's r of
  the ranks, ties given their mean rank); nan for fewer than two points or a
  constant input."""
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  if x.shape != y.shape:
    raise ValueError(f'x and y need the same length, got {x.size} and {y.size}')
  if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
    return math.nan
  return float(stats.spearmanr(x, y).statistic)


def fmt_percent(value: float | None, suffix: str = '') -> str:
  """'84.31' (with ``suffix='%'``, '84.31%'): one accuracy in percent, or
  '—' when there is none (a trial that failed)."""
  return '—' if value is None else f'{100 * value:.2f}{suffix}'


def fmt_pct(interval: Interval) -> str:
  """'84.31 ± 1.20': mean ± half-width in percentage points, or
  '84.31 (1 seed)' when there is no interval."""
  if interval.n < 2:
    return f'{100 * interval.mean:.2f} (1 seed)'
  return f'{100 * interval.mean:.2f} ± {100 * interval.half_width:.2f}'


def fmt_diff(interval: Interval) -> str:
  """'+1.20 [-0.30, +2.70]': a difference and its interval in percentage
  points, or '+1.20 (1 seed)' when there is no interval."""
  if interval.n < 2:
    return f'{100 * interval.mean:+.2f} (1 seed)'
  return (f'{100 * interval.mean:+.2f} [{100 * interval.low:+.2f}, '
          f'{100 * interval.high:+.2f}]')


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  if np.all(x == x[0]) or np.all(y == y[0]):
    return math.nan
  return float(np.corrcoef(x, y)[0, 1])


def correlation_contrast(y: Sequence[float], a: Sequence[float],
                         b: Sequence[float], draws: int = 2000,
                         level: float = 0.95, seed: int = 0) -> dict:
  """How well ``a`` and ``b`` track ``y`` over the same points: Pearson's r
  of ``y`` with each, and ``r_b − r_a``, each an ``Interval`` whose bounds
  are the percentile bootstrap's (the points resampled with replacement,
  ``draws`` times; draws where a correlation is undefined are dropped).
  ``sd`` is the bootstrap's standard deviation. Raises ValueError for fewer
  than three points or lists of different lengths."""
  y, a, b = (np.asarray(v, dtype=float) for v in (y, a, b))
  if not y.shape == a.shape == b.shape or y.ndim != 1:
    raise ValueError(f'y, a and b need the same length; got {y.size}, '
                     f'{a.size}, {b.size}')
  if y.size < 3:
    raise ValueError(f'a correlation needs at least three points; got '
                     f'{y.size}')
  rng = np.random.default_rng(seed)
  samples = []
  for _ in range(draws):
    i = rng.integers(0, y.size, y.size)
    samples.append((_pearson(y[i], a[i]), _pearson(y[i], b[i])))
  samples = np.asarray(samples)
  samples = samples[np.all(np.isfinite(samples), axis=1)]
  tail = 100 * (1 - level) / 2
  out = {}
  point = {'a': _pearson(y, a), 'b': _pearson(y, b)}
  point['b_minus_a'] = point['b'] - point['a']
  columns = {'a': samples[:, 0], 'b': samples[:, 1],
             'b_minus_a': samples[:, 1] - samples[:, 0]}
  for name, values in columns.items():
    if values.size < 2:
      out[name] = Interval(point[name], math.nan, math.nan, int(y.size),
                           math.nan)
      continue
    low, high = np.percentile(values, [tail, 100 - tail])
    out[name] = Interval(point[name], float(low), float(high), int(y.size),
                         float(values.std(ddof=1)))
  return out
