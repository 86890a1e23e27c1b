"""Scaling strategies in the sweep: matching on each cost with the counted
values, the star search, held-out laws and the measured cost in the report,
and their bad input."""

import json
import math

import ml_collections
import numpy as np
import pytest

from dvl.sweep import (analysis, laws, report, results, scaleup, search,
                       star, stats, strategies)
from dvl.sweep.trials import Planner, Trial
from train_runs import experiment_config, launch, run_env

CHOSEN = (1.2, 1.1, 1.15)


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  """The runlocal search config, its shapes data in a fresh TFDS dir."""
  config = experiment_config('scaling_search', 'runlocal')
  config.input.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.sweep.seeds = (0, 1, 2)
  return config


@pytest.fixture(scope='module')
def planner(config):
  return Planner(config)


def _compound(planner, phi=1):
  return planner.plan(Trial('compound', phi, *(c ** phi for c in CHOSEN), 0,
                            *CHOSEN))


@pytest.mark.parametrize('method', [
    'uniform', 'dwr:0.8', pytest.param('width', marks=pytest.mark.slow),
    pytest.param('exponents:0.5,0.05,0.2', marks=pytest.mark.slow)])
def test_a_method_is_matched_on_each_counted_cost(planner, method):
  exponents = strategies.parse(method).exponents
  for cost in ('macs', 'activations', 'params'):
    target = scaleup.counted(planner, _compound(planner), cost)
    dwr = scaleup.matched(planner, method, 1, CHOSEN, target, cost)
    # The point lies on the method's direction: ln d : ln w : ln r follow
    # its cost exponents.
    logs = [math.log(x) for x in dwr]
    lead = exponents.index(max(exponents))
    for e, value in zip(exponents, logs):
      assert value == pytest.approx(logs[lead] * e / exponents[lead],
                                    abs=1e-9)
    found = scaleup.counted(planner, planner.plan(
        scaleup._trial(method, 1, dwr, 0, CHOSEN, None)), cost)
    # No point of a scan along the direction comes much closer to the
    # compound row's counted cost (rounding moves the cost in steps).
    scan = []
    for t in np.linspace(1.0, 2 * max(dwr), 16):
      point = tuple(t ** (e / max(exponents)) if e else 1.0
                    for e in exponents)
      value = scaleup.counted(planner, planner.plan(
          scaleup._trial(method, 1, point, 0, CHOSEN, None)), cost)
      scan.append(abs(math.log(value / target)))
    assert abs(math.log(found / target)) <= min(scan) + 0.02, cost
    assert abs(math.log(found / target)) < 0.35, cost


def test_scale_up_plans_strategies_with_the_cost_they_match(config, planner):
  sweep = config.sweep
  with sweep.unlocked():
    sweep.strategies = ('uniform', 'dwr:0.8')
    sweep.match = 'activations'
    sweep.max_phi = 1
  try:
    plans = scaleup.scale_up_trials(planner, CHOSEN, sweep)
  finally:
    sweep.strategies, sweep.match = (), 'macs'
  methods = {scaleup.method_of(p.trial) for p in plans}
  assert methods == {'compound', 'depth', 'width', 'resolution', 'uniform',
                     'dwr:0.8'}
  strategy = [p for p in plans if p.trial.kind == 'strategy']
  assert {p.trial.label for p in strategy} == {'uniform', 'dwr:0.8'}
  assert len(strategy) == 2 * len(sweep.seeds)
  compound = next(p for p in plans if p.trial.kind == 'compound')
  assert compound.match == ('activations', compound.activations)
  for p in plans:
    row = p.row()
    assert row['match_cost'] == 'activations'
    assert row['match_value'] == p.activations
    assert p.id.startswith(p.trial.kind)


