"""The ``scaling_report`` job: ``report.md`` and plots of a sweep workdir.

    python launch.py --config experiments/scaling_report.py --workdir runs/search

Reads ``sweep.json`` and ``results.jsonl`` and writes, next to them:

* ``accuracy_vs_macs.png``, ``accuracy_vs_params.png``,
  ``accuracy_vs_activations.png``, ``accuracy_vs_time.png``: test accuracy
  against each cost (log axis), one line per scaling method from the
  baseline up, the φ = 1 candidates and the Pareto front
  (``dvl.sweep.plots``);
* ``search_grid.png``: the φ = 1 candidates over α (x) and β (y), coloured by
  validation accuracy; the chosen point and the paper's marked;
* ``report.md``: the chosen coefficients beside the paper's, with their
  margin over the runner-up and how often the same candidate wins when the
  seeds are resampled; the halving rungs; grid points that build the same
  network; the star sweep's exponents and its choice against the grid's;
  compound scaling against each other method at the matched cost
  (``sweep.match``) as seed-paired differences with 95% confidence
  intervals, at each budget; each method's scaling law judged on a
  held-out φ; each network's measured cost and how well MACs and
  activations track its step time; each population run's compile, train
  and wall seconds with the job's compile share; and every trial.

Selection uses validation accuracy, the scaling comparison test accuracy.
Every accuracy is a mean over seeds with its 95% Student-t interval (error
bars in the plots); a verdict ("wins", "loses", "no difference resolved at
this budget") follows from the paired difference's interval alone
(``dvl.sweep.stats``).
"""

from pathlib import Path

from dvl.sweep import analysis, candidates, results, stats
from dvl.sweep.plots import label, plot_grid, plot_scaling, title
from dvl.sweep.scaleup import method_of

PLOTS = ('accuracy_vs_macs.png', 'accuracy_vs_params.png',
         'accuracy_vs_activations.png', 'accuracy_vs_time.png',
         'search_grid.png')
MATCHED = {'macs': 'MACs', 'activations': 'activations',
           'params': 'parameters', 'time': 'measured step time'}


def _mean(point) -> str:
  """A point's mean and 95% CI in percent: '84.31 ± 1.20' (or one seed)."""
  return stats.fmt_pct(point['ci'])


def _search_budget(rows):
  return max(analysis.budgets(rows) or [None],
             key=lambda b: -1 if b is None else b)


def _coeff_text(p) -> str:
  return f'α={p["alpha"]:g}, β={p["beta"]:g}, γ={p["gamma"]:g}'


def _chosen_section(rows, sweep: dict, chosen) -> list[str]:
  lines = ['## Chosen coefficients (φ = 1)', '']
  if chosen is None:
    return lines + ['No φ = 1 candidate trained; see the trials below.', '']
  budget = chosen.get('budget')
  test = {p['trials'][0]: p for p in analysis.aggregate(rows, 'test_accuracy')}
  vals = analysis.grid_points(rows, 'val_accuracy', budget)
  paper = [p for p in vals if (p['alpha'], p['beta'], p['gamma'])
           == candidates.PAPER]
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
            f'{list(sweep["seeds"])}, 95% CI) among the candidates with '
            f'|α·β²·γ² − {sweep["target"]:g}| ≤ {sweep["tolerance"]:g}.', '']
  firm = analysis.selection(rows, sweep['select'], budget)
  if firm['margin'] is not None:
    margin, other = firm['margin'], firm['runner_up']
    word = stats.verdict(margin)
    how = {stats.WINS: 'ahead of', stats.LOSES: 'behind'}.get(
        word, 'not resolved against')
    lines.append(
        f'Margin over the runner-up ({_coeff_text(other)}): '
        f'{stats.fmt_diff(margin)} points of validation accuracy, paired by '
        f'seed: the chosen point is {how} it at this budget.')
  if firm['frequency']:
    freq = sorted(firm['frequency'].items(), key=lambda kv: -kv[1])
    shown = ', '.join(f'α={k[0]:g} β={k[1]:g} γ={k[2]:g}: {100 * v:.0f}%'
                      for k, v in freq[:4] if v > 0)
    mine = firm['frequency'].get((chosen['alpha'], chosen['beta'],
                                  chosen['gamma']), 0.0)
    lines.append(
        f'Resampling the seeds (2,000 paired bootstrap draws), the chosen '
        f'point has the best mean in {100 * mine:.0f}% of draws ({shown}).')
  return lines + ['']


