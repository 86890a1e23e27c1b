"""The sweep's parts without training: candidates under the constraint,
trial planning, the results files and the report drawn from real rows."""

import json
import math

import ml_collections
import pytest
from PIL import Image

from dvl.sweep import analysis, candidates, report, results, stats
from dvl.sweep.trials import Planner, Trial
from train_runs import experiment_config


def _grid(step=0.1, tolerance=0.1, alpha=(1.0, 2.0), beta=(1.0, 1.5),
          gamma=(1.0, 1.5)):
  return candidates.grid(
      ml_collections.ConfigDict(dict(alpha=alpha, beta=beta, gamma=gamma,
                                     step=step)),
      target=2.0, tolerance=tolerance)


def test_grid_keeps_exactly_the_points_within_the_tolerance():
  points = _grid()
  inside = {(1.2, 1.1, 1.2), (1.0, 1.0, 1.4), (2.0, 1.0, 1.0),
            (1.4, 1.1, 1.1)}
  assert inside <= set(points)
  # 1.2 * 1.1^2 * 1.1^2 = 1.76: outside; 1.5 * 1.5^2: far outside; 1.9 is
  # on the edge and kept.
  assert (1.9, 1.0, 1.0) in points
  assert (1.2, 1.1, 1.1) not in points and (1.5, 1.5, 1.0) not in points
  assert len(points) == len(set(points)) == 21
  for alpha, beta, gamma in points:
    assert min(alpha, beta, gamma) >= 1.0
    assert abs(alpha * beta ** 2 * gamma ** 2 - 2.0) <= 0.1 + 1e-9
  # Every point of the grid that satisfies the constraint is kept.
  axis = [round(1 + 0.1 * i, 6) for i in range(11)]
  expected = [(a, b, g) for a in axis for b in axis[:6] for g in axis[:6]
              if abs(a * b * b * g * g - 2) <= 0.1 + 1e-9]
  assert sorted(points) == sorted(expected)


def test_grid_without_a_candidate_names_the_closest_and_the_fix():
  with pytest.raises(ValueError) as error:
    _grid(step=0.3, tolerance=0.01)
  message = str(error.value)
  assert 'within 0.01 of 2: the closest is (1.9, 1.0, 1.0), at 1.900' in message
  assert 'Widen sweep.tolerance to at least 0.1,' in message


@pytest.mark.parametrize('bounds,message', [
    (dict(alpha=(0.9, 2.0)), 'alpha must be >= 1'),
    (dict(beta=(1.4, 1.2)), 'the upper bound is below the lower one'),
    (dict(step=0.0), 'sweep.grid.step must be > 0'),
])
def test_grid_rejects_bad_bounds(bounds, message):
  with pytest.raises(ValueError, match=message):
    _grid(**bounds)


def test_fixed_list_is_checked_like_the_grid():
  ok = candidates.checked_list([(1.2, 1.1, 1.15)], target=2.0, tolerance=0.1)
  assert ok == [(1.2, 1.1, 1.15)]
  with pytest.raises(ValueError, match='not within 0.01 of 2'):
    candidates.checked_list([(1.2, 1.1, 1.15)], target=2.0, tolerance=0.01)
  with pytest.raises(ValueError, match='must all be >= 1'):
    candidates.checked_list([(0.8, 1.2, 1.3)], target=2.0, tolerance=1.0)


@pytest.mark.parametrize('phi', [1, 2, 3])
def test_single_dimension_scalings_match_the_compound_growth(phi):
  alpha, beta, gamma = candidates.PAPER
  growth = candidates.nominal_growth(alpha, beta, gamma)
  compound = (alpha ** phi) * (beta ** phi) ** 2 * (gamma ** phi) ** 2
  for kind in candidates.SINGLE_DIMENSIONS:
    d, w, r = candidates.single_dimension(kind, phi, growth)
    assert d * w ** 2 * r ** 2 == pytest.approx(compound)
    assert sorted([d, w, r])[:2] == [1.0, 1.0]


