"""The ``scaling_report`` job: ``report.md`` and plots of a sweep workdir.

    python launch.py --config experiments/scaling_report.py --workdir runs/search

Reads ``sweep.json`` and ``results.jsonl`` and writes, next to them:

* ``accuracy_vs_macs.png``: test accuracy against MACs per image (log axis),
  one line per scaling method from the baseline up, the φ = 1 candidates,
  and the Pareto front of everything trained;
* ``accuracy_vs_params.png``: the same against trainable parameters;
* ``search_grid.png``: the φ = 1 candidates over α (x) and β (y), coloured by
  validation accuracy, each annotated with its γ; the chosen point and the
  paper's (α = 1.2, β = 1.1, γ = 1.15) marked;
* ``report.md``: the chosen coefficients beside the paper's, whether
  compound scaling won at matched MACs (from the numbers), and every trial.

Selection uses validation accuracy, the scaling comparison test accuracy;
points with several seeds show their mean and sample standard deviation.
The plots are drawn on ``matplotlib.figure.Figure`` objects (no pyplot
state), so they can be made in any thread or process.
"""

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from dvl.sweep import analysis, candidates, results

LABELS = {'compound': 'compound', 'depth': 'depth only', 'width': 'width only',
          'resolution': 'resolution only'}
COLORS = {'compound': 'tab:red', 'depth': 'tab:blue', 'width': 'tab:green',
          'resolution': 'tab:purple'}
PLOTS = ('accuracy_vs_macs.png', 'accuracy_vs_params.png', 'search_grid.png')


def _title(sweep_config: dict) -> str:
  return (f'{sweep_config["model"]["name"]} on '
          f'{sweep_config["input"]["dataset"]}')


def _pct(value) -> str:
  return '—' if value is None else f'{100 * value:.2f}'


def _mean(point) -> str:
  text = _pct(point['mean'])
  return text + (f' ± {100 * point["spread"]:.2f}' if point['seeds'] > 1
                 else '')


def plot_scaling(rows, sweep_config: dict, cost: str) -> Figure:
  """Test accuracy against ``cost`` ('macs' or 'params') per method."""
  scale = 1e6
  unit = 'MACs per image (millions, log scale)' if cost == 'macs' else (
      'trainable parameters (millions, log scale)')
  fig = Figure(figsize=(7.5, 5.2), dpi=120)
  ax = fig.add_subplot()
  points = analysis.aggregate(rows, 'test_accuracy')
  grid = [p for p in points if p['kind'] == 'grid']
  if grid:
    ax.scatter([p[cost] / scale for p in grid],
               [100 * p['mean'] for p in grid], s=22, color='0.6',
               label='φ = 1 candidates (grid)', zorder=2)
  for method, line in analysis.series(rows, 'test_accuracy').items():
    ax.errorbar([p[cost] / scale for p in line],
                [100 * p['mean'] for p in line],
                yerr=[100 * p['spread'] for p in line], marker='o',
                color=COLORS[method], label=LABELS[method], capsize=3,
                # Compound on top: a single dimension may share its points.
                zorder=5 if method == 'compound' else 3,
                linewidth=2.5 if method == 'compound' else 1.5)
    for p in line[1:]:
      ax.annotate(f'φ={p["phi"]:g}', (p[cost] / scale, 100 * p['mean']),
                  textcoords='offset points', xytext=(4, -10), fontsize=7,
                  color=COLORS[method])
  front = analysis.pareto(points, cost)
  if front:
    ax.step([p[cost] / scale for p in front],
            [100 * p['mean'] for p in front], where='post', color='black',
            linestyle='--', linewidth=1, zorder=1)
    ax.scatter([p[cost] / scale for p in front],
               [100 * p['mean'] for p in front], s=110, facecolors='none',
               edgecolors='black', label='Pareto front', zorder=4)
  ax.set_xscale('log')
  plain = FuncFormatter(lambda value, _: f'{value:g}')
  ax.xaxis.set_major_formatter(plain)
  ax.xaxis.set_minor_formatter(plain)
  ax.tick_params(axis='x', which='minor', labelsize=7)
  ax.set_xlabel(unit)
  ax.set_ylabel('test accuracy (%)')
  what = 'MACs' if cost == 'macs' else 'parameters'
  ax.set_title(f'{_title(sweep_config)}: accuracy vs {what} by scaling method')
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(loc='best', fontsize=8)
  fig.tight_layout()
  return fig