def _halving_section(rows) -> list[str]:
  rungs = analysis.rungs(rows)
  if not rungs:
    return []
  lines = ['## Successive halving', '',
           'Every candidate trains on the full budget\'s schedule; a rung is '
           'that run stopped early. The best candidates by mean validation '
           'accuracy over the seeds go on, resumed from their checkpoints.',
           '', '| rung | steps | candidates | Spearman vs previous rung '
           '| stopped here |', '|---|---|---|---|---|']
  for i, rung in enumerate(rungs):
    later = set(rungs[i + 1]['points']) if i + 1 < len(rungs) else None
    stopped = ([k for k in rung['points'] if k not in later]
               if later is not None else [])
    rho = rung.get('spearman')
    rho_text = '—' if rho is None else (
        f'{rho:.2f} (over {rung["compared"]})' if rho == rho
        else f'undefined (over {rung["compared"]})')
    names = '; '.join(f'α={k[0]:g} β={k[1]:g} γ={k[2]:g} '
                      f'({stats.fmt_pct(rung["points"][k]["ci"])})'
                      for k in stopped) or '—'
    lines.append(f'| {i} | {rung["steps"]} | {len(rung["points"])} | '
                 f'{rho_text} | {names} |')
  lines += ['', 'Spearman is the rank correlation of the candidates\' mean '
            'validation accuracy between a rung and the one before, over the '
            'candidates that reached both: near 1, the short budget '
            'predicted the long one.', '']
  return lines


def _same_section(rows) -> list[str]:
  pairs = analysis.same_networks(rows)
  if not pairs:
    return []
  lines = ['## Grid points that build the same network', '']
  for point, donor in pairs:
    lines.append(f'- α={point[0]:g} β={point[1]:g} γ={point[2]:g} builds the '
                 f'network of α={donor[0]:g} β={donor[1]:g} γ={donor[2]:g} '
                 '(rounding of repeats, channels or sides): trained once.')
  return lines + ['']


def _network(row) -> str:
  """The trial that trained ``row``'s network."""
  return row.get('same_as') or row['trial']


def _shared(rows, budget=None) -> dict:
  """{φ: single dimensions whose row trained the compound row's network}
  (a chosen point that scales one dimension only)."""
  rows = [r for r in analysis.final(rows) if r.get('budget') == budget]
  compound = {r['phi']: _network(r) for r in rows if r['kind'] == 'compound'}
  shared = {}
  for r in rows:
    if (r['kind'] in analysis.SCALE_UP and r['kind'] != 'compound'
        and compound.get(r['phi']) == _network(r)):
      shared.setdefault(r['phi'], set()).add(method_of(r))
  return shared


def _budget_name(budget, sweep_config) -> str:
  if budget is None:
    return 'the train section\'s budget'
  unit = 'epochs' if sweep_config['sweep']['budget'] == 'epochs' else 'steps'
  return f'{budget:g} {unit}'


def _comparison_text(entry, shared) -> list[str]:
  out = []
  for method, c in entry['comparisons'].items():
    name = label(method)
    if method in shared.get(entry['phi'], ()):
      out.append(f'compound and {name} build the same network: a tie')
      continue
    diff = stats.fmt_diff(c['diff'])
    text = (f'against {name}: compound {c["verdict"]} ({diff} points)'
            if c['verdict'] != stats.UNRESOLVED else
            f'against {name}: {c["verdict"]} ({diff} points)')
    if c['verdict'] == stats.UNRESOLVED:
      n = c['seeds_needed']
      text += (f'; about {n} seeds would resolve a true difference of 1 '
               'point at this spread' if n else
               '; the spread over seeds is unknown with one seed')
    out.append(text)
  return out


def _match(sweep_config: dict) -> str:
  return sweep_config['sweep'].get('match', 'macs')


