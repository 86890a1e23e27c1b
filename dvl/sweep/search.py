"""The ``scaling_search`` job: EfficientNet's compound-scaling search.

    python launch.py --config experiments/scaling_search.py --workdir runs/search

Tan & Le 2019 (Sec. 3.3) in three phases, each trial a train run in
``workdir/trials/<id>/`` with the same budget (``sweep.budget``):

1. **Search at φ = 1.** The baseline and every candidate (α, β, γ) of
   ``dvl.sweep.candidates`` are trained; the candidate with the best mean
   validation accuracy over ``sweep.seeds`` is chosen (``sweep.select``).
2. **Scale up.** φ = 1 … ``sweep.max_phi`` with the chosen coefficients, and
   at the same MACs each single-dimension scaling of ``sweep.baselines``
   (Figure 8 and Table 3 of the paper; ``matched``).
3. **Report.** ``dvl.sweep.report`` writes ``report.md`` and the plots.

Killed at any moment, the same command resumes: finished trials (failed ones
included) are not trained again, a half-finished trial resumes from its
checkpoint, and SIGTERM stops a sequential sweep after the running trial
has saved one. Two trials that build the same network with the same budget
(grid points that round alike, or compound φ = 1 and the chosen grid point)
train once; the other row names it in ``same_as``.
"""

import math
from pathlib import Path

from absl import logging

from dvl import workdir_lock
from dvl.sweep import (analysis, candidates, laws, report, results, scaleup,
                       star, stats)
from dvl.sweep.executors import (EXECUTORS, Task, check_memory_fraction,
                                  compile_ahead_choice, make_executor)
from dvl.sweep.hparams import HParamsWriter
from dvl.sweep.trials import Planned, Planner, Trial, digest

RESULT_FIELDS = ('val_accuracy', 'best_val_accuracy', 'test_accuracy',
                 'test_loss', 'params', 'macs', 'steps', 'train_s',
                 'compile_s', 'wall_s', 'status', 'reason', 'population',
                 'retries', 'programs', 'train_images_per_s',
                 'step_bytes', 'peak_bytes')
SELECT = ('val_accuracy', 'best_val_accuracy')
SEARCHES = ('grid', 'halving', 'star')


def _line(planned: Planned, row: dict) -> str:
  t = planned.trial
  point = (f'alpha={t.alpha:g} beta={t.beta:g} gamma={t.gamma:g}'
           if t.kind in ('grid', 'compound') and t.alpha is not None else
           f'd={t.d:.3g} w={t.w:.3g} r={t.r:.3g}')
  rung = f' rung {row["rung"]} (step {row["steps"]})' if row.get(
      'rung') is not None else ''
  kind = f'{t.kind} {t.label}' if t.kind in ('strategy', 'star') else t.kind
  head = (f'{row["trial"]} [{kind} phi={t.phi:g} seed={t.seed} {point}; '
          f'{planned.side}px, {(planned.macs or 0) / 1e6:.1f}M MACs{rung}]')
  if row['status'] != 'ok':
    return f'{head}: {row["status"]}: {row["reason"]}'
  how = (f'same network as {row["same_as"]}' if row.get('same_as') else
         f'{row["wall_s"] or 0:.0f}s with {row.get("population") or 1} '
         f'seed(s), compile {row["compile_s"] or 0:.1f}s')
  if row.get('retries') and not row.get('same_as'):
    how += f', retried {row["retries"]} time(s)'
  return (f'{head}: val {stats.fmt_percent(row["val_accuracy"], "%")}, '
          f'test {stats.fmt_percent(row["test_accuracy"], "%")} ({how})')


def rung_id(trial_id: str, steps: int) -> str:
  """The results row of ``trial_id`` stopped at a halving rung."""
  return f'{trial_id}@{steps}'


