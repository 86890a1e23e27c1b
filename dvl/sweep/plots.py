"""The sweep report's plots: test accuracy against each cost per scaling
method, and the φ = 1 grid.

Drawn on ``matplotlib.figure.Figure`` objects (no pyplot state), so they can
be made in any thread or process. Every accuracy is a mean over seeds with
its 95% interval as the error bar (``dvl.sweep.analysis``).
"""

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from dvl.sweep import analysis, candidates

LABELS = {'compound': 'compound', 'depth': 'depth only', 'width': 'width only',
          'resolution': 'resolution only', 'uniform': 'uniform'}
COLORS = {'compound': 'tab:red', 'depth': 'tab:blue', 'width': 'tab:green',
          'resolution': 'tab:purple'}
STRATEGY_COLORS = ('tab:orange', 'tab:brown', 'tab:pink', 'tab:olive',
                   'tab:cyan', 'tab:gray')
# Each cost a plot can be drawn against: (row field, scale, axis label).
COSTS = {
    'macs': ('macs', 1e6, 'MACs per image (millions, log scale)'),
    'params': ('params', 1e6, 'trainable parameters (millions, log scale)'),
    'activations': ('activations', 1e6,
                    'activations per image (millions, log scale)'),
    'time': ('us_per_image', 1.0,
             'measured train step, µs per image (log scale)')}


def label(method: str) -> str:
  """A method's name in the report: 'depth only', 'dWr (A = 0.8)', ..."""
  if method in LABELS:
    return LABELS[method]
  name, _, arg = method.partition(':')
  if name == 'dwr':
    return f'dWr (A = {arg})'
  if name == 'exponents':
    return f'exponents ({arg})'
  return method


def color(method: str, methods=()) -> str:
  """A method's line colour; strategies take the next free colour in the
  order of ``methods``."""
  if method in COLORS:
    return COLORS[method]
  others = [m for m in methods if m not in COLORS] or [method]
  index = others.index(method) if method in others else 0
  return STRATEGY_COLORS[index % len(STRATEGY_COLORS)]


def _with_time(point: dict) -> dict:
  """``point`` with ``us_per_image`` from its measured train step (None
  when it has none)."""
  rate = point.get('train_images_per_s')
  return {**point, 'us_per_image': 1e6 / rate if rate and rate == rate
          else None}


def title(sweep_config: dict) -> str:
  return (f'{sweep_config["model"]["name"]} on '
          f'{sweep_config["input"]["dataset"]}')