def _matched_value(p: dict, cost: str):
  """A point's value of the cost its row was matched on."""
  if p.get('match_value') is not None:
    return p['match_value']
  return p.get({'time': 'us_per_image'}.get(cost, cost))


def _match_words(cost: str) -> str:
  if cost == 'time':
    return ('train-step time per image, measured before training on this '
            'device (dvl.sweep.timing)')
  return f'counted {MATCHED[cost]}'


def _verdict_section(rows, sweep_config: dict) -> list[str]:
  cost = _match(sweep_config)
  lines = [f'## Compound scaling against each method at matched '
           f'{MATCHED[cost]}', '']
  budgets = analysis.budgets(rows)
  if not budgets:
    return lines + ['No scale-up trial trained yet.', '']
  winners = {}
  for budget in budgets:
    table = analysis.compared(rows, 'test_accuracy', budget)
    if len(budgets) > 1:
      lines += [f'### Budget: {_budget_name(budget, sweep_config)}', '']
    lines += ['| φ | method | seeds | test acc (%, 95% CI) | MACs (M) | '
              f'activations (M) | {MATCHED[cost]} vs compound | compound − '
              'method (points, 95% CI) | verdict |',
              '|---|---|---|---|---|---|---|---|---|']
    shared = _shared(rows, budget)
    for entry in table:
      ref = entry['entries'].get('compound')
      for method, p in entry['entries'].items():
        mine, theirs = (_matched_value(p, cost),
                        _matched_value(ref, cost) if ref else None)
        ratio = f'{mine / theirs:.3f}x' if mine and theirs else '—'
        c = entry['comparisons'].get(method)
        same = method in shared.get(entry['phi'], ())
        diff = stats.fmt_diff(c['diff']) if c else '—'
        word = ('same network' if same else c['verdict']) if c else '—'
        acts = (f'{p["activations"] / 1e6:.2f}' if p.get('activations')
                else '—')
        lines.append(f'| {entry["phi"]:g} | {label(method)} | {p["seeds"]} '
                     f'| {_mean(p)} | {p["macs"] / 1e6:.2f} | {acts} | '
                     f'{ratio} | {diff} | {word} |')
      winners.setdefault(entry['phi'], {})[budget] = entry['winner']
    lines.append('')
    for entry in table:
      said = _comparison_text(entry, shared)
      if said:
        lines.append(f'- φ = {entry["phi"]:g}: ' + '; '.join(said) + '.')
    lines += ['', 'A verdict comes from the paired difference\'s 95% interval '
              'alone: "wins" when it lies above 0, "loses" when below, '
              'otherwise no difference is resolved at this budget. Rows are '
              'paired by seed (the same data order and initialisation key). '
              f'Each method\'s row is matched to the compound row\'s '
              f'{_match_words(cost)} as closely as the rounding of repeats, '
              f'channels and sides allows; the "{MATCHED[cost]} vs '
              'compound" column shows how closely.', '']
  changed = {phi: by for phi, by in winners.items()
             if len(set(by.values())) > 1}
  if len(budgets) > 1:
    if changed:
      for phi, by in sorted(changed.items()):
        seq = ', '.join(f'{label(m)} at {_budget_name(b, sweep_config)}'
                        for b, m in by.items())
        lines.append(f'- **φ = {phi:g}: the method with the best mean '
                     f'changes with the budget** ({seq}); read the intervals '
                     'above before taking either.')
    else:
      lines.append('The method with the best mean is the same at every '
                   'budget for every φ.')
    lines.append('')
  return lines