class Runner:
  """Runs planned trials through an executor into a ``ResultStore``.

  The seeds of one network (plans equal but for ``train.seed``) train as
  one population (``dvl.train.population``) in ``trials/pop-<hash>/``;
  each seed reports in its own ``trials/<id>/``. ``stop_at`` trains them to
  that step only: a halving rung, recorded as rows ``<id>@<step>``. Every
  row recorded is also an HParams session in ``hparams/`` (TensorBoard).
  """

  def __init__(self, store: results.ResultStore, executor):
    self.store, self.executor = store, executor
    self.hparams = HParamsWriter(store.workdir)
    self.hparams.add_missing(store.rows.values())

  def _record(self, planned: Planned, outcome: dict, same_as=None,
              stop_at=None, population_dir=None) -> None:
    row = {**planned.row(), 'content': planned.content, 'same_as': same_as}
    row.update({k: outcome[k] for k in RESULT_FIELDS if k in outcome})
    if population_dir:
      row['population_dir'] = population_dir
    if stop_at is not None:
      row.update(trial=rung_id(planned.id, stop_at), rung_of=planned.id,
                 steps=stop_at)
    self.store.add(row)
    self.hparams.add_missing([self.store.rows[row['trial']]])
    print(_line(planned, row), flush=True)

  def _done_with(self, content: str, stop_at):
    """A row that trained the same network with the same seed and budget
    to the same step (a rung row for a rung, a final row otherwise)."""
    for row in self.store.rows.values():
      if row.get('content') != content:
        continue
      if stop_at is None and row.get('rung_of') is None:
        return row
      if stop_at is not None and row.get('rung_of') and (
          row['steps'] == stop_at):
        return row
    return None

  def run(self, plans: list[Planned], stop_at: int | None = None) -> bool:
    """Trains what is not done yet; False when a SIGTERM stopped it."""
    key = (lambda p: p.id) if stop_at is None else (
        lambda p: rung_id(p.id, stop_at))
    groups = {}
    for planned in plans:
      if key(planned) in self.store.rows:
        continue
      if planned.error:
        self._record(planned, {'status': 'invalid', 'reason': planned.error},
                     stop_at=stop_at)
      elif (donor := self._done_with(planned.content, stop_at)) is not None:
        self._record(planned, donor, same_as=donor['trial'], stop_at=stop_at)
      else:
        groups.setdefault(planned.content, []).append(planned)
    done = len([p for p in plans if key(p) in self.store.rows])
    populations = {}
    for group in groups.values():
      populations.setdefault(group[0].family, []).append(group)
    print(f'{len(groups)} trial(s) to train as {len(populations)} '
          f'population(s); {done} of {len(plans)} done'
          + (f' (rung: {stop_at} steps)' if stop_at else ''), flush=True)
    tasks, owners = [], {}
    for family, members in populations.items():
      seeds = sorted(g[0].trial.seed for g in members)
      task_id = f'pop-{digest([family, seeds])[:10]}'
      members = sorted(members, key=lambda g: g[0].trial.seed)
      first = members[0][0]
      tasks.append(Task(
          task_id, first.config, self.store.trial_dir(task_id),
          [(g[0].id, g[0].trial.seed, self.store.trial_dir(g[0].id))
           for g in members], stop_at))
      owners[task_id] = {g[0].id: g for g in members}
    for task_id, outcomes in self.executor.run(tasks):
      if any(o['status'] == 'stopped' for o in outcomes.values()):
        return False
      for trial_id, outcome in outcomes.items():
        first, *others = owners[task_id][trial_id]
        self._record(first, outcome, stop_at=stop_at,
                     population_dir=task_id)
        for planned in others:
          self._record(planned, outcome, same_as=key(first), stop_at=stop_at)
    return True


def halving_rungs(total_steps: int, eta: int, rungs: int) -> list[int]:
  """The steps of each rung of successive halving: ``total / η^(R-1-i)``,
  rounded up, the last rung the full budget."""
  return [max(1, math.ceil(total_steps / eta ** (rungs - 1 - i)))
          for i in range(rungs)]