@pytest.mark.slow
def test_match_on_time_measures_each_network(planner):
  """Matching on measured time: the target is a wider network's step time
  (three times the width, about seven times the MACs); width alone matched
  to it lands on a network of similar measured time, far above the
  baseline's. Timing on a shared CPU is noisy, so the bounds are loose."""
  wide = planner.plan(Trial('width', 1, 1.0, 3.0, 1.0, 0))
  target = scaleup.counted(planner, wide, 'time')
  base = scaleup.counted(planner, planner.plan(
      Trial('baseline', 0, 1.0, 1.0, 1.0, 0)), 'time')
  assert 0 < base < target < 1  # seconds per image
  dwr = scaleup.matched(planner, 'width', 1, (1.0, 1.7, 1.0), target, 'time')
  assert dwr[0] == dwr[2] == 1.0 and dwr[1] > 1.5
  found = scaleup.counted(planner, planner.plan(
      Trial('width', 1, *dwr, 0)), 'time')
  assert abs(math.log(found / target)) < abs(math.log(base / target))
  # Measured once per network: another seed of it gives the same number.
  assert scaleup.counted(planner, planner.plan(
      Trial('width', 1, *dwr, 1)), 'time') == found


@pytest.mark.parametrize('change,message', [
    (dict(match='flops'), "unknown sweep.match 'flops'"),
    (dict(strategies=('dwr:1.5',)), r"must\s+lie in \[0, 1\]; got 1.5"),
    (dict(strategies=('compound',)), "'compound' is always trained"),
    (dict(strategies=('depth',)), 'list a method twice'),
    (dict(strategies=('uniform', 'uniform')), 'lists a strategy twice'),
    (dict(law=dict(holdout=2, cost='macs')), 'at least 3 values'),
    (dict(law=dict(holdout=3, cost='macs')), 'raise max_phi to 3'),
    (dict(search='star', star=dict(multipliers=(1.0, 1.5), rule='shape',
                                   grid='none')), 'must all exceed 1'),
    (dict(search='star', star=dict(multipliers=(1.5, 2.0), rule='shape',
                                   grid='all')), 'sweep.star.grid must be'),
])
def test_bad_strategy_settings_are_refused_before_training(config, change,
                                                           message):
  sweep = config.sweep.to_dict()
  sweep.update(change)
  with pytest.raises(ValueError, match=message):
    search.check(ml_collections.ConfigDict(sweep))


def test_neutral_new_fields_keep_an_old_workdir_fingerprint(config):
  old = config.to_dict()
  for key in ('strategies', 'match', 'law', 'star'):
    old['sweep'].pop(key)
  new = config.to_dict()
  assert results.fingerprinted(old) == results.fingerprinted(new)
  new['sweep']['strategies'] = ('uniform',)
  assert results.fingerprinted(old) != results.fingerprinted(new)


def _row(trial, kind, phi, seed, acc, macs, **extra):
  return dict(trial=trial, kind=kind, phi=phi, seed=seed,
              label=extra.pop('label', ''), backbone='efficientnet',
              alpha=1.2, beta=1.1, gamma=1.15, d=extra.pop('d', 1.0),
              w=extra.pop('w', 1.0), r=extra.pop('r', 1.0), resolution=32,
              params=int(macs / 10), macs=macs,
              activations=extra.pop('activations', int(macs / 20)),
              steps=8, val_accuracy=acc, best_val_accuracy=acc,
              test_accuracy=acc, test_loss=1.0, train_s=3.0, compile_s=2.0,
              wall_s=5.0, status='ok', reason=None, same_as=None, **extra)


LAW = (0.2, 0.7, 0.1)  # a, b, c of the error law the rows follow


def _law_rows():
  """φ = 0 … 3 for compound and dWr; the error follows E = a·x^(-b) + c
  (x: MACs over the baseline's) with seed offsets −1, 0, +1 points."""
  a, b, c = LAW
  rows = []
  for seed, offset in enumerate((-0.01, 0.0, 0.01)):
    rows.append(_row(f'baseline0-s{seed}', 'baseline', 0, seed,
                     1 - (a + c) + offset, 1e6))
    for method in ('compound', 'dwr:0.8'):
      kind = 'compound' if method == 'compound' else 'strategy'
      for phi in (1, 2, 3):
        macs = 1e6 * 2 ** phi
        error = a * (2 ** phi) ** -b + c
        rows.append(_row(f'{kind}{phi}-{method}-s{seed}', kind, phi, seed,
                         1 - error + offset, macs,
                         label='' if kind == 'compound' else method))
  return rows


