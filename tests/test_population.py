"""Seeds trained as one population compute what separate runs compute."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from dvl import train
from dvl.checkpoint import Checkpointer
from dvl.data import make_pipeline
from dvl.sweep import executors
from dvl.train import population
from train_runs import experiment_config

SEEDS = (3, 7)


def _config(tmp_path, steps=6):
  """A two-stage proxy on a few hundred shapes images: seconds per run."""
  config = experiment_config('scaling_search', 'runlocal')
  with config.unlocked():
    del config['sweep']
  config.job = 'train'
  config.input.data_dir = str(tmp_path / 'tfds')
  config.train.steps = steps
  config.train.log_every = 3
  config.train.checkpoint_every = 3
  config.train.compilation_cache = False
  # Momentum SGD: Adam divides by the gradient's magnitude, so on leaves
  # whose gradient is float noise (a bias before BatchNorm) it turns
  # rounding differences into updates of the learning rate's size.
  config.optim.optimizer = 'momentum'
  config.optim.learning_rate = 0.05
  config.optim.weight_decay = 0.0
  return config


def _params(directory, template_config):
  """The newest checkpoint's parameters of a single run."""
  template = train.state_template(train.setup(template_config).config)
  with Checkpointer(directory) as ckpt:
    return ckpt.restore(template).state.params


def _close(a, b, rtol=2e-4, atol=2e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                               atol=atol)