@pytest.fixture(scope='module')
def search_config(tmp_path_factory):
  """The runlocal search config, its shapes data in a fresh TFDS dir."""
  config = experiment_config('scaling_search', 'runlocal')
  config.input.data_dir = str(tmp_path_factory.mktemp('tfds'))
  config.sweep.seeds = (0, 1, 2)  # the rows below have up to three seeds
  return config


def test_planner_counts_cost_and_dedupes_equal_networks(search_config):
  planner = Planner(search_config)
  base = planner.plan(Trial('baseline', 0, 1.0, 1.0, 1.0, 0))
  # The proxy halves B0's repeats (1, 2, 2, 2) to one block per stage; as
  # repeats round up, every depth in (1, 2] restores (1, 2, 2, 2).
  a = planner.plan(Trial('depth', 1, 2.0, 1.0, 1.0, 0))
  b = planner.plan(Trial('depth', 1, 1.1, 1.0, 1.0, 0))
  wide = planner.plan(Trial('width', 1, 1.0, 1.4, 1.0, 0))
  sharp = planner.plan(Trial('resolution', 1, 1.0, 1.0, 1.4, 0))
  assert a.content == b.content and a.id != b.id
  assert len({base.content, a.content, wide.content, sharp.content}) == 4
  assert base.side == 32 and sharp.side == 48  # 44.8 rounds to 48
  assert sharp.config.input.resolution == 48
  assert sharp.config.model.resolution == 48
  assert wide.params > base.params and a.macs > base.macs
  assert sharp.macs == pytest.approx(base.macs * (48 / 32) ** 2, rel=0.02)
  assert planner.plan(Trial('baseline', 0, 1.0, 1.0, 1.0, 0)).id == base.id
  assert base.config.job == 'train' and 'sweep' not in base.config


def test_planner_refuses_unsupported_backbones(search_config):
  config = ml_collections.ConfigDict(search_config.to_dict())
  config.model = ml_collections.ConfigDict(dict(name='lenet5'))
  with pytest.raises(ValueError, match="model 'lenet5' cannot be scaled"):
    Planner(config)


def test_planner_refuses_a_baseline_that_collapses(search_config):
  config = ml_collections.ConfigDict(search_config.to_dict())
  config.model = ml_collections.ConfigDict(dict(name='vgg11', width=0.25))
  config.input.resolution = 16
  with pytest.raises(ValueError) as error:
    Planner(config)
  assert 'cannot run at 16x16' in str(error.value)
  assert 'feature map collapses to zero' in str(error.value)


def _row(trial, kind, phi, acc, macs, **extra):
  return dict(trial=trial, kind=kind, phi=phi, seed=0, label='',
              backbone='efficientnet', alpha=extra.pop('alpha', None),
              beta=extra.pop('beta', None), gamma=extra.pop('gamma', None),
              d=1.0, w=1.0, r=1.0, resolution=32, params=int(macs / 10),
              macs=macs, steps=8, val_accuracy=acc, best_val_accuracy=acc,
              test_accuracy=None if acc is None else acc - 0.01,
              test_loss=1.0, train_s=3.0, compile_s=2.0, wall_s=5.0,
              status='ok', reason=None, same_as=None, **extra)


def test_store_appends_once_drops_a_torn_line_and_refuses_other_configs(
    tmp_path, search_config):
  config = search_config.to_dict()
  store = results.ResultStore(tmp_path, config)
  store.add(_row('baseline0-a', 'baseline', 0, 0.5, 1e6))
  store.add(_row('baseline0-a', 'baseline', 0, 0.9, 1e6))  # kept once
  assert len(store.rows) == 1
  with open(tmp_path / 'results.jsonl', 'a') as f:
    f.write('{"trial": "grid1-b", "kind": "gr')  # a kill mid-write
  again = results.ResultStore(tmp_path, config)
  assert list(again.rows) == ['baseline0-a']
  lines = (tmp_path / 'results.jsonl').read_text().splitlines()
  assert len(lines) == 1 and json.loads(lines[0])['val_accuracy'] == 0.5
  assert (tmp_path / 'results.csv').read_text().count('baseline0-a') == 1

  # Where trials run is not part of the sweep's identity ...
  pooled = ml_collections.ConfigDict(config)
  pooled.sweep.executor, pooled.sweep.workers = 'pool', 4
  results.ResultStore(tmp_path, pooled.to_dict())
  # ... what they compute is.
  other = ml_collections.ConfigDict(config)
  other.sweep.tolerance = 0.2
  with pytest.raises(ValueError) as error:
    results.ResultStore(tmp_path, other.to_dict())
  message = str(error.value)
  assert 'sweep.tolerance: 0.1 there, 0.2 here' in message
  assert 'use a new --workdir' in message
  assert len((tmp_path / 'results.jsonl').read_text().splitlines()) == 1