def test_law_fit_predicts_the_held_out_phi_of_rows_that_follow_it():
  fits = analysis.law_fits(_law_rows(), 'test_accuracy', holdout=3)
  assert set(fits) == {'compound', 'dwr:0.8'}
  for fit in fits.values():
    assert fit.law.phis == (0, 1, 2)
    assert (fit.law.a, fit.law.b, fit.law.c) == pytest.approx(LAW, rel=1e-3)
    assert fit.error_points == pytest.approx(0.0, abs=1e-3)
    assert fit.verdict == laws.WITHIN


def test_report_shows_strategies_laws_and_the_cost_correlation(tmp_path,
                                                              config):
  sweep_config = config.to_dict()
  sweep_config['sweep'].update(max_phi=3, strategies=('dwr:0.8',),
                               law=dict(holdout=3, cost='macs'))
  rows = _law_rows()
  # Step time exactly proportional to activations, which are off MACs by a
  # factor of each network's own.
  factor = {('baseline', 0): 1.1, ('compound', 1): 1.0, ('compound', 2): 1.25,
            ('compound', 3): 0.9, ('strategy', 1): 1.5, ('strategy', 2): 0.8,
            ('strategy', 3): 1.35}
  for r in rows:
    r['activations'] = int(r['macs'] / 20 * factor[r['kind'], r['phi']])
    r['train_images_per_s'] = 1e9 / r['activations']
    r['population_dir'] = r['trial'].rsplit('-s', 1)[0]
    r['step_bytes'] = 4 * r['activations']
  store = results.ResultStore(tmp_path, sweep_config)
  for row in rows:
    store.add(row)
  text = report.write(tmp_path)
  assert '## Compound scaling against each method at matched MACs' in text
  assert any(l.startswith('| 3 | dWr (A = 0.8) | 3 |')
             for l in text.splitlines())
  law_lines = [l for l in text.splitlines() if l.startswith('| dWr (A = 0.8)')
               and 'within' in l]
  assert law_lines and '| +0.00 |' in law_lines[0]
  corr = analysis.time_correlation(store.rows.values())
  assert corr['activations'].mean == pytest.approx(1.0)
  assert corr['macs'].mean < 1.0
  assert ('on this device activations tracked the step time better than '
          'MACs') in text
  assert 'Peak device memory: not measured on this backend' in text
  for name in report.PLOTS:
    assert (tmp_path / name).stat().st_size > 10_000


def test_correlation_contrast_matches_a_hand_computation():
  y = [1.0, 2.0, 3.0, 4.0, 5.0]
  a = [2.0, 1.0, 4.0, 3.0, 5.0]  # r = 0.8 by hand: sum dx dy = 8, 10 each
  b = [1.0, 2.0, 3.0, 4.0, 5.5]
  out = stats.correlation_contrast(y, a, b, draws=500)
  assert out['a'].mean == pytest.approx(0.8)
  assert out['b'].mean == pytest.approx(np.corrcoef(y, b)[0, 1])
  assert out['b_minus_a'].mean == pytest.approx(out['b'].mean - 0.8)
  assert out['a'].low <= 0.8 <= out['a'].high
  with pytest.raises(ValueError, match='at least three points'):
    stats.correlation_contrast([1, 2], [1, 2], [2, 1])


def _star_rows(exponents={'depth': 0.2, 'width': 0.4, 'resolution': 0.3}):
  """A baseline at error 0.3 and each dimension alone at m = 1.5, 2 with
  error 0.3·C^(−b) (C = m for depth, m² for width and resolution)."""
  rows = []
  for seed in range(3):
    rows.append(_row(f'baseline0-s{seed}', 'baseline', 0, seed, 0.7, 1e6))
    for axis, k in enumerate(star.DIMENSIONS):
      for m in (1.5, 2.0):
        cost = m ** star.COST_POWER[k]
        dwr = {('d', 'w', 'r')[axis]: m}
        rows.append(_row(f'star0-{k}{m}-s{seed}', 'star', 0, seed,
                         1 - 0.3 * cost ** -exponents[k], 1e6 * cost,
                         label=scaleup.star_label(k, m), **dwr))
  return rows