@pytest.fixture(scope='module')
def separate_and_population(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('population')
  config = _config(tmp_path)
  single = {}
  for seed in SEEDS:
    one = population.member_config(config, seed)
    single[seed] = train.run(one, str(tmp_path / f'single{seed}'))
  dirs = [tmp_path / f'member{s}' for s in SEEDS]
  together = population.run(config, str(tmp_path / 'pop'), SEEDS, dirs,
                            mode='vmap')
  return tmp_path, config, single, together


def test_a_population_equals_separate_runs(separate_and_population):
  tmp_path, config, single, together = separate_and_population
  for seed in SEEDS:
    a, b = single[seed], together[seed]
    for key in ('val_accuracy', 'test_accuracy', 'test_loss'):
      assert a[key] == pytest.approx(b[key], abs=2e-3), (seed, key)
    assert b['steps'] == a['steps'] == 6
  # The parameters themselves, member by member, within float tolerance.
  stacked_template = population.PopulationSteps(
      train.setup(population.member_config(config, SEEDS[0])),
      len(SEEDS)).abstract_state()
  with Checkpointer(tmp_path / 'pop') as ckpt:
    stacked = ckpt.restore(stacked_template).state
  for i, seed in enumerate(SEEDS):
    mine = _params(tmp_path / f'single{seed}',
                   population.member_config(config, seed))
    _close(population.member(stacked.params, i), mine)
  # Two seeds are two different networks, not one trained twice.
  first, second = (population.member(stacked.params, i) for i in range(2))
  assert not all(np.allclose(x, y) for x, y in zip(
      jax.tree.leaves(first), jax.tree.leaves(second)))


def test_each_member_reports_in_its_own_directory(separate_and_population):
  tmp_path, _, _, together = separate_and_population
  for seed in SEEDS:
    directory = tmp_path / f'member{seed}'
    summary = json.loads((directory / 'summary.json').read_text())
    assert summary['seed'] == seed and summary['population'] == 2
    assert summary['test_accuracy'] == pytest.approx(
        together[seed]['test_accuracy'])
    recorded = json.loads((directory / 'config.json').read_text())
    assert recorded['train']['seed'] == seed
    splits = {json.loads(l)['split'] for l in
              (directory / 'metrics.jsonl').read_text().splitlines()}
    assert splits == {'train', 'val', 'test'}


@pytest.mark.slow
def test_stopping_at_a_rung_and_resuming_trains_no_step_twice(tmp_path):
  config = _config(tmp_path, steps=8)
  dirs = [tmp_path / f'm{s}' for s in SEEDS]
  rung = population.run(config, str(tmp_path / 'pop'), SEEDS, dirs,
                        stop_at=4, mode='vmap')
  assert all(r['steps'] == 4 and 'test_accuracy' not in r
             for r in rung.values())
  assert not (dirs[0] / 'summary.json').exists()
  final = population.run(config, str(tmp_path / 'pop'), SEEDS, dirs,
                         mode='vmap')
  assert all(r['steps'] == 8 and 'test_accuracy' in r for r in final.values())
  # The resumed population found the rung's programs in this process.
  assert [r['programs'] for r in (*rung.values(), *final.values())] == [
      'compiled'] * 2 + ['reused'] * 2
  # Resumed from step 4: the second call trained steps 5..8 only.
  train_rows = [json.loads(l) for l in
                (dirs[0] / 'metrics.jsonl').read_text().splitlines()
                if json.loads(l)['split'] == 'train']
  steps = [r['step'] for r in train_rows]
  assert steps == sorted(set(steps)) and steps[-1] == 8
  # The same run without the rung ends at the same numbers.
  straight = population.run(config, str(tmp_path / 'straight'), SEEDS,
                            [tmp_path / f's{s}' for s in SEEDS], mode='vmap')
  for seed in SEEDS:
    assert final[seed]['test_accuracy'] == pytest.approx(
        straight[seed]['test_accuracy'], abs=1e-6)
  # A rung asked of a population that already ran past it resumes from the
  # newest checkpoint at or before the rung (step 3) and ends where the
  # first rung did.
  again = population.run(config, str(tmp_path / 'straight'), SEEDS,
                         [tmp_path / f's{s}' for s in SEEDS], stop_at=4,
                         mode='vmap')
  for seed in SEEDS:
    assert again[seed]['steps'] == 4
    assert again[seed]['val_accuracy'] == pytest.approx(
        rung[seed]['val_accuracy'], abs=1e-6)


@pytest.mark.slow
def test_a_population_too_large_for_memory_trains_in_sequence(tmp_path,
                                                              capsys):
  config = _config(tmp_path, steps=3)
  dirs = [tmp_path / f'm{s}' for s in SEEDS]
  out = population.run(config, str(tmp_path / 'pop'), SEEDS, dirs,
                       mode='auto', memory_limit_gb=1e-6)
  said = capsys.readouterr().out
  assert 'training the seeds one after another instead' in said
  assert json.loads((tmp_path / 'pop' / 'population.json').read_text())[
      'mode'] == 'sequential'
  assert sorted(out) == sorted(SEEDS)
  assert all((tmp_path / 'pop' / f'seed{s}' / 'checkpoints').is_dir()
             for s in SEEDS)


@pytest.mark.parametrize('seeds,kwargs,message', [
    ((), {}, 'distinct seeds'),
    ((1, 1), {}, 'distinct seeds'),
    ((1,), dict(stop_at=0), 'at least one step'),
    ((1,), dict(mode='parallel'), 'population mode must be one of'),
])
def test_bad_population_arguments(tmp_path, seeds, kwargs, message):
  with pytest.raises(ValueError, match=message):
    population.run(_config(tmp_path), str(tmp_path), seeds, [], **kwargs)


def _two_tasks(tmp_path) -> list:
  """Two networks (the proxy at 32 and at 40 pixels), two seeds each."""
  tasks = []
  for side in (32, 40):
    config = _config(tmp_path, steps=4)
    config.input.resolution = side
    name = f'pop{side}'
    tasks.append(executors.Task(
        name, config, str(tmp_path / name),
        [(f'{name}-s{s}', s, str(tmp_path / f'{name}-s{s}')) for s in SEEDS]))
  return tasks


def _sequential(tmp_path, ahead) -> dict:
  population.forget_compiled()
  tasks = _two_tasks(tmp_path)
  # The dataset exists before the tasks run, as a sweep's planner makes it.
  make_pipeline(tasks[0].config.input, seed=0)
  sweep = ml_collections.ConfigDict(dict(
      compile_ahead=ml_collections.FieldReference(ahead, field_type=object),
      population='vmap', population_memory_gb=0.0))
  executor = executors.Sequential(sweep)
  return {trial: outcome for _, outcomes in executor.run(tasks)
          for trial, outcome in outcomes.items()}


@pytest.mark.slow
def test_compiling_ahead_serves_the_next_population_the_same_programs(
    tmp_path):
  off = _sequential(tmp_path / 'off', False)
  on = _sequential(tmp_path / 'on', True)
  assert sorted(on) == sorted(off) and len(on) == 4
  for trial, outcome in on.items():
    assert outcome['status'] == 'ok' == off[trial]['status']
    for field in ('val_accuracy', 'test_accuracy', 'test_loss', 'steps'):
      assert outcome[field] == off[trial][field], (trial, field)
  # Without it each population compiled its programs; with it the second
  # found them compiled by the thread that ran during the first.
  assert {o['programs'] for o in off.values()} == {'compiled'}
  assert {t: o['programs'] for t, o in on.items()} == {
      'pop32-s3': 'compiled', 'pop32-s7': 'compiled',
      'pop40-s3': 'ahead', 'pop40-s7': 'ahead'}


def test_waiting_for_programs_compiled_ahead_counts_as_compiling(
    monkeypatch):
  # The executor's accounting alone: a compile that outlasts the task before
  # it makes the next task wait, and that wait is its compile time.
  import time
  monkeypatch.setattr(executors.worker, 'compile_population',
                      lambda *args: time.sleep(0.6))
  monkeypatch.setattr(executors.worker, 'run_population', lambda *args: {
      f'{args[1]}-t': {'status': 'ok', 'compile_s': 0.1, 'wall_s': 1.0}})
  tasks = [executors.Task(name, {}, name, [(f'{name}-t', 0, name)])
           for name in ('a', 'b', 'c')]
  sweep = ml_collections.ConfigDict(dict(
      compile_ahead=ml_collections.FieldReference(True, field_type=object),
      population='vmap', population_memory_gb=0.0))
  out = {t: o for _, outcomes in executors.Sequential(sweep).run(tasks)
         for t, o in outcomes.items()}
  assert out['a-t']['compile_s'] == 0.1 and out['a-t']['wall_s'] == 1.0
  for trial in ('b-t', 'c-t'):
    waited = out[trial]['compile_s'] - 0.1
    assert 0.5 < waited < 5, (trial, waited)
    assert out[trial]['wall_s'] == pytest.approx(1.0 + waited)


def test_compile_ahead_is_off_on_a_cpu_that_training_fills():
  sweep = lambda **f: ml_collections.ConfigDict(dict(
      threads_per_worker=0, **f))
  if jax.default_backend() == 'cpu':
    assert not executors.compiles_ahead(sweep(compile_ahead='auto'))
  assert executors.compiles_ahead(sweep(compile_ahead='true'))
  with pytest.raises(ValueError, match="must be 'auto', True or False; got "
                                       "'yes'"):
    executors.compiles_ahead(sweep(compile_ahead='yes'))
