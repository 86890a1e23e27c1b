"""Reading a learning-rate range test (Smith 2017, "Cyclical learning rates").

The run itself uses ``lr_range_schedule`` (or ``schedule='lr_range'``) and
records ``(lr, loss)`` at every step. ``suggest_learning_rate`` then:

1. smooths the losses with a bias-corrected exponential moving average,
   ``s_i = EMA_i / (1 - beta**(i + 1))``;
2. cuts the curve where training diverges: at the first non-finite loss or
   the first point whose smoothed loss exceeds ``diverge_factor`` times the
   lowest smoothed loss before it;
3. applies a rule to what is left:

   * 'steepest': the lr where the smoothed loss falls fastest, i.e. the most
     negative ``d s / d log(lr)`` (central differences);
   * 'min_over_10': one tenth of the lr at the smoothed loss's minimum, a
     margin below the point where the loss stops improving.
"""

from typing import NamedTuple, Sequence

import numpy as np

RULES = ('steepest', 'min_over_10')


class LrSuggestion(NamedTuple):
  lr: float              # suggested learning rate
  index: int             # record the rule picked (before any /10)
  smoothed: np.ndarray   # smoothed losses up to the cut
  num_used: int          # records kept before divergence


def smooth_losses(losses: Sequence[float], beta: float) -> np.ndarray:
  """Bias-corrected exponential moving average of ``losses``."""
  if not 0.0 <= beta < 1.0:
    raise ValueError(f'beta must be in [0, 1), got {beta}')
  smoothed, average = [], 0.0
  for i, loss in enumerate(np.asarray(losses, np.float64)):
    average = beta * average + (1.0 - beta) * loss
    smoothed.append(average / (1.0 - beta ** (i + 1)))
  return np.asarray(smoothed)


def _num_before_divergence(losses: np.ndarray, smoothed: np.ndarray,
                           diverge_factor: float) -> int:
  best = np.inf
  for i, (loss, s) in enumerate(zip(losses, smoothed)):
    if not np.isfinite(loss) or s > diverge_factor * best:
      return i
    best = min(best, s)
  return len(losses)


def _check_records(lrs: np.ndarray, losses: np.ndarray) -> None:
  if lrs.ndim != 1 or lrs.shape != losses.shape:
    raise ValueError(f'lrs and losses must be 1-D and of equal length, got '
                     f'shapes {lrs.shape} and {losses.shape}')
  if np.any(lrs <= 0) or np.any(np.diff(lrs) <= 0):
    raise ValueError('lrs must be positive and strictly increasing, as a '
                     'range test records them')


def suggest_learning_rate(lrs: Sequence[float], losses: Sequence[float], *,
                          rule: str = 'steepest', beta: float = 0.98,
                          diverge_factor: float = 4.0) -> LrSuggestion:
  """Suggests a learning rate from range-test records; see the module doc."""
  if rule not in RULES:
    raise ValueError(f"unknown rule '{rule}'; choose one of: "
                     f"{', '.join(RULES)}")
  lrs = np.asarray(lrs, np.float64)
  losses = np.asarray(losses, np.float64)
  _check_records(lrs, losses)
  smoothed = smooth_losses(np.nan_to_num(losses, nan=0.0, posinf=0.0,
                                         neginf=0.0), beta)
  used = _num_before_divergence(losses, smoothed, diverge_factor)
  if used < 3:
    raise ValueError(f'only {used} records before the loss diverged; start '
                     'the range test at a smaller learning rate')
  smoothed = smoothed[:used]
  if rule == 'steepest':
    index = int(np.argmin(np.gradient(smoothed, np.log(lrs[:used]))))
    return LrSuggestion(float(lrs[index]), index, smoothed, used)
  index = int(np.argmin(smoothed))
  return LrSuggestion(float(lrs[index]) / 10.0, index, smoothed, used)