def test_store_refuses_rows_of_another_sweep(tmp_path, search_config):
  config = search_config.to_dict()
  results.ResultStore(tmp_path / 'a', config).add(
      _row('grid1-x', 'grid', 1, 0.5, 1e6))
  with pytest.raises(ValueError, match='results.jsonl but no sweep.json'):
    (tmp_path / 'b').mkdir()
    (tmp_path / 'b' / 'results.jsonl').write_text(
        (tmp_path / 'a' / 'results.jsonl').read_text())
    results.ResultStore(tmp_path / 'b', config)
  other = ml_collections.ConfigDict(config)
  other.train.steps = 9
  results.ResultStore(tmp_path / 'c', other.to_dict())
  (tmp_path / 'c' / 'results.jsonl').write_text(
      (tmp_path / 'a' / 'results.jsonl').read_text())
  with pytest.raises(ValueError, match='another sweep config'):
    results.ResultStore(tmp_path / 'c', other.to_dict())


def test_unwritable_workdir_is_refused(tmp_path, search_config):
  (tmp_path / 'file').write_text('')
  with pytest.raises(ValueError, match='cannot write to the sweep workdir'):
    results.ResultStore(tmp_path / 'file' / 'sweep', search_config.to_dict())


def _sweep_rows():
  """A small sweep's rows: compound wins at φ = 1 and loses at φ = 2."""
  grid = dict(alpha=1.2, beta=1.1, gamma=1.2)
  rows = [_row('baseline0-a', 'baseline', 0, 0.70, 1e6),
          _row('grid1-a', 'grid', 1, 0.80, 2e6, **grid),
          _row('grid1-b', 'grid', 1, 0.76, 2.1e6, alpha=2.0, beta=1.0,
               gamma=1.0),
          _row('compound1-a', 'compound', 1, 0.80, 2e6, **grid),
          _row('depth1-a', 'depth', 1, 0.75, 2.1e6, **grid),
          _row('width1-a', 'width', 1, 0.78, 1.9e6, **grid),
          _row('compound2-a', 'compound', 2, 0.82, 4e6, **grid),
          _row('depth2-a', 'depth', 2, 0.84, 4.2e6, **grid),
          _row('width2-a', 'width', 2, 0.81, 3.9e6, **grid)]
  rows[3]['same_as'] = 'grid1-a'
  failed = _row('grid1-c', 'grid', 1, None, 2e6, alpha=1.0, beta=1.0,
                gamma=1.4)
  failed.update(status='diverged', reason='training diverged at step 3')
  return rows + [failed]


def test_analysis_chooses_on_validation_and_finds_the_front():
  rows = _sweep_rows()
  chosen = analysis.choose(rows)
  assert (chosen['alpha'], chosen['beta'], chosen['gamma']) == (1.2, 1.1, 1.2)
  front = analysis.pareto(analysis.aggregate(rows, 'test_accuracy'))
  assert [p['trial'] for p in front] == ['baseline0-a', 'width1-a',
                                         'grid1-a', 'width2-a', 'compound2-a',
                                         'depth2-a']
  verdict = analysis.compared(rows, 'test_accuracy')
  assert [(v['phi'], v['winner']) for v in verdict] == [(1, 'compound'),
                                                        (2, 'depth')]
  with pytest.raises(RuntimeError, match='every phi = 1 candidate failed'):
    analysis.choose([r for r in rows if r['kind'] != 'grid'])