def _star_section(rows, sweep: dict) -> list[str]:
  if sweep.get('search') != 'star':
    return []
  lines = ['## Star sweep', '']
  budget = _search_budget(rows)
  try:
    found = analysis.star_choice(rows, sweep['select'], sweep, budget)
  except ValueError as error:
    return lines + [f'No coefficients: {error}', '']
  metric = sweep['select'].replace('_', ' ')
  lines += [f'Each dimension alone at multipliers '
            f'{", ".join(f"{m:g}" for m in sweep["star"]["multipliers"])} '
            f'around the baseline; per dimension, ln(error) = ln A − b·ln C '
            f'fitted on the mean {metric} error over the seeds (C: the '
            f'arm\'s counted MACs over the baseline\'s; arms that round to '
            f'one network count once). Rule: {found.rule}.', '',
            '| dimension | A | exponent b | share of the cost | cost factor |',
            '|---|---|---|---|---|']
  for k in found.laws:
    a, b = found.laws[k]
    lines.append(f'| {k} | {a:.4g} | {b:.4g} | {100 * found.share[k]:.1f}% | '
                 f'{found.cost[k]:.3f} |')
  alpha, beta, gamma = found.coefficients
  lines += ['', f'Derived: α = {alpha:.3f}, β = {beta:.3f}, γ = {gamma:.3f} '
            f'(α·β²·γ² = {candidates.nominal_growth(*found.coefficients):.3f}'
            '); the scale-up uses them, rounded to 4 decimals.', '']
  grid = analysis.grid_points(rows, sweep['select'], budget)
  if not grid:
    return lines + ['The grid was not trained (sweep.star.grid = '
                    "'none'), so there is no grid choice to compare with.",
                    '']
  best = grid[0]
  lines.append(f'The grid\'s choice: {_coeff_text(best)} '
               f'({metric} {_mean(best)}).')
  compound = {p['phi']: p for p in analysis.aggregate(rows, 'test_accuracy')
              if p['kind'] == 'compound' and p.get('budget') == budget}
  test = {p['trials'][0]: p for p in analysis.aggregate(rows,
                                                        'test_accuracy')}
  theirs = test.get(best['trials'][0])
  mine = compound.get(1)
  if mine and theirs:
    try:
      diff = stats.paired_difference(mine['values'], theirs['values'])
      word = stats.verdict(diff)
      how = {stats.WINS: 'ahead of', stats.LOSES: 'behind'}.get(
          word, 'not resolved against')
      lines.append(f'At φ = 1 the star\'s network has test accuracy '
                   f'{_mean(mine)}, the grid\'s {_mean(theirs)}: star − grid '
                   f'= {stats.fmt_diff(diff)} points, paired by seed; the '
                   f'star\'s choice is {how} the grid\'s at this budget.')
    except ValueError:
      pass
  return lines + ['']


def _law_section(rows, sweep: dict) -> list[str]:
  law = sweep.get('law') or {}
  holdout = law.get('holdout', 0)
  if not holdout:
    return []
  cost = law.get('cost', 'macs')
  lines = ['## Scaling laws, judged on a held-out φ', '',
           f'Per method, test error against {MATCHED[cost]} fitted as '
           f'E = a·(C/C₀)^(−b) + c on φ = 0 … {holdout - 1} (C₀: the '
           f'baseline\'s cost; every seed a point; scipy\'s curve_fit), '
           f'then asked for φ = {holdout}. The yardstick is the 95% '
           'half-width of the measured mean over the seeds there.', '',
           '| method | a | b | c (error floor) | predicted acc (%) | measured '
           'acc (%, 95% CI) | predicted − measured (points) | verdict |',
           '|---|---|---|---|---|---|---|---|']
  notes = []
  for method, fit in analysis.law_fits(rows, 'test_accuracy', holdout, cost,
                                       _search_budget(rows)).items():
    if isinstance(fit, str):
      notes.append(f'- {label(method)}: no law: {fit}')
      continue
    f = fit.law
    err = [f'{v:.2g}' if v == v else '—' for v in f.stderr]
    lines.append(
        f'| {label(method)} | {f.a:.4g} ± {err[0]} | {f.b:.4g} ± {err[1]} | '
        f'{f.c:.4g} ± {err[2]} | {100 * (1 - fit.predicted):.2f} | '
        f'{stats.fmt_pct(_accuracy(fit.measured))} | '
        f'{-fit.error_points:+.2f} | {fit.verdict} |')
  lines += [''] + notes + ([''] if notes else [])
  lines.append('± after a parameter is its standard error from the fit\'s '
               'covariance. A prediction "within the seeds\' spread" missed '
               'the measured mean by less than its 95% half-width.')
  return lines + ['']


