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

from dvl.sweep import analysis, candidates, report, results
from dvl.sweep.executors import EXECUTORS, make_executor
from dvl.sweep.trials import Planned, Planner, Trial

RESULT_FIELDS = ('val_accuracy', 'best_val_accuracy', 'test_accuracy',
                 'test_loss', 'params', 'macs', 'steps', 'train_s',
                 'compile_s', 'wall_s', 'status', 'reason')
SELECT = ('val_accuracy', 'best_val_accuracy')
MATCH_STEPS = 8  # bisections of a single-dimension multiplier


def _pct(value) -> str:
  return '—' if value is None else f'{100 * value:.2f}%'


def _line(planned: Planned, row: dict) -> str:
  t = planned.trial
  point = (f'alpha={t.alpha:g} beta={t.beta:g} gamma={t.gamma:g}'
           if t.kind in ('grid', 'compound') and t.alpha is not None else
           f'd={t.d:.3g} w={t.w:.3g} r={t.r:.3g}')
  head = (f'{planned.id} [{t.kind} phi={t.phi:g} seed={t.seed} {point}; '
          f'{planned.side}px, {(planned.macs or 0) / 1e6:.1f}M MACs]')
  if row['status'] != 'ok':
    return f'{head}: {row["status"]}: {row["reason"]}'
  how = (f'same network as {row["same_as"]}' if row.get('same_as') else
         f'{row["wall_s"]:.0f}s, compile {row["compile_s"] or 0:.1f}s')
  return (f'{head}: val {_pct(row["val_accuracy"])}, test '
          f'{_pct(row["test_accuracy"])} ({how})')


class Runner:
  """Runs planned trials through an executor into a ``ResultStore``."""

  def __init__(self, store: results.ResultStore, executor):
    self.store, self.executor = store, executor

  def _record(self, planned: Planned, outcome: dict, same_as=None) -> None:
    row = {**planned.row(), 'content': planned.content, 'same_as': same_as}
    row.update({k: outcome[k] for k in RESULT_FIELDS if k in outcome})
    self.store.add(row)
    print(_line(planned, row), flush=True)

  def _done_with(self, content: str):
    for row in self.store.rows.values():
      if row.get('content') == content:
        return row
    return None

  def run(self, plans: list[Planned]) -> bool:
    """Trains what is not done yet; False when a SIGTERM stopped it."""
    groups = {}
    for planned in plans:
      if planned.id in self.store.rows:
        continue
      if planned.error:
        self._record(planned, {'status': 'invalid', 'reason': planned.error})
      elif (donor := self._done_with(planned.content)) is not None:
        self._record(planned, donor, same_as=donor['trial'])
      else:
        groups.setdefault(planned.content, []).append(planned)
    done = len([p for p in plans if p.id in self.store.rows])
    print(f'{len(groups)} trial(s) to train; {done} of {len(plans)} done',
          flush=True)
    firsts = {group[0].id: group for group in groups.values()}
    tasks = [(p.id, p.config, self.store.trial_dir(p.id))
             for p, *_ in groups.values()]
    for trial_id, outcome in self.executor.run(tasks):
      if outcome['status'] == 'stopped':
        return False
      first, *others = firsts[trial_id]
      self._record(first, outcome)
      for planned in others:
        self._record(planned, outcome, same_as=first.id)
    return True


def check(sweep) -> list[tuple]:
  """Checks ``config.sweep``; returns the φ = 1 candidates."""
  points = candidates.candidates(sweep)
  unknown = [b for b in sweep.baselines
             if b not in candidates.SINGLE_DIMENSIONS]
  if unknown:
    raise ValueError(f'sweep.baselines: unknown scaling {unknown[0]!r}; '
                     f'choose from {", ".join(candidates.SINGLE_DIMENSIONS)}')
  if sweep.max_phi < 1:
    raise ValueError(f'sweep.max_phi must be >= 1; got {sweep.max_phi}')
  if not sweep.seeds:
    raise ValueError('sweep.seeds is empty: give at least one seed')
  if sweep.select not in SELECT:
    raise ValueError(f'sweep.select must be one of {", ".join(SELECT)}; got '
                     f'{sweep.select!r}')
  if sweep.executor not in EXECUTORS:
    raise ValueError(f'unknown sweep.executor {sweep.executor!r}; choose one '
                     f'of: {", ".join(EXECUTORS)}')
  return points