def _seeded(prefix, kind, phi, accs, macs, **extra):
  """One row per seed of a point: ``accs`` are its test accuracies."""
  out = []
  for seed, acc in enumerate(accs):
    row = _row(f'{prefix}-s{seed}', kind, phi, acc + 0.01, macs, **extra)
    row['seed'] = seed
    out.append(row)
  return out


def _verdict_rows():
  """Three seeds per point. Seed effects are shared (seed 1 is 2 points
  better for every network), so pairing removes them: compound beats depth
  by 2 points on every seed, loses to resolution by 1 on every seed, and
  against width the differences are +3, -2, +1: unresolved."""
  grid = dict(alpha=1.2, beta=1.1, gamma=1.2)
  base = [0.80, 0.82, 0.79]
  shift = lambda d: [b + d for b in base]
  return (_seeded('baseline0-a', 'baseline', 0, shift(-0.05), 1e6)
          + _seeded('grid1-a', 'grid', 1, base, 2e6, **grid)
          + _seeded('compound1-a', 'compound', 1, base, 2e6, **grid)
          + _seeded('depth1-a', 'depth', 1, shift(-0.02), 2.1e6, **grid)
          + _seeded('width1-a', 'width', 1,
                    [0.80 - 0.03, 0.82 + 0.02, 0.79 - 0.01], 1.9e6, **grid)
          + _seeded('resolution1-a', 'resolution', 1, shift(0.01), 2e6,
                    **grid))


def test_report_verdicts_follow_the_paired_intervals(tmp_path,
                                                    search_config):
  store = results.ResultStore(tmp_path, search_config.to_dict())
  for row in _verdict_rows():
    store.add(row)
  text = report.write(tmp_path)
  lines = text.splitlines()

  def row_of(method):
    return next(l for l in lines if l.startswith(f'| 1 | {method} |'))
  # Hand computation: differences +2, +2, +2 -> CI [+2, +2]: a win.
  assert row_of('depth only').endswith('| +2.00 [+2.00, +2.00] | wins |')
  assert row_of('resolution only').endswith(
      '| -1.00 [-1.00, -1.00] | loses |')
  # +3, -2, +1: mean 0.67, sd 2.517, t(0.975, 2) = 4.3027 -> ±6.25.
  assert ('| +0.67 [-5.58, +6.92] | no difference resolved at this budget |'
          in row_of('width only'))
  assert '| 3 |' in row_of('compound')
  said = next(l for l in lines if l.startswith('- φ = 1:'))
  assert 'against depth only: compound wins (+2.00 [+2.00, +2.00] points)' \
      in said
  assert 'against resolution only: compound loses' in said
  assert ('against width only: no difference resolved at this budget '
          '(+0.67 [-5.58, +6.92] points); about ') in said
  needed = int(said.split('about ')[1].split(' seeds')[0])
  assert needed == stats.seeds_to_resolve(0.025166, 0.01)
  # The per-point table: the compound row's test accuracy mean and CI.
  csv_text = (tmp_path / 'results.csv').read_text().splitlines()
  compound = next(l for l in csv_text if l.startswith('compound,,1,'))
  cells = compound.split(',')
  header = csv_text[0].split(',')
  mean = float(cells[header.index('test_accuracy_mean')])
  low = float(cells[header.index('test_accuracy_low')])
  assert mean == pytest.approx(0.80333333)
  # sd of 0.80, 0.82, 0.79 is 0.015275; half width 4.3027 * sd / sqrt(3).
  assert mean - low == pytest.approx(4.302653 * 0.0152753 / math.sqrt(3),
                                     rel=1e-4)


def test_report_calls_one_network_under_two_names_a_tie(tmp_path,
                                                       search_config):
  """A chosen point that scales width alone: compound and width-only φ = 1
  are the grid point's network, a tie whatever the numbers say."""
  rows = _verdict_rows()
  for row in rows:
    if row['kind'] in ('width', 'compound'):
      twin = next(r for r in rows if r['kind'] == 'grid'
                  and r['seed'] == row['seed'])
      row.update(test_accuracy=twin['test_accuracy'], macs=2e6,
                 same_as=twin['trial'])
  store = results.ResultStore(tmp_path, search_config.to_dict())
  for row in rows:
    store.add(row)
  text = report.write(tmp_path)
  assert 'compound and width only build the same network: a tie' in text
  assert '| +0.00 [+0.00, +0.00] | same network |' in text