def test_star_choice_recovers_the_exponents_and_the_report_compares_grid(
    tmp_path, config):
  sweep_config = config.to_dict()
  sweep_config['sweep'].update(
      search='star', star=dict(multipliers=(1.5, 2.0), rule='shape',
                               grid='halving'))
  rows = _star_rows()
  found = analysis.star_choice(rows, 'val_accuracy',
                               sweep_config['sweep'])
  assert {k: b for k, (_, b) in found.laws.items()} == pytest.approx(
      {'depth': 0.2, 'width': 0.4, 'resolution': 0.3})
  alpha, beta, gamma = found.coefficients
  assert alpha * beta ** 2 * gamma ** 2 == pytest.approx(2.0)
  # The shape rule: log-cost shares ∝ 1/b.
  inverse = {'depth': 5.0, 'width': 2.5, 'resolution': 1 / 0.3}
  total = sum(inverse.values())
  assert found.share == pytest.approx({k: v / total
                                       for k, v in inverse.items()})
  # The grid's choice and the star's network at φ = 1, paired by seed.
  for seed in range(3):
    rows.append(_row(f'grid1-a-s{seed}', 'grid', 1, seed, 0.80, 2e6))
    rows.append({**_row(f'compound1-s{seed}', 'compound', 1, seed,
                        0.82 + 0.01 * seed, 2e6),
                 'alpha': round(alpha, 4), 'beta': round(beta, 4),
                 'gamma': round(gamma, 4)})
  store = results.ResultStore(tmp_path, sweep_config)
  for row in rows:
    store.add(row)
  text = report.write(tmp_path)
  assert '## Star sweep' in text
  assert f'Derived: α = {alpha:.3f}, β = {beta:.3f}, γ = {gamma:.3f}' in text
  assert "The grid's choice: α=1.2, β=1.1, γ=1.15" in text
  # star − grid: +2, +3, +4 points: mean +3, sd 1, t(0.975, 2)·1/√3 = 2.48.
  assert 'star − grid = +3.00 [+0.52, +5.48] points' in text
  assert "the star's choice is ahead of the grid's" in text


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  return run_env(tmp_path_factory.mktemp('tfds'),
                 tmp_path_factory.mktemp('jax_cache'))


@pytest.mark.slow
def test_runlocal_star_search_with_a_strategy_matched_on_activations(
    env, tmp_path):
  workdir = tmp_path / 'star'
  result = launch('experiments/scaling_search.py:runlocal', workdir, env,
                  '--config.sweep.search=star',
                  '--config.sweep.star.multipliers=(2.0, 3.0)',
                  '--config.sweep.star.grid=none',
                  "--config.sweep.strategies=('dwr:0.8',)",
                  '--config.sweep.match=activations',
                  # Runlocal's 8 steps leave every arm at the same error:
                  # nothing for the star to fit.
                  '--config.train.steps=48',
                  '--config.optim.learning_rate=0.01', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(l) for l in
          (workdir / 'results.jsonl').read_text().splitlines()]
  assert [r['kind'] for r in rows].count('star') == 6 * 2
  assert not [r for r in rows if r['kind'] == 'grid']
  stored, _ = results.load(workdir)
  found = analysis.star_choice(rows, 'val_accuracy', stored['sweep'])
  compound = [r for r in rows if r['kind'] == 'compound']
  assert (compound[0]['alpha'], compound[0]['beta'], compound[0]['gamma']) \
      == tuple(round(c, 4) for c in found.coefficients)
  dwr = [r for r in rows if r['kind'] == 'strategy']
  assert {r['label'] for r in dwr} == {'dwr:0.8'} and len(dwr) == 2
  assert dwr[0]['match_cost'] == 'activations'
  assert dwr[0]['match_value'] == dwr[0]['activations']
  assert abs(math.log(dwr[0]['activations'] / compound[0]['activations'])) \
      < 0.35
  text = (workdir / 'report.md').read_text()
  assert '## Star sweep' in text and 'at matched activations' in text
  assert "there is no grid choice to compare with" in text
