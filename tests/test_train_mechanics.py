"""Training features in process: overfitting a few batches, transfer learning
(head re-initialised, frozen groups untouched, the rest loaded), and the
errors a bad config gets. Real TFDS data (tiny shapes and numpy folders)
and real orbax checkpoints."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.train import default_train_config, job as job_lib, loop, transfer
from train_runs import rows

TINY_BLOCKS = ('ir_r1_k3_s1_e1_c16_se0.25', 'ir_r1_k3_s2_e6_c24_se0.25')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def tiny_config(data_dir, **train) -> ml_collections.ConfigDict:
  """A two-stage EfficientNet on 32x32 shapes, a few hundred images."""
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.model = ml_collections.ConfigDict(dict(
      name='efficientnet', blocks=TINY_BLOCKS, head_width=32, dropout=0.0,
      drop_connect=0.0, bn_momentum=0.9))
  config.input = default_input_config()
  config.input.data_dir = data_dir
  config.input.shapes.update(dict(num_train=320, num_test=64))
  config.input.resolution = 32
  config.input.batch_size = config.input.eval_batch_size = 32
  config.optim = default_optim_config()
  config.optim.update(dict(optimizer='adam', learning_rate=3e-3,
                           schedule='constant'))
  config.train = default_train_config()
  config.train.update(
      {'steps': 6, 'log_every': 1, 'compilation_cache': False, **train})
  return config


def flat(tree) -> dict:
  return traverse_util.flatten_dict(jax.device_get(tree), sep='/')


@pytest.mark.slow
def test_overfit_batches_drives_the_training_loss_to_zero(data_dir,
                                                          tmp_path):
  config = tiny_config(data_dir, steps=120, overfit_batches=2, log_every=10,
                       eval_every=1000)
  loop.run(config, str(tmp_path))
  losses = [r['loss'] for r in rows(tmp_path, 'train')]
  assert losses[0] > 1.0
  assert losses[-1] < 0.05, losses


def _four_class_folder(path, rng):
  """A numpy-archive dataset of 4 classes, unlike the shapes' 6."""
  path.mkdir()
  for split, count in (('train', 96), ('test', 32)):
    np.savez(path / f'{split}.npz',
             image=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
             label=rng.integers(0, 4, count))
  return str(path)


@pytest.mark.slow
def test_transfer_reinitialises_the_head_freezes_and_loads_the_rest(
    data_dir, tmp_path):
  source_dir = str(tmp_path / 'source')
  loop.run(tiny_config(data_dir, steps=4), source_dir)
  source, _ = transfer.load_source_variables(source_dir, None,
                                             job_lib.state_template)

  config = tiny_config(data_dir, steps=3, init_from=source_dir,
                       freeze='stem,stage1')
  config.input.dataset = 'npz_folder'
  config.input.path = _four_class_folder(tmp_path / 'four',
                                         np.random.default_rng(0))
  job = job_lib.setup(config)
  start = flat(job_lib.fresh_state(job.config, job.model, job.tx).params)
  loaded = flat(source['params'])
  assert start['head/dense/kernel'].shape == (32, 4)
  assert loaded['head/dense/kernel'].shape == (32, 6)
  for name, value in start.items():
    if not name.startswith('head/'):
      np.testing.assert_array_equal(value, loaded[name], err_msg=name)

  target_dir = str(tmp_path / 'target')
  loop.run(config, target_dir)
  final, _ = transfer.load_source_variables(target_dir, None,
                                            job_lib.state_template)
  params, stats = flat(final['params']), flat(final['batch_stats'])
  source_stats = flat(source['batch_stats'])
  frozen = [n for n in params if n.startswith(('stem/', 'stage1_'))]
  assert frozen and all(
      np.array_equal(params[n], loaded[n]) for n in frozen)
  assert all(np.array_equal(v, source_stats[n]) for n, v in stats.items()
             if n.startswith(('stem/', 'stage1_')))
  trained = [n for n in params if n.startswith('stage2_')]
  assert any(not np.array_equal(params[n], loaded[n]) for n in trained)
  assert params['head/dense/kernel'].shape == (32, 4)


def test_init_from_another_architecture_names_the_leaf(data_dir, tmp_path):
  source_dir = str(tmp_path / 'source')
  loop.run(tiny_config(data_dir, steps=1), source_dir)
  config = tiny_config(data_dir, init_from=source_dir)
  config.model.head_width = 48
  job = job_lib.setup(config)
  with pytest.raises(ValueError, match="leaf 'head_conv/conv/kernel' has "
                     r'shape \(1, 1, 24, 48\) here but \(1, 1, 24, 32\)'):
    job_lib.fresh_state(job.config, job.model, job.tx)


@pytest.mark.parametrize('change, message', [
    (dict(model=dict(name='resnet5')), "unknown model 'resnet5'"),
    (dict(model=dict(num_classes=10)),
     'config.model.num_classes is 10 but the dataset has 6 classes'),
    (dict(train=dict(freeze='stage1[')), 'train.freeze: invalid regular'),
    (dict(train=dict(steps=-1)), 'train.steps must be >= 0'),
    (dict(input=dict(dataset='npz_folder', path='/nonexistent/folder')),
     "no folder of numpy archives at '/nonexistent/folder'"),
])
def test_bad_config_gets_a_clear_error(data_dir, change, message):
  config = tiny_config(data_dir)
  for section, fields in change.items():
    with config[section].unlocked():
      config[section].update(fields)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    job_lib.setup(config)


def test_mixed_precision_computes_in_bfloat16_with_float32_params(data_dir,
                                                                  tmp_path):
  config = tiny_config(data_dir, steps=2, mixed_precision=True)
  job = job_lib.setup(config)
  assert job.model.dtype == jax.numpy.bfloat16
  loop.run(config, str(tmp_path))
  final, _ = transfer.load_source_variables(str(tmp_path), None,
                                            job_lib.state_template)
  dtypes = {v.dtype for v in flat(final['params']).values()}
  assert dtypes == {np.dtype('float32')}
  assert np.isfinite(rows(tmp_path, 'test')[0]['loss'])