def test_seeds_are_pooled_with_their_interval():
  rows = [_row('grid1-a', 'grid', 1, 0.80, 2e6, alpha=1.2, beta=1.1,
               gamma=1.2),
          {**_row('grid1-b', 'grid', 1, 0.70, 2e6, alpha=1.2, beta=1.1,
                  gamma=1.2), 'seed': 1}]
  (point,) = analysis.aggregate(rows, 'val_accuracy')
  assert point['mean'] == pytest.approx(0.75)
  # t(0.975, 1) = 12.7062; sd = sqrt(0.005); half width t * sd / sqrt(2).
  assert point['spread'] == pytest.approx(12.7062047 * math.sqrt(0.005)
                                          / math.sqrt(2))
  assert point['seeds'] == 2 and point['values'] == {0: 0.80, 1: 0.70}


def test_report_writes_plots_and_a_row_per_trial(tmp_path, search_config):
  store = results.ResultStore(tmp_path, search_config.to_dict())
  for row in _sweep_rows():
    store.add(row)
  text = report.write(tmp_path)
  for name in report.PLOTS:
    with Image.open(tmp_path / name) as image:
      image.verify()
    with Image.open(tmp_path / name) as image:
      assert image.format == 'PNG' and min(image.size) > 300
  assert text.strip() == (tmp_path / 'report.md').read_text().strip()
  assert '| this search | 1.2 | 1.1 | 1.2 | 2.091 | 80.00 (1 seed) |' in text
  assert '| paper (Tan & Le 2019) | 1.2 | 1.1 | 1.15 | 1.920 | not in' in text
  assert '| 1 | depth only | 1 | 74.00 (1 seed) |' in text
  assert 'the spread over seeds is unknown with one seed' in text
  for row in _sweep_rows():
    assert sum(line.startswith(f'| {row["trial"]} |')
               for line in text.splitlines()) == 1
  assert 'diverged: training diverged at step 3' in text
  assert '(same network as grid1-a)' in text


def test_report_flags_a_phi_whose_winner_changes_with_the_budget(
    tmp_path, search_config):
  """At 1 epoch compound has the best mean, at 4 epochs depth does."""
  rows = []
  grid = dict(alpha=1.2, beta=1.1, gamma=1.2)
  for budget, compound, depth in ((1, 0.70, 0.65), (4, 0.80, 0.84)):
    share = dict(grid, budget=budget)
    for prefix, kind, acc in (('compound1', 'compound', compound),
                              ('depth1', 'depth', depth)):
      rows += _seeded(f'{prefix}-b{budget}', kind, 1,
                      [acc, acc + 0.01, acc - 0.01], 2e6, **share)
    rows += _seeded(f'grid1-b{budget}', 'grid', 1,
                    [compound, compound + 0.01, compound - 0.01], 2e6,
                    **share)
    rows += _seeded(f'baseline0-b{budget}', 'baseline', 0,
                    [0.6, 0.61, 0.59], 1e6, budget=budget)
  config = ml_collections.ConfigDict(search_config.to_dict())
  config.sweep.budgets = (1, 4)
  config.sweep.budget, config.sweep.seeds = 'epochs', (0, 1, 2)
  store = results.ResultStore(tmp_path, config.to_dict())
  for row in rows:
    store.add(row)
  text = report.write(tmp_path)
  assert '### Budget: 1 epochs' in text and '### Budget: 4 epochs' in text
  assert ('**φ = 1: the method with the best mean changes with the '
          'budget** (compound at 1 epochs, depth only at 4 epochs)') in text
  # The paired differences: +5 points at 1 epoch, -4 at 4 epochs.
  assert '| +5.00 [+5.00, +5.00] | wins |' in text
  assert '| -4.00 [-4.00, -4.00] | loses |' in text