def _accuracy(interval: stats.Interval) -> stats.Interval:
  """An error rate's interval as accuracy."""
  return stats.Interval(1 - interval.mean, 1 - interval.high,
                        1 - interval.low, interval.n, interval.sd)


def _cost_section(rows) -> list[str]:
  found = analysis.networks(rows)
  if not found:
    return []
  lines = ['## Measured cost', '',
           'Per network trained to the full budget: the counted costs, the '
           'train step\'s measured time per image (its training steps\' '
           'seconds over the images the population trained, on this '
           'device) and the memory XLA plans for one member\'s step.', '',
           '| network | method | φ | MACs (M) | activations (M) | params | '
           'µs per image | step memory (MB) |', '|---|---|---|---|---|---|---'
           '|---|']
  for n in sorted(found, key=lambda n: n['us_per_image']):
    mem = (f'{n["step_bytes"] / 2 ** 20:.1f}' if n.get('step_bytes')
           else '—')
    acts = f'{n["activations"] / 1e6:.2f}' if n.get('activations') else '—'
    lines.append(f'| {n["trial"]} | {label(method_of(n))} | {n["phi"]:g} | '
                 f'{n["macs"] / 1e6:.2f} | {acts} | {n["params"]:,} | '
                 f'{n["us_per_image"]:.1f} | {mem} |')
  lines.append('')
  if not any(n.get('peak_bytes') for n in found):
    lines += ['Peak device memory: not measured on this backend (it reports '
              'no memory statistics, as a CPU does); the step memory column '
              'is XLA\'s plan for the compiled step.', '']
  corr = analysis.time_correlation(rows)
  if corr is None:
    return lines + ['Fewer than three networks have a measured step: no '
                    'correlation of time with cost.', '']
  macs, acts, diff = (corr['macs'], corr['activations'],
                      corr['activations_minus_macs'])
  word = stats.verdict(diff)
  finding = {stats.WINS: 'activations tracked the step time better than '
                         'MACs',
             stats.LOSES: 'MACs tracked the step time better than '
                          'activations'}.get(
      word, 'neither MACs nor activations is resolved as the better '
            'predictor of step time')
  fmt = lambda i: (f'{i.mean:.3f} [{i.low:.3f}, {i.high:.3f}]'
                   if i.low == i.low else f'{i.mean:.3f}')
  lines += [f'Across the {corr["networks"]} networks, Pearson\'s r of log '
            f'step time with log MACs is {fmt(macs)} and with log '
            f'activations {fmt(acts)}; activations − MACs = {fmt(diff)} '
            '(95% percentile bootstrap over the networks, 2,000 draws): on '
            f'this device {finding}.', '']
  return lines


def population_runs(rows) -> list[dict]:
  """One entry per population run (a task: the seeds of one network to
  one rung or the end) that trained: its trials, steps and the
  ``compile_s``, ``train_s`` and ``wall_s`` its members share."""
  runs = {}
  for r in rows:
    if r.get('same_as') or r.get('wall_s') is None:
      continue
    key = (r.get('population_dir') or r['trial'], r.get('steps'))
    run = runs.setdefault(key, {
        'population': r.get('population_dir') or '—',
        'steps': r.get('steps'), 'trials': [],
        'compile_s': r.get('compile_s') or 0.0,
        'train_s': r.get('train_s') or 0.0, 'wall_s': r['wall_s']})
    run['trials'].append(r['trial'])
  return list(runs.values())


def compile_share(rows) -> tuple[float, float]:
  """``(compile seconds, wall seconds)`` summed over the population runs."""
  runs = population_runs(rows)
  return (sum(r['compile_s'] for r in runs), sum(r['wall_s'] for r in runs))