def check(sweep) -> list[tuple]:
  """Checks ``config.sweep``; returns the φ = 1 candidates."""
  points = candidates.candidates(sweep)
  unknown = [b for b in sweep.baselines
             if b not in candidates.SINGLE_DIMENSIONS]
  if unknown:
    raise ValueError(f'sweep.baselines: unknown scaling {unknown[0]!r}; '
                     f'choose from {", ".join(candidates.SINGLE_DIMENSIONS)}')
  scaleup.check_methods(sweep)
  laws.check_law(sweep)
  star.check_star(sweep)
  _star_grid(sweep)
  if sweep.max_phi < 1:
    raise ValueError(f'sweep.max_phi must be >= 1; got {sweep.max_phi}')
  seeds = list(sweep.seeds)
  if not seeds:
    raise ValueError('sweep.seeds is empty: give at least one seed, e.g. '
                     '(0, 1, 2); three or more give confidence intervals')
  if any(not isinstance(s, int) or s < 0 for s in seeds):
    raise ValueError(f'sweep.seeds must be non-negative integers; got '
                     f'{tuple(seeds)}')
  if len(set(seeds)) != len(seeds):
    raise ValueError(f'sweep.seeds lists a seed twice: {tuple(seeds)}')
  if sweep.select not in SELECT:
    raise ValueError(f'sweep.select must be one of {", ".join(SELECT)}; got '
                     f'{sweep.select!r}')
  if not (isinstance(sweep.max_retries, int) and sweep.max_retries >= 0):
    raise ValueError(f'sweep.max_retries must be an integer >= 0 (the '
                     'times a task whose worker died runs again); got '
                     f'{sweep.max_retries!r}')
  if sweep.executor not in EXECUTORS:
    raise ValueError(f'unknown sweep.executor {sweep.executor!r}; choose one '
                     f'of: {", ".join(EXECUTORS)}')
  if compile_ahead_choice(sweep) is True and sweep.executor != 'sequential':
    raise ValueError("sweep.compile_ahead = True compiles in the driver's "
                     "process, for sweep.executor = 'sequential'; pool and "
                     "Ray workers compile their own programs: use 'auto' or "
                     'False')
  check_memory_fraction(sweep)
  if sweep.search not in SEARCHES:
    raise ValueError(f'sweep.search must be one of {", ".join(SEARCHES)}; '
                     f'got {sweep.search!r}')
  if sweep.population not in population_modes():
    raise ValueError(f'sweep.population must be one of '
                     f'{", ".join(population_modes())}; got '
                     f'{sweep.population!r}')
  if sweep.search == 'halving' or _star_grid(sweep) == 'halving':
    if not (isinstance(sweep.halving.eta, int) and sweep.halving.eta >= 2):
      raise ValueError(f'sweep.halving.eta must be an integer >= 2 (each '
                       f'rung keeps 1/eta of the candidates); got '
                       f'{sweep.halving.eta}')
    if sweep.halving.rungs < 1:
      raise ValueError(f'sweep.halving.rungs must be >= 1; got '
                       f'{sweep.halving.rungs}')
  budgets = list(sweep.budgets)
  if any(not b > 0 for b in budgets):
    raise ValueError(f'sweep.budgets must all be > 0; got {tuple(budgets)}')
  if any(b >= c for b, c in zip(budgets, budgets[1:])):
    raise ValueError(f'sweep.budgets must increase, e.g. (1, 4); got '
                     f'{tuple(budgets)}')
  return points


def population_modes() -> tuple:
  from dvl.train.population import MODES
  return MODES


def check_rungs(planner: Planner, sweep) -> list[int]:
  """The halving rungs' steps; raises when the smallest is under a step."""
  total = planner.budget_steps(search_budget(sweep))
  eta, count = sweep.halving.eta, sweep.halving.rungs
  smallest = total / eta ** (count - 1)
  if smallest < 1:
    raise ValueError(
        f'the smallest halving rung would train {smallest:.2g} steps '
        f'({total} steps / {eta}^{count - 1}): use fewer sweep.halving.rungs,'
        ' a smaller eta, or a longer budget')
  return halving_rungs(total, eta, count)


def search_budget(sweep):
  """The budget the φ = 1 search trains at: the largest of
  ``sweep.budgets``, else the train section's (None)."""
  return max(sweep.budgets) if sweep.budgets else None


def search_trials(planner: Planner, points, seeds,
                  budget=None) -> list[Planned]:
  """The baseline and every φ = 1 candidate, for every seed."""
  trials = [Trial('baseline', 0, 1.0, 1.0, 1.0, seed, budget=budget)
            for seed in seeds]
  trials += [Trial('grid', 1, a, b, g, seed, a, b, g, budget=budget)
             for a, b, g in points for seed in seeds]
  return [planner.plan(t) for t in trials]


def _point(planned: Planned) -> tuple:
  t = planned.trial
  return (t.alpha, t.beta, t.gamma)


def successive_halving(runner: Runner, planner: Planner, plans, sweep
                       ) -> bool:
  """Trains the φ = 1 candidates by successive halving (Jamieson &
  Talwalkar 2016; Li et al. 2018): all start at the smallest rung, the
  best ``1/η`` by mean validation accuracy over the seeds go on to ``η``
  times the steps, resumed from their checkpoints, until the full budget.

  Written here rather than taken from Ray Tune's ASHA or Optuna's pruners:
  the rungs are synchronous, so which candidates go on depends on the
  results alone, not on which worker finished first, and a killed sweep
  replays the same promotions from ``results.jsonl``; every executor
  (in-process, pool, Ray) runs the rungs unchanged. Every candidate trains
  on the full budget's schedule, so a rung is that run stopped early.
  """
  rungs = check_rungs(planner, sweep)
  grid = [p for p in plans if p.trial.kind == 'grid']
  others = [p for p in plans if p.trial.kind != 'grid']
  alive = sorted({_point(p) for p in grid})
  for index, steps in enumerate(rungs):
    mine = [p for p in grid if _point(p) in alive]
    last = index == len(rungs) - 1
    if not runner.run(mine + (others if last else []),
                      stop_at=None if last else steps):
      return False
    if last:
      return True
    keep = max(1, math.ceil(len(alive) / sweep.halving.eta))
    scores = {}
    for p in mine:
      row = runner.store.rows[rung_id(p.id, steps)]
      value = row.get(sweep.select if sweep.select in row else
                      'val_accuracy')
      if row['status'] == 'ok' and value is not None:
        scores.setdefault(_point(p), []).append(value)
    ranked = sorted(scores, key=lambda k: -sum(scores[k]) / len(scores[k]))
    alive = sorted(ranked[:keep])
    print(f'rung {index} ({steps} steps): {len(alive)} of '
          f'{len(scores)} candidates go on', flush=True)
  return True