def plot_scaling(rows, sweep_config: dict, cost: str) -> Figure:
  """Test accuracy against ``cost`` (a key of ``COSTS``) per method, with
  95% intervals over seeds as error bars (the largest budget's series, the
  others dashed). Points without the cost (a step not measured) are left
  out."""
  field, scale, unit = COSTS[cost]
  cost = field
  fig = Figure(figsize=(7.5, 5.2), dpi=120)
  ax = fig.add_subplot()
  points = [p for p in map(_with_time, analysis.aggregate(
      rows, 'test_accuracy')) if p.get(cost)]
  grid = [p for p in points if p['kind'] == 'grid']
  all_budgets = analysis.budgets(rows) or [None]
  methods = analysis.scale_up_methods(rows)

  def measured(line):
    return [p for p in map(_with_time, line) if p.get(cost)]
  if grid:
    ax.scatter([p[cost] / scale for p in grid],
               [100 * p['mean'] for p in grid], s=22, color='0.6',
               label='φ = 1 candidates (grid)', zorder=2)
  for budget in all_budgets:
    main = budget == all_budgets[-1]
    for method, line in analysis.series(rows, 'test_accuracy',
                                        budget).items():
      line = measured(line)
      name = label(method) + ('' if budget is None or len(all_budgets) == 1
                              else f' (budget {budget:g})')
      ax.errorbar([p[cost] / scale for p in line],
                  [100 * p['mean'] for p in line],
                  yerr=[100 * p['spread'] for p in line], marker='o',
                  color=color(method, methods), label=name, capsize=3,
                  linestyle='-' if main else '--', alpha=1.0 if main else 0.6,
                  # Compound on top: a single dimension may share its points.
                  zorder=5 if method == 'compound' else 3,
                  linewidth=2.5 if method == 'compound' else 1.5)
    if not main:
      continue
    for method, line in analysis.series(rows, 'test_accuracy',
                                        budget).items():
      for p in measured(line):
        if p['phi'] == 0:
          continue
        ax.annotate(f'φ={p["phi"]:g}', (p[cost] / scale, 100 * p['mean']),
                    textcoords='offset points', xytext=(4, -10), fontsize=7,
                    color=color(method, methods))
  front = analysis.pareto(points, cost)
  if front:
    ax.step([p[cost] / scale for p in front],
            [100 * p['mean'] for p in front], where='post', color='black',
            linestyle='--', linewidth=1, zorder=1)
    ax.scatter([p[cost] / scale for p in front],
               [100 * p['mean'] for p in front], s=110, facecolors='none',
               edgecolors='black', label='Pareto front', zorder=4)
  if points:
    ax.set_xscale('log')
  plain = FuncFormatter(lambda value, _: f'{value:g}')
  ax.xaxis.set_major_formatter(plain)
  ax.xaxis.set_minor_formatter(plain)
  ax.tick_params(axis='x', which='minor', labelsize=7)
  ax.set_xlabel(unit)
  ax.set_ylabel('test accuracy (%, mean and 95% CI over seeds)')
  what = {'macs': 'MACs', 'params': 'parameters', 'activations':
          'activations', 'us_per_image': 'measured step time'}[cost]
  if not points:
    ax.text(0.5, 0.5, f'no trial has {what} recorded', ha='center',
            transform=ax.transAxes)
  ax.set_title(f'{title(sweep_config)}: accuracy vs {what} by scaling method')
  ax.grid(True, which='both', alpha=0.3)
  if points:
    ax.legend(loc='best', fontsize=8)
  fig.tight_layout()
  return fig


def plot_grid(rows, sweep_config: dict, chosen) -> Figure:
  """The φ = 1 candidates over α and β, coloured by validation accuracy."""
  fig = Figure(figsize=(7, 5.2), dpi=120)
  ax = fig.add_subplot()
  budget = max(analysis.budgets(rows) or [None],
               key=lambda b: -1 if b is None else b)
  grid = analysis.grid_points(rows, 'val_accuracy', budget)
  if grid:
    dots = ax.scatter([p['alpha'] for p in grid], [p['beta'] for p in grid],
                      c=[100 * p['mean'] for p in grid], cmap='viridis',
                      s=160, edgecolors='black', zorder=2)
    fig.colorbar(dots, ax=ax, label='validation accuracy (%)')
    for p in grid:
      ax.annotate(f'γ={p["gamma"]:g}', (p['alpha'], p['beta']),
                  textcoords='offset points', xytext=(7, 5), fontsize=7)
  if chosen is not None:
    ax.scatter([chosen['alpha']], [chosen['beta']], marker='*', s=420,
               facecolors='none', edgecolors='red', linewidths=1.5,
               label=f'chosen (γ={chosen["gamma"]:g})', zorder=3)
  alpha, beta, gamma = candidates.PAPER
  ax.scatter([alpha], [beta], marker='x', s=90, color='black',
             label=f'paper: α={alpha}, β={beta}, γ={gamma}', zorder=3)
  ax.set_xlabel('α (depth coefficient)')
  ax.set_ylabel('β (width coefficient)')
  ax.set_title(f'{title(sweep_config)}: φ = 1 search, '
               'α·β²·γ² ≈ ' + f'{sweep_config["sweep"]["target"]:g}')
  ax.grid(True, alpha=0.3)
  ax.legend(loc='upper right', fontsize=8)
  fig.tight_layout()
  return fig
