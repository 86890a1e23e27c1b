"""The compound-scaling search end to end: ``launch.py`` in a subprocess
(the runlocal sweep), real TFDS, real orbax checkpoints, real signals, real
worker processes and a real local Ray instance."""

import json
import os
import signal
from pathlib import Path

import pytest

from dvl.sweep import report, search
from train_runs import experiment_config, launch, run_env, start, wait_for

SEARCH = 'experiments/scaling_search.py:runlocal'
REPORT = 'experiments/scaling_report.py'
# Baseline, the two runlocal candidates, then compound φ = 1
# and depth, width and resolution alone at its MACs; two seeds each.
ROWS = 14


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  return run_env(tmp_path_factory.mktemp('tfds'),
                 tmp_path_factory.mktemp('jax_cache'))


def _rows(workdir) -> list[dict]:
  lines = (Path(workdir) / 'results.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


def _trained(rows) -> list[dict]:
  return [r for r in rows if not r['same_as']]


def test_runlocal_search_then_report_then_nothing_to_redo(env, tmp_path):
  workdir = tmp_path / 'search'
  result = launch(SEARCH, workdir, env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _rows(workdir)
  assert len(rows) == len({r['trial'] for r in rows}) == ROWS
  assert [r['kind'] for r in rows].count('grid') == 4
  assert sorted({r['seed'] for r in rows}) == [0, 1]
  assert {r['kind'] for r in rows} == {'baseline', 'grid', 'compound',
                                      'depth', 'width', 'resolution'}
  assert all(r['status'] == 'ok' for r in rows), rows
  for row in _trained(rows):
    trial = workdir / 'trials' / row['trial']
    summary = json.loads((trial / 'summary.json').read_text())
    assert summary['test_accuracy'] == row['test_accuracy']
    assert row['compile_s'] > 0 and row['train_s'] > 0
    assert row['macs'] == summary['macs'] and row['params'] == summary['params']
    # Measured cost: the step's time per image and XLA's plan of its memory.
    assert row['activations'] > 0 and row['train_images_per_s'] > 0
    assert row['step_bytes'] > 0
    assert json.loads((trial / 'config.json').read_text())['input'][
        'resolution'] == row['resolution']
  for row in rows:
    assert row['resolution'] % 8 == 0
  # Compound φ = 1 is the chosen grid point: trained once per seed, and
  # the chosen point has the best mean validation accuracy over the seeds.
  compounds = [r for r in rows if r['kind'] == 'compound']
  donors = [next(r for r in rows if r['trial'] == c['same_as'])
            for c in compounds]
  assert len(compounds) == 2 and {d['kind'] for d in donors} == {'grid'}
  assert {c['seed'] for c in compounds} == {d['seed'] for d in donors}
  point = lambda r: (r['alpha'], r['beta'], r['gamma'])
  assert len({point(d) for d in donors}) == 1
  chosen = donors[0]
  means = {}
  for r in rows:
    if r['kind'] == 'grid':
      means.setdefault(point(r), []).append(r['val_accuracy'])
  assert sum(means[point(chosen)]) == max(sum(v) for v in means.values())
  assert (f'chosen alpha={chosen["alpha"]:g} beta={chosen["beta"]:g} '
          f'gamma={chosen["gamma"]:g}') in result.stdout
  csv_lines = (workdir / 'trials.csv').read_text().splitlines()
  assert csv_lines[0].startswith('trial,kind,phi,seed,label,backbone,alpha')
  assert len(csv_lines) == ROWS + 1
  points = (workdir / 'results.csv').read_text().splitlines()
  assert 'test_accuracy_mean,test_accuracy_low,test_accuracy_high' in points[0]
  assert len(points) == ROWS // 2 + 1
  text = (workdir / 'report.md').read_text()
  assert f'| this search | {chosen["alpha"]:g} | {chosen["beta"]:g} |' in text
  _check_time_section(text, _trained(rows))
  assert '## Measured cost' in text
  assert "Pearson's r of log step time with log MACs is" in text
  for name in report.PLOTS:
    assert (workdir / name).stat().st_size > 10_000

  (workdir / 'report.md').unlink()
  result = launch(REPORT, workdir, env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (workdir / 'report.md').read_text() == text

  again = launch(SEARCH, workdir, env)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count('0 trial(s) to train') == 2
  assert _rows(workdir) == rows

  other = launch(SEARCH, workdir, env, '--config.sweep.tolerance=0.2')
  assert other.returncode != 0
  assert ('holds a sweep with another config (sweep.tolerance: 0.1 there, '
          '0.2 here)') in other.stderr
  assert _rows(workdir) == rows


def _check_time_section(text: str, trained: list[dict]) -> None:
  """The report's compile share is the populations' compile seconds over
  their wall seconds, each population counted once however many seeds it
  has, and every population's line names its trials and their times."""
  runs = {}
  for row in trained:
    runs.setdefault((row['population_dir'], row['steps']), []).append(row)
  assert len(runs) == len(trained) // 2  # two seeds per population
  compiled = sum(rows[0]['compile_s'] for rows in runs.values())
  wall = sum(rows[0]['wall_s'] for rows in runs.values())
  assert (f"Compiling took {compiled:.1f} s of the populations' {wall:.1f} s"
          f' wall time ({100 * compiled / wall:.1f}%) over {len(runs)} '
          'population runs.') in text
  lines = text.splitlines()
  for (population, steps), rows in runs.items():
    first = rows[0]
    assert {(r['compile_s'], r['train_s'], r['wall_s']) for r in rows} == {
        (first['compile_s'], first['train_s'], first['wall_s'])}
    assert first['compile_s'] + first['train_s'] < first['wall_s']
    line = next(l for l in lines if l.startswith(f'| {population} |'))
    assert all(r['trial'] in line for r in rows)
    assert (f'| {steps} | {first["compile_s"]:.1f} | {first["train_s"]:.1f}'
            f' | {first["wall_s"]:.1f} |') in line


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path,
                                                          monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'tfds'))
  config = experiment_config('scaling_search', 'runlocal')
  config.train.compilation_cache = False
  config.sweep.candidates = ((2.0, 1.0, 1.0), (1.0, 1.0, 1.4))
  config.optim.optimizer = 'sgd'
  config.optim.learning_rate = 1e30
  with pytest.raises(RuntimeError, match='every phi = 1 candidate failed'):
    search.run(config, str(tmp_path / 'nan'))
  rows = _rows(tmp_path / 'nan')
  assert [r['kind'] for r in rows] == ['baseline'] * 2 + ['grid'] * 4
  for row in rows:
    assert row['status'] == 'diverged'
    assert row['reason'].startswith('training diverged at step')
    assert row['macs'] > 0


@pytest.mark.parametrize('config,overrides,message', [
    (SEARCH + ',backbone=vgg11', ['--config.input.resolution=16'],
     'the baseline vgg11 cannot run at 16x16'),
    (SEARCH + ',backbone=lenet5', [], "model 'lenet5' cannot be scaled"),
    ('experiments/scaling_search.py',
     ['--config.sweep.tolerance=0.001', '--config.sweep.grid.step=0.3'],
     'no (alpha, beta, gamma) of the grid has alpha*beta^2*gamma^2 within '
     '0.001 of 2: the closest is (1.9, 1.0, 1.0)'),
    (SEARCH, ['--config.sweep.tolerance=0.01'],
     'sweep.candidates entry (1.2, 1.1, 1.15) has alpha*beta^2*gamma^2 = '
     '1.920, not within 0.01 of 2'),
])
def test_bad_input_is_refused_before_anything_is_written(
    env, tmp_path, config, overrides, message):
  result = launch(config, tmp_path / 'bad', env, *overrides)
  assert result.returncode != 0
  assert message in result.stderr
  assert not (tmp_path / 'bad' / 'sweep.json').exists()


def _half_done_trial(workdir, ends=(40,)):
  """A population with a checkpoint short of the end (or of a halving
  rung's end), once another has finished."""
  jsonl = workdir / 'results.jsonl'
  if not jsonl.exists() or not jsonl.read_text().strip():
    return None
  for trial in (workdir / 'trials').glob('pop-*'):
    steps = [int(p.name) for p in (trial / 'checkpoints').glob('*')
             if p.name.isdigit()]
    if steps and max(steps) not in ends:
      return trial
  return None


HALVING = ('--config.sweep.search=halving', '--config.sweep.halving.eta=2')


@pytest.mark.slow
@pytest.mark.parametrize('how,searching', [
    (signal.SIGKILL, ()), (signal.SIGTERM, ()), (signal.SIGKILL, HALVING)])
def test_killed_sweep_resumes_without_duplicates(env, tmp_path, how,
                                                 searching):
  workdir = tmp_path / 'killed'
  longer = ('--config.train.steps=40', '--config.train.checkpoint_every=5',
            *searching)
  ends = (20, 40) if searching else (40,)
  # Halving: four rung rows (two candidates, two seeds), and only the
  # promoted candidate's two final rows.
  rows_expected = ROWS + 2 if searching else ROWS
  process = start(SEARCH, workdir, env, *longer)
  wait_for(lambda: _half_done_trial(workdir, ends), process)
  process.send_signal(how)
  process.wait(timeout=120)
  trial = _half_done_trial(workdir, ends)
  assert trial is not None
  stopped_at = max(int(p.name) for p in (trial / 'checkpoints').glob('*')
                   if p.name.isdigit())
  before = _rows(workdir)
  assert 0 < len(before) < rows_expected
  if how == signal.SIGTERM:
    assert 'sweep stopped' in (tmp_path / 'killed.log').read_text()

  again = launch(SEARCH, workdir, env, *longer, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'member(s) from step {stopped_at}' in again.stdout
  rows = _rows(workdir)
  assert len(rows) == len({r['trial'] for r in rows}) == rows_expected
  assert rows[:len(before)] == before  # finished trials were not redone
  assert all(r['status'] == 'ok' for r in rows)
  assert {r['steps'] for r in rows if not r.get('rung_of')} == {40}
  assert {r['steps'] for r in rows if r.get('rung_of')} <= {20}


def _results(rows) -> dict:
  return {r['trial']: (r['status'], r['val_accuracy'], r['test_accuracy'],
                       r['test_loss'], r['macs']) for r in rows}


@pytest.mark.slow
def test_pool_gives_the_sequential_results(env, tmp_path):
  one_core = min(os.sched_getaffinity(0))
  sequential = tmp_path / 'sequential'
  result = launch(SEARCH, sequential, env,
                  timeout=900, preexec_fn=lambda: os.sched_setaffinity(
                      0, {one_core}))
  assert result.returncode == 0, result.stderr[-3000:]
  pooled = tmp_path / 'pool'
  result = launch(SEARCH + ',executor=pool,workers=2', pooled, env,
                  '--config.sweep.threads_per_worker=1', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert _results(_rows(pooled)) == _results(_rows(sequential))


@pytest.mark.slow
def test_ray_executor_on_a_local_ray_instance(env, tmp_path):
  workdir = tmp_path / 'ray'
  result = launch(SEARCH + ',executor=ray,workers=2', workdir, env,
                  '--config.sweep.threads_per_worker=1', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _rows(workdir)
  assert len(rows) == len({r['trial'] for r in rows}) == ROWS
  assert all(r['status'] == 'ok' for r in rows)
  assert 'ray: 1 node(s), 2 CPUs; 1 per trial' in result.stdout
  for row in _trained(rows):
    assert (workdir / 'trials' / row['trial'] / 'summary.json').exists()


def test_table3_macs_from_the_scaling_functions(env, tmp_path):
  result = launch('experiments/efficientnet_table3.py:runlocal', tmp_path,
                  env)
  assert result.returncode == 0, result.stderr[-3000:]
  text = (tmp_path / 'model_table.md').read_text()
  assert '| mobilenet_v1 | width w=2 |' in text
  assert 'Scaling semantics' in text


@pytest.mark.slow
def test_table3_rows_train_through_the_sweep_runner(env, tmp_path):
  result = launch('experiments/efficientnet_table3.py:dataset=shapes,runlocal',
                  tmp_path, env, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _rows(tmp_path)
  first = [r for r in rows if r['seed'] == 0]
  assert [r['label'] for r in first] == [
      'baseline', 'width w=2', 'resolution r=2',
      'compound d=1.4, w=1.2, r=1.3']
  assert len(rows) == 2 * len(first)  # two seeds per row
  assert all(r['status'] == 'ok' for r in rows)
  assert [r['resolution'] for r in first] == [32, 32, 64, 40]
  text = (tmp_path / 'table3.md').read_text()
  for row in first:
    line = next(l for l in text.splitlines()
                if l.startswith(f'| {row["label"]} |'))
    accs = [r['test_accuracy'] for r in rows if r['label'] == row['label']]
    assert f'{100 * sum(accs) / len(accs):.2f} ± ' in line
  assert (tmp_path / 'accuracy_vs_macs.png').stat().st_size > 10_000


@pytest.mark.parametrize('backbone', ['efficientnet', 'mobilenet_v1'])
def test_cifar10_variant_plans_the_full_comparison(backbone):
  """The CIFAR-10 sweep: at least nine grid points inside the constraint,
  φ up to 3 with the three single-dimension baselines, and a backbone that
  keeps a 4x4 map at 32x32 with BatchNorm statistics that keep up."""
  import jax
  import jax.numpy as jnp
  from dvl import models
  from dvl.sweep import candidates
  config = experiment_config('scaling_search',
                             f'backbone={backbone},dataset=cifar10')
  points = candidates.candidates(config.sweep)
  assert len(points) >= 9
  for a, b, g in points:
    assert min(a, b, g) >= 1.0
    assert abs(a * b * b * g * g - 2.0) <= config.sweep.tolerance + 1e-9
  assert config.sweep.max_phi >= 3
  assert set(config.sweep.baselines) == {'depth', 'width', 'resolution'}
  fields = config.model.to_dict()
  model = models.build_model(fields.pop('name'), num_classes=10, **fields)
  assert model.bn_momentum == 0.9
  x = jnp.zeros((1, 32, 32, 3))
  _, features = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), x, train=False)[0])
  last = [v for k, v in features.items() if k.startswith('stage')][-1]
  assert last.shape[1:3] == (4, 4)


def _local(tmp_path, **sweep):
  """The runlocal sweep in this process, its data in ``tmp_path``."""
  config = experiment_config('scaling_search', 'runlocal')
  config.input.data_dir = str(tmp_path / 'tfds')
  config.train.compilation_cache = False
  config.sweep.report = False
  config.sweep.update(sweep)
  return config


def _train_steps(trial_dir) -> list[int]:
  lines = (Path(trial_dir) / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(l)['step'] for l in lines
          if json.loads(l)['split'] == 'train']


@pytest.mark.slow
def test_halving_promotes_by_resuming_and_reports_its_rungs(tmp_path):
  config = _local(tmp_path, search='halving', max_phi=1,
                  halving=dict(eta=2, rungs=2), baselines=('width',))
  workdir = tmp_path / 'halving'
  search.run(config, str(workdir))
  rows = _rows(workdir)
  rung = [r for r in rows if r.get('rung_of')]
  # Both candidates (two seeds each) stopped at 4 of the 8 steps ...
  assert len(rung) == 4 and {r['steps'] for r in rung} == {4}
  assert all(r['test_accuracy'] is None for r in rung)
  # ... and only the better one went on to the full budget.
  final_grid = [r for r in rows if r['kind'] == 'grid' and not r.get(
      'rung_of')]
  assert len(final_grid) == 2 and {r['steps'] for r in final_grid} == {8}
  promoted = (final_grid[0]['alpha'], final_grid[0]['beta'],
              final_grid[0]['gamma'])
  means = {}
  for r in rung:
    means.setdefault((r['alpha'], r['beta'], r['gamma']), []).append(
        r['val_accuracy'])
  assert promoted == max(means, key=lambda k: (sum(means[k]), k == promoted))
  # Resumed, not retrained: each logged train step appears once, and the
  # population's checkpoints hold the rung's step and the last one.
  for row in final_grid:
    steps = _train_steps(workdir / 'trials' / row['trial'])
    assert steps == sorted(set(steps)) and steps[-1] == 8
  # The promoted network resumed in the driver's process with the
  # programs its rung compiled there.
  assert {r['programs'] for r in final_grid} == {'reused'}
  assert {r['programs'] for r in rung} == {'compiled'}
  population = workdir / 'trials' / final_grid[0]['population_dir']
  assert {4, 8} <= {int(p.name) for p in (population / 'checkpoints').glob(
      '*') if p.name.isdigit()}
  text = report.write(workdir)
  assert '## Successive halving' in text
  assert '| 0 | 4 | 2 |' in text and '| 1 | 8 | 1 |' in text


@pytest.mark.slow
def test_more_seeds_train_only_the_new_seeds(tmp_path):
  workdir = tmp_path / 'seeds'
  search.run(_local(tmp_path, seeds=(0,), max_phi=1,
                    baselines=('width',)), str(workdir))
  before = _rows(workdir)
  assert {r['seed'] for r in before} == {0}
  search.run(_local(tmp_path, seeds=(0, 1), max_phi=1,
                    baselines=('width',)), str(workdir))
  after = _rows(workdir)
  assert after[:len(before)] == before  # nothing of seed 0 was redone
  assert {r['seed'] for r in after[len(before):]} == {1}
  assert len(after) == 2 * len(before)
  stored = json.loads((workdir / 'sweep.json').read_text())
  assert stored['config']['sweep']['seeds'] == [0, 1]


@pytest.mark.parametrize('sweep,message', [
    (dict(seeds=()), 'sweep.seeds is empty'),
    (dict(seeds=(0, -1)), 'non-negative integers'),
    (dict(seeds=(1, 1)), 'lists a seed twice'),
    (dict(search='halving', halving=dict(eta=1, rungs=2)),
     'eta must be an integer >= 2'),
    (dict(search='halving', halving=dict(eta=3, rungs=4)),
     'the smallest halving rung would train 0.3 steps'),
    (dict(budgets=(4, 2)), 'sweep.budgets must increase'),
    (dict(search='random'), 'sweep.search must be one of grid, halving'),
    (dict(population='threads'), 'sweep.population must be one of'),
])
def test_bad_sweep_settings_are_refused_before_training(tmp_path, sweep,
                                                        message):
  config = _local(tmp_path, **sweep)
  with pytest.raises(ValueError, match=message):
    search.run(config, str(tmp_path / 'bad'))
  assert not (tmp_path / 'bad' / 'results.jsonl').exists()