def _time_section(rows) -> list[str]:
  runs = population_runs(rows)
  if not runs:
    return []
  compiled, wall = compile_share(rows)
  lines = ['## Compile and training time', '',
           f"Compiling took {compiled:.1f} s of the populations' "
           f'{wall:.1f} s wall time ({100 * compiled / max(wall, 1e-9):.1f}%) '
           f'over {len(runs)} population runs.', '',
           '| population | trials | steps | compile s | train s | wall s | '
           'compile share |', '|---|---|---|---|---|---|---|']
  for run in runs:
    share = 100 * run['compile_s'] / max(run['wall_s'], 1e-9)
    lines.append(f'| {run["population"]} | {", ".join(run["trials"])} | '
                 f'{run["steps"]} | {run["compile_s"]:.1f} | '
                 f'{run["train_s"]:.1f} | {run["wall_s"]:.1f} | '
                 f'{share:.1f}% |')
  lines += ['', 'A population\'s compile time is the tracing, compiling (or '
            'loading from the persistent cache) of its init, train and '
            'evaluation programs; its train time the steps after them '
            '(logging and checkpoints left out); its wall time also holds '
            'the input pipeline\'s start, checkpoints and evaluation. The '
            'seeds of one population share these.', '']
  return lines


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
    kind = (f'{r["kind"]} {r["label"]}' if r['kind'] in ('strategy', 'star')
            else r['kind'])
    cells = [r['trial'], kind, fmt(r['phi']), str(r['seed']),
             fmt(r['alpha']), fmt(r['beta']), fmt(r['gamma']), fmt(r['d']),
             fmt(r['w']), fmt(r['r']), str(r['resolution']),
             f'{r["params"]:,}' if r['params'] else '—',
             f'{r["macs"] / 1e6:.2f}' if r['macs'] else '—',
             fmt(r['steps']), stats.fmt_percent(r['val_accuracy']),
             stats.fmt_percent(r['test_accuracy']),
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
  rows = [r for r in rows if r['seed'] in set(sweep['seeds'])]
  try:
    chosen = analysis.choose(rows, sweep['select'], _search_budget(rows))
  except RuntimeError:
    chosen = None
  if sweep.get('budgets'):
    budget = (', '.join(f'{b:g}' for b in sweep['budgets'])
              + (' epochs' if sweep['budget'] == 'epochs' else ' steps')
              + ' (the search at the largest)')
  search = sweep.get('search', 'grid')
  final = analysis.final(rows)
  lines = [f'# Compound-scaling search: {title(sweep_config)}', '',
           f'Budget: {budget}. Seeds: {len(sweep["seeds"])} '
           f'({", ".join(map(str, sweep["seeds"]))}), each network\'s seeds '
           f'trained as one population. Search: {search}'
           + (f' (η = {sweep["halving"]["eta"]}, {sweep["halving"]["rungs"]} '
              'rungs)' if search == 'halving' else '')
           + f'. Input sides are rounded to a multiple of '
           f'{sweep["resolution_multiple"]}. {len(final)} trials, '
           f'{sum(r["status"] == "ok" and not r.get("same_as") for r in final)}'
           ' trained to the full budget (a trial that builds a network already '
           'trained shares its result).', '']
  lines += _chosen_section(rows, sweep, chosen)
  lines += _halving_section(rows)
  lines += _same_section(rows)
  lines += _star_section(rows, sweep)
  lines += _verdict_section(rows, sweep_config)
  lines += _law_section(rows, sweep)
  lines += _cost_section(rows)
  lines += ['## Plots', ''] + [f'![{p[:-4]}]({p})' for p in PLOTS] + ['']
  lines += _time_section(rows)
  lines += _trials_section(rows)
  return '\n'.join(lines)


def write(workdir) -> str:
  """Writes ``report.md`` and the plots into ``workdir``; returns the text."""
  sweep_config, rows = results.load(workdir)
  workdir = Path(workdir)
  rows = [r for r in rows if r['seed'] in set(sweep_config['sweep']['seeds'])]
  try:
    chosen = analysis.choose(rows, sweep_config['sweep']['select'],
                             _search_budget(rows))
  except RuntimeError:
    chosen = None
  figures = tuple(plot_scaling(rows, sweep_config, cost)
                  for cost in ('macs', 'params', 'activations', 'time')) + (
                      plot_grid(rows, sweep_config, chosen),)
  for name, fig in zip(PLOTS, figures):
    fig.savefig(workdir / name)
  text = markdown(sweep_config, rows)
  (workdir / 'report.md').write_text(text + '\n')
  print(f'wrote {workdir / "report.md"} and {", ".join(PLOTS)}', flush=True)
  return text
