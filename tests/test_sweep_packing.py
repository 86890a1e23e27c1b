"""Several pool workers on one accelerator: each one's memory share
(``sweep.memory_fraction``), its checks, and packed workers computing
what one process computes. Real spawned workers; on a CPU the shares are
checked as arithmetic only."""

import ml_collections
import pytest

import sweep_standins
from dvl.data import make_pipeline
from dvl.sweep import executors, search
from dvl.train import population
from train_runs import experiment_config

SEEDS = (0, 1)


def _sweep(**fields):
  sweep = dict(executor='pool', workers=2, threads_per_worker=1,
               gpus_per_worker=0, max_retries=0, population='vmap',
               population_memory_gb=0.0, ray_address='', memory_fraction=0.0,
               compile_ahead=ml_collections.FieldReference(
                   'auto', field_type=object))
  sweep.update(fields)
  return ml_collections.ConfigDict(sweep)


def _outcomes(executor, tasks) -> dict:
  try:
    return {trial: outcome for _, outcomes in executor.run(tasks)
            for trial, outcome in outcomes.items()}
  finally:
    executor.close()


@pytest.mark.parametrize('fields,message', [
    (dict(memory_fraction=-0.1), r'must be in \(0, 1\].*got -0.1'),
    (dict(memory_fraction=1.5), r'must be in \(0, 1\].*got 1.5'),
    (dict(workers=3, memory_fraction=0.4),
     '3 pool workers share each device and sweep.memory_fraction = 0.4 '
     'gives each 40% of its memory: 120% in all. Use '
     'sweep.memory_fraction <= 0.3333 or fewer sweep.workers'),
])
def test_memory_shares_that_do_not_fit_a_device_are_refused(fields,
                                                            message):
  with pytest.raises(ValueError, match=message):
    executors.check_memory_fraction(_sweep(**fields))


def test_memory_shares_that_fit_are_accepted():
  executors.check_memory_fraction(_sweep(workers=4, memory_fraction=0.25))
  # Workers with their own GPUs each take a share of their own device.
  executors.check_memory_fraction(_sweep(workers=4, memory_fraction=0.9,
                                         gpus_per_worker=1))


def test_the_search_refuses_a_share_before_it_trains(tmp_path):
  config = experiment_config('scaling_search', 'runlocal')
  config.sweep.executor = 'pool'
  config.sweep.workers = 4
  config.sweep.memory_fraction = 0.3
  with pytest.raises(ValueError, match='4 pool workers share each device'):
    search.run(config, str(tmp_path / 'sweep'))
  assert not (tmp_path / 'sweep' / 'results.jsonl').exists()
  config.sweep.memory_fraction = 0.0
  config.sweep.compile_ahead = True
  with pytest.raises(ValueError, match='pool and Ray workers compile their '
                                       'own programs'):
    search.run(config, str(tmp_path / 'sweep'))


def test_each_pool_worker_starts_jax_with_its_memory_share(tmp_path):
  tasks = [executors.Task(name, ml_collections.ConfigDict(), str(
      tmp_path / name), [(name, 0, str(tmp_path / name))])
           for name in ('a', 'b', 'c')]
  out = _outcomes(executors.Pool(_sweep(memory_fraction=0.45),
                                 sweep_standins.environment), tasks)
  for outcome in out.values():
    assert outcome['env'] == {'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.45',
                              'XLA_PYTHON_CLIENT_PREALLOCATE': 'true'}
    assert not outcome['jax_loaded']
  # Without a share, XLA's own defaults stay.
  out = _outcomes(executors.Pool(_sweep(), sweep_standins.environment),
                  tasks[:1])
  assert out['a']['env'] == dict.fromkeys(sweep_standins.XLA_MEMORY)


def _two_tasks(tmp_path) -> list:
  """Two networks (the runlocal proxy at 32 and at 40 pixels), two seeds
  each, four steps."""
  tasks = []
  for side in (32, 40):
    config = experiment_config('scaling_search', 'runlocal')
    with config.unlocked():
      del config['sweep']
    config.job = 'train'
    config.input.data_dir = str(tmp_path / 'tfds')
    config.input.resolution = side
    config.train.steps = 4
    config.train.compilation_cache = False
    # Momentum SGD, as tests/test_population.py explains: Adam turns the
    # rounding differences of near-zero gradients into full-size updates.
    config.optim.optimizer = 'momentum'
    config.optim.learning_rate = 0.05
    config.optim.weight_decay = 0.0
    name = f'pop{side}'
    tasks.append(executors.Task(
        name, config, str(tmp_path / name),
        [(f'{name}-s{s}', s, str(tmp_path / f'{name}-s{s}'))
         for s in SEEDS]))
  make_pipeline(tasks[0].config.input, seed=0)  # as the sweep's planner does
  return tasks


@pytest.mark.slow
def test_packed_pool_workers_compute_what_one_process_computes(tmp_path):
  population.forget_compiled()
  alone = _outcomes(executors.Sequential(_sweep(executor='sequential')),
                    _two_tasks(tmp_path / 'alone'))
  packed = _outcomes(executors.Pool(_sweep(workers=2, threads_per_worker=1)),
                     _two_tasks(tmp_path / 'packed'))
  assert sorted(packed) == sorted(alone) and len(alone) == 4
  for trial, outcome in packed.items():
    assert outcome['status'] == 'ok' == alone[trial]['status']
    assert outcome['steps'] == alone[trial]['steps'] == 4
    # The workers run XLA on one thread each, this process on every core:
    # sums may round differently, so the loss agrees to float tolerance
    # and an image whose top two logits nearly tie may change its answer
    # (at most two of the 128 test images).
    assert outcome['test_loss'] == pytest.approx(alone[trial]['test_loss'],
                                                 rel=1e-4)
    assert outcome['test_accuracy'] == pytest.approx(
        alone[trial]['test_accuracy'], abs=2 / 128 + 1e-9)