def plot_grid(rows, sweep_config: dict, chosen) -> Figure:
  """The φ = 1 candidates over α and β, coloured by validation accuracy."""
  fig = Figure(figsize=(7, 5.2), dpi=120)
  ax = fig.add_subplot()
  grid = [p for p in analysis.aggregate(rows, 'val_accuracy')
          if p['kind'] == 'grid']
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
  ax.set_title(f'{_title(sweep_config)}: φ = 1 search, '
               'α·β²·γ² ≈ ' + f'{sweep_config["sweep"]["target"]:g}')
  ax.grid(True, alpha=0.3)
  ax.legend(loc='upper right', fontsize=8)
  fig.tight_layout()
  return fig


def _chosen_section(rows, sweep: dict, chosen) -> list[str]:
  lines = ['## Chosen coefficients (φ = 1)', '']
  if chosen is None:
    return lines + ['No φ = 1 candidate trained; see the trials below.', '']
  test = {p['trials'][0]: p for p in analysis.aggregate(rows, 'test_accuracy')}
  vals = analysis.aggregate(rows, 'val_accuracy')
  paper = [p for p in vals if p['kind'] == 'grid' and
           (p['alpha'], p['beta'], p['gamma']) == candidates.PAPER]
  lines += ['| | α | β | γ | α·β²·γ² | val acc (%) | test acc (%) | params '
            '| MACs (M) |', '|---|---|---|---|---|---|---|---|---|']

  def row(name, p, coeffs):
    t = test.get(p['trials'][0]) if p else None
    cells = [f'{c:g}' for c in coeffs] + [
        f'{candidates.nominal_growth(*coeffs):.3f}',
        _mean(p) if p else 'not in this search',
        _mean(t) if t else '—',
        f'{p["params"]:,}' if p else '—',
        f'{p["macs"] / 1e6:.2f}' if p else '—']
    return f'| {name} | ' + ' | '.join(cells) + ' |'
  lines.append(row('this search', chosen,
                   (chosen['alpha'], chosen['beta'], chosen['gamma'])))
  lines.append(row('paper (Tan & Le 2019)', paper[0] if paper else None,
                   candidates.PAPER))
  lines += ['', f'Selected on {sweep["select"]} (mean over seeds '
            f'{list(sweep["seeds"])}) among the candidates with '
            f'|α·β²·γ² − {sweep["target"]:g}| ≤ {sweep["tolerance"]:g}.', '']
  return lines


def _network(row) -> str:
  """The trial that trained ``row``'s network."""
  return row.get('same_as') or row['trial']


def _shared(rows) -> dict:
  """{φ: single dimensions whose row trained the compound row's network}
  (a chosen point that scales one dimension only)."""
  compound = {r['phi']: _network(r) for r in rows if r['kind'] == 'compound'}
  shared = {}
  for r in rows:
    if (r['kind'] in LABELS and r['kind'] != 'compound'
        and compound.get(r['phi']) == _network(r)):
      shared.setdefault(r['phi'], set()).add(r['kind'])
  return shared


def _verdict_section(rows) -> list[str]:
  lines = ['## Compound scaling against one dimension at matched MACs', '']
  table = analysis.matched_macs(rows, 'test_accuracy')
  if not table:
    return lines + ['No scale-up trial trained yet.', '']
  lines += ['| φ | method | test acc (%) | MACs (M) | MACs vs compound |',
            '|---|---|---|---|---|']
  shared, wins = _shared(rows), []
  for entry in table:
    ref = entry['entries'].get('compound')
    for method, p in entry['entries'].items():
      ratio = f'{p["macs"] / ref["macs"]:.2f}x' if ref else '—'
      best = ' (best)' if method == entry['winner'] else ''
      lines.append(f'| {entry["phi"]:g} | {LABELS[method]}{best} | '
                   f'{_mean(p)} | {p["macs"] / 1e6:.2f} | {ratio} |')
    if ref and len(entry['entries']) > 1:
      # The same network under two names is a tie, not a win.
      wins.append((entry['phi'], entry['winner'] == 'compound'
                   and entry['phi'] not in shared))
  won = [phi for phi, w in wins if w]
  if wins:
    verdict = (f'Compound scaling had the best test accuracy at {len(won)} '
               f'of {len(wins)} φ values'
               + (f' (φ = {", ".join(f"{p:g}" for p in won)})' if won else '')
               + '. ')
    verdict += ('It won at every φ on this proxy.' if len(won) == len(wins)
                else 'It did not win at every φ on this proxy.' if won
                else 'It won at no φ on this proxy.')
    for phi, kinds in sorted(shared.items()):
      names = ' and '.join(LABELS[k] for k in sorted(kinds))
      verdict += (f' At φ = {phi:g} the chosen coefficients build the same '
                  f'network as {names}: those rows are one trial and tie.')
    lines += ['', verdict + ' Each single-dimension row is matched to the '
              "compound row's counted MACs as closely as the rounding of "
              'repeats, channels and sides allows; the last column shows '
              'how closely.']
  return lines + ['']