def search_trials(planner: Planner, points, seeds) -> list[Planned]:
  """The baseline and every φ = 1 candidate, for every seed."""
  trials = [Trial('baseline', 0, 1.0, 1.0, 1.0, seed) for seed in seeds]
  trials += [Trial('grid', 1, a, b, g, seed, a, b, g)
             for a, b, g in points for seed in seeds]
  return [planner.plan(t) for t in trials]


def matched(planner: Planner, kind: str, phi: int, chosen: tuple,
            macs: int) -> tuple:
  """(d, w, r) scaling only ``kind``, its counted MACs closest to ``macs``.

  The nominal multiplier (``candidates.single_dimension``) matches the
  compound row's ``d·w²·r²``, but rounding repeats up, channels and sides to
  multiples of 8 moves both rows' counted MACs. MACs grow with the one
  multiplier, so a bisection from the nominal one finds the closest.
  """
  axis = candidates.SINGLE_DIMENSIONS.index(kind)
  nominal = candidates.single_dimension(
      kind, phi, candidates.nominal_growth(*chosen))

  def cost(multiplier: float) -> tuple[float, tuple, float]:
    """(distance to ``macs`` on a log scale, (d, w, r), counted MACs)."""
    dwr = tuple(multiplier if i == axis else 1.0 for i in range(3))
    counted = planner.plan(Trial(kind, phi, *dwr, 0)).macs or math.inf
    return abs(math.log(counted / macs)), dwr, counted

  best = cost(nominal[axis])
  lo, hi = 1.0, 2 * nominal[axis]
  for _ in range(MATCH_STEPS):
    mid = round((lo + hi) / 2, 4)
    found = cost(mid)
    best = min(best, found)
    lo, hi = (mid, hi) if found[2] < macs else (lo, mid)
  return best[1]


def scale_up_trials(planner: Planner, chosen: tuple, sweep) -> list[Planned]:
  """Compound φ = 1 … max_phi and, at its counted MACs, each single
  dimension of ``sweep.baselines``."""
  plans = []
  for phi in range(1, sweep.max_phi + 1):
    d, w, r = (c ** phi for c in chosen)
    compound = [planner.plan(Trial('compound', phi, d, w, r, seed, *chosen))
                for seed in sweep.seeds]
    plans += compound
    for kind in sweep.baselines:
      dwr = matched(planner, kind, phi, chosen, compound[0].macs)
      plans += [planner.plan(Trial(kind, phi, *dwr, seed, *chosen))
                for seed in sweep.seeds]
  return plans


def run(config, workdir: str) -> dict | None:
  """Runs the three phases; returns the chosen point (None if stopped)."""
  logging.set_verbosity(logging.WARNING)  # TFDS's INFO lines
  sweep = config.sweep
  points = check(sweep)
  results.check_writable(Path(workdir))
  planner = Planner(config)
  store = results.ResultStore(workdir, config.to_dict())
  executor = make_executor(sweep)
  try:
    runner = Runner(store, executor)
    if not runner.run(search_trials(planner, points, sweep.seeds)):
      return _stopped()
    best = analysis.choose(store.rows.values(), sweep.select)
    chosen = (best['alpha'], best['beta'], best['gamma'])
    print(f'chosen alpha={chosen[0]:g} beta={chosen[1]:g} gamma={chosen[2]:g}'
          f': {sweep.select} {_pct(best["mean"])} at '
          f'{best["macs"] / 1e6:.1f}M MACs (the paper: alpha=1.2, beta=1.1, '
          'gamma=1.15)', flush=True)
    if not runner.run(scale_up_trials(planner, chosen, sweep)):
      return _stopped()
  finally:
    executor.close()
  if sweep.report:
    report.write(workdir)
  return {'alpha': chosen[0], 'beta': chosen[1], 'gamma': chosen[2],
          sweep.select: best['mean'], 'macs': best['macs']}


def _stopped() -> None:
  print('sweep stopped; the running trial saved a checkpoint. Run the same '
        'command to resume.', flush=True)
  return None

