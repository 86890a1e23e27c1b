"""Which scalings a sweep trains: the φ = 1 grid and the scale-up rows.

EfficientNet (Tan & Le 2019, Sec. 3.3, Eq. 3) scales depth by ``d = α^φ``,
width by ``w = β^φ`` and resolution by ``r = γ^φ``. Its step 1 fixes φ = 1
and grid-searches α, β, γ ≥ 1 under ``α·β²·γ² ≈ 2``, so that every step of φ
about doubles the MACs; the paper found α = 1.2, β = 1.1, γ = 1.15. Step 2
scales the baseline up with the chosen coefficients. Its Figure 8 and
Table 3 compare that against scaling one dimension alone at the same cost:
``single_dimension`` multiplies one dimension by the whole nominal growth
``(α·β²·γ²)^φ`` (depth) or its square root (width, resolution), so that
``d·w²·r²`` matches the compound row's; ``dvl.sweep.search.matched`` then
moves that multiplier until the counted MACs match too.
"""

import math
from typing import Sequence

PAPER = (1.2, 1.1, 1.15)
SINGLE_DIMENSIONS = ('depth', 'width', 'resolution')


def axis(bounds: Sequence[float], step: float, name: str) -> list[float]:
  """The grid values ``lo, lo + step, ..., hi`` of one coefficient."""
  lo, hi = bounds
  if lo < 1.0:
    raise ValueError(f'sweep.grid.{name} starts at {lo}: compound scaling '
                     f'never shrinks a dimension, so {name} must be >= 1')
  if hi < lo:
    raise ValueError(f'sweep.grid.{name} = ({lo}, {hi}) is empty: the upper '
                     'bound is below the lower one')
  count = int(math.floor((hi - lo) / step + 1e-9))
  return [round(lo + i * step, 6) for i in range(count + 1)]


def nominal_growth(alpha: float, beta: float, gamma: float) -> float:
  """``α·β²·γ²``: the MAC growth of one step of φ (Eq. 3)."""
  return alpha * beta ** 2 * gamma ** 2


def grid(grid_cfg, *, target: float, tolerance: float) -> list[tuple]:
  """Every (α, β, γ) of the grid with ``|α·β²·γ² - target| <= tolerance``.

  ``grid_cfg`` has ``alpha``, ``beta`` and ``gamma`` as ``(lo, hi)`` bounds
  and a common ``step``. Raises ValueError, naming the closest point and the
  tolerance it would need, when no point qualifies.
  """
  if not grid_cfg.step > 0:
    raise ValueError(f'sweep.grid.step must be > 0; got {grid_cfg.step}')
  points = [(a, b, g)
            for a in axis(grid_cfg.alpha, grid_cfg.step, 'alpha')
            for b in axis(grid_cfg.beta, grid_cfg.step, 'beta')
            for g in axis(grid_cfg.gamma, grid_cfg.step, 'gamma')]
  inside = [p for p in points
            if abs(nominal_growth(*p) - target) <= tolerance + 1e-9]
  if not inside:
    closest = min(points, key=lambda p: abs(nominal_growth(*p) - target))
    need = math.ceil(abs(nominal_growth(*closest) - target) * 1000 - 1e-6)
    raise ValueError(
        f'no (alpha, beta, gamma) of the grid has alpha*beta^2*gamma^2 within '
        f'{tolerance:g} of {target:g}: the closest is {closest}, at '
        f'{nominal_growth(*closest):.3f}. Widen sweep.tolerance to at least '
        f'{need / 1000:g}, use a finer sweep.grid.step, '
        'widen the sweep.grid ranges, or list sweep.candidates.')
  return inside


def checked_list(points, *, target: float, tolerance: float) -> list[tuple]:
  """A fixed list of (α, β, γ), each checked like a grid point."""
  out = []
  for point in points:
    if len(point) != 3:
      raise ValueError(f'sweep.candidates entry {point} is not one '
                       '(alpha, beta, gamma) triple')
    alpha, beta, gamma = map(float, point)
    if min(alpha, beta, gamma) < 1.0:
      raise ValueError(f'sweep.candidates entry {point}: alpha, beta and '
                       'gamma must all be >= 1 (compound scaling never '
                       'shrinks a dimension)')
    growth = nominal_growth(alpha, beta, gamma)
    if abs(growth - target) > tolerance + 1e-9:
      raise ValueError(
          f'sweep.candidates entry {point} has alpha*beta^2*gamma^2 = '
          f'{growth:.3f}, not within {tolerance:g} of {target:g}: drop it or '
          'widen sweep.tolerance')
    out.append((alpha, beta, gamma))
  return out


def candidates(sweep) -> list[tuple]:
  """The φ = 1 candidates of ``config.sweep``: its list, else its grid."""
  if not sweep.tolerance >= 0:
    raise ValueError(f'sweep.tolerance must be >= 0; got {sweep.tolerance}')
  if sweep.candidates:
    return checked_list(sweep.candidates, target=sweep.target,
                        tolerance=sweep.tolerance)
  return grid(sweep.grid, target=sweep.target, tolerance=sweep.tolerance)


def single_dimension(kind: str, phi: float, growth: float) -> tuple:
  """(d, w, r) scaling only ``kind`` to the nominal MACs ``growth^φ``."""
  total = growth ** phi
  if kind == 'depth':
    return total, 1.0, 1.0
  if kind == 'width':
    return 1.0, math.sqrt(total), 1.0
  if kind == 'resolution':
    return 1.0, 1.0, math.sqrt(total)
  raise ValueError(f'unknown single-dimension scaling {kind!r}; choose one '
                   f'of: {", ".join(SINGLE_DIMENSIONS)}')