def _trials_section(rows) -> list[str]:
  lines = ['## All trials', '',
           '| trial | kind | φ | seed | α | β | γ | d | w | r | side | params '
           '| MACs (M) | steps | val (%) | test (%) | train s | compile s | '
           'status |', '|' + '---|' * 19]
  fmt = lambda v: '—' if v is None else f'{v:g}'
  for r in rows:
    status = r['status'] if r['status'] == 'ok' else (
        f'{r["status"]}: {(r.get("reason") or "")[:120]}')
    if r.get('same_as'):
      status += f' (same network as {r["same_as"]})'
    cells = [r['trial'], r['kind'], fmt(r['phi']), str(r['seed']),
             fmt(r['alpha']), fmt(r['beta']), fmt(r['gamma']), fmt(r['d']),
             fmt(r['w']), fmt(r['r']), str(r['resolution']),
             f'{r["params"]:,}' if r['params'] else '—',
             f'{r["macs"] / 1e6:.2f}' if r['macs'] else '—',
             fmt(r['steps']), _pct(r['val_accuracy']),
             _pct(r['test_accuracy']),
             '—' if r['train_s'] is None else f'{r["train_s"]:.1f}',
             '—' if r['compile_s'] is None else f'{r["compile_s"]:.1f}',
             status.replace('|', '/').replace('\n', ' ')]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines + ['']


def markdown(sweep_config: dict, rows) -> str:
  sweep = sweep_config['sweep']
  train = sweep_config['train']
  budget = {'steps': f'{train["steps"]} steps each',
            'epochs': f'{train["epochs"]:g} epoch'
                      f'{"" if train["epochs"] == 1 else "s"} each',
            'macs': 'equal training MACs (steps × MACs per image) to the '
                    'baseline\'s'}[sweep['budget']]
  try:
    chosen = analysis.choose(rows, sweep['select'])
  except RuntimeError:
    chosen = None
  lines = [f'# Compound-scaling search: {_title(sweep_config)}', '',
           f'Budget: {budget}. Input sides are rounded to a multiple of '
           f'{sweep["resolution_multiple"]}. {len(rows)} trials, '
           f'{sum(r["status"] == "ok" and not r.get("same_as") for r in rows)}'
           ' networks trained (a trial that builds a network already '
           'trained shares its result).', '']
  lines += _chosen_section(rows, sweep, chosen)
  lines += _verdict_section(rows)
  lines += ['## Plots', ''] + [f'![{p[:-4]}]({p})' for p in PLOTS] + ['']
  lines += _trials_section(rows)
  return '\n'.join(lines)


def write(workdir) -> str:
  """Writes ``report.md`` and the plots into ``workdir``; returns the text."""
  sweep_config, rows = results.load(workdir)
  workdir = Path(workdir)
  try:
    chosen = analysis.choose(rows, sweep_config['sweep']['select'])
  except RuntimeError:
    chosen = None
  figures = (plot_scaling(rows, sweep_config, 'macs'),
             plot_scaling(rows, sweep_config, 'params'),
             plot_grid(rows, sweep_config, chosen))
  for name, fig in zip(PLOTS, figures):
    fig.savefig(workdir / name)
  text = markdown(sweep_config, rows)
  (workdir / 'report.md').write_text(text + '\n')
  print(f'wrote {workdir / "report.md"} and {", ".join(PLOTS)}', flush=True)
  return text


def run(config, workdir: str) -> str:
  """The ``scaling_report`` job."""
  del config  # everything is in the workdir
  return write(workdir)