def run(config, workdir: str) -> dict | None:
  """Runs the three phases; returns the chosen point (None if stopped).

  The driver holds ``workdir`` (``dvl.workdir_lock``) from start to end: a
  second sweep driver there is refused, naming this one's host and pid.
  """
  logging.set_verbosity(logging.WARNING)  # TFDS's INFO lines
  points = check(config.sweep)
  results.check_writable(Path(workdir))
  with workdir_lock.hold(workdir, 'sweep'):
    return _search(config, workdir, points)


STAR_GRIDS = ('halving', 'grid', 'none')


def _star_grid(sweep) -> str:
  """How a star sweep trains the grid its choice is compared with
  (``sweep.star.grid``: 'halving', 'grid' or 'none'); 'none' for another
  search."""
  if sweep.get('search') != 'star':
    return 'none'
  how = (sweep.get('star') or {}).get('grid', 'halving')
  if how not in STAR_GRIDS:
    raise ValueError(f'sweep.star.grid must be one of {", ".join(STAR_GRIDS)}'
                     f' (how the grid compared with the star trains); got '
                     f'{how!r}')
  return how


def _search(config, workdir: str, points) -> dict | None:
  sweep = config.sweep
  planner = Planner(config)
  grid_search = _star_grid(sweep) if sweep.search == 'star' else sweep.search
  if grid_search == 'halving':
    check_rungs(planner, sweep)
  store = results.ResultStore(workdir, config.to_dict())
  executor = make_executor(sweep)
  budget = search_budget(sweep)
  try:
    runner = Runner(store, executor)
    if sweep.search == 'star':
      arms = scaleup.star_trials(planner, star.check_star(sweep), sweep.seeds,
                                 budget)
      if not runner.run(search_trials(planner, [], sweep.seeds, budget)
                        + arms):
        return _stopped()
    plans = search_trials(planner, points if grid_search != 'none' else [],
                          sweep.seeds, budget)
    if grid_search == 'halving':
      finished = successive_halving(runner, planner, plans, sweep)
    else:
      finished = runner.run(plans)
    if not finished:
      return _stopped()
    rows = store.current(sweep.seeds)
    if sweep.search == 'star':
      found = analysis.star_choice(rows, sweep.select, sweep, budget)
      chosen = tuple(round(c, 4) for c in found.coefficients)
      best = {'mean': None, 'macs': None}
      print(f'star: alpha={chosen[0]:g} beta={chosen[1]:g} '
            f'gamma={chosen[2]:g} from the exponents '
            + ', '.join(f'{k} {b:.3g}' for k, (_, b) in found.laws.items()),
            flush=True)
    else:
      best = analysis.choose(rows, sweep.select, budget=budget)
      chosen = (best['alpha'], best['beta'], best['gamma'])
      print(f'chosen alpha={chosen[0]:g} beta={chosen[1]:g} '
            f'gamma={chosen[2]:g}: {sweep.select} '
            f'{stats.fmt_percent(best["mean"], "%")} at '
            f'{best["macs"] / 1e6:.1f}M MACs (the paper: alpha=1.2, '
            'beta=1.1, gamma=1.15)', flush=True)
    for each in (list(sweep.budgets) or [None]):
      plans = scaleup.scale_up_trials(planner, chosen, sweep, each)
      if each is not None and each != budget:
        plans += search_trials(planner, [], sweep.seeds, each)
      if not runner.run(plans):
        return _stopped()
  finally:
    executor.close()
  compiled, wall = report.compile_share(store.rows.values())
  print(f'compiling took {compiled:.0f} s of the populations\' {wall:.0f} s '
        f'({100 * compiled / max(wall, 1e-9):.0f}%)', flush=True)
  if sweep.report:
    report.write(workdir)
  return {'alpha': chosen[0], 'beta': chosen[1], 'gamma': chosen[2],
          sweep.select: best['mean'], 'macs': best['macs']}


def _stopped() -> None:
  print('sweep stopped; the running trial saved a checkpoint. Run the same '
        'command to resume.', flush=True)
  return None

