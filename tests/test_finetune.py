"""Fine-tuning imported Keras weights: the model, its preprocessing and its
weights come from the import; the head is new; the run trains."""

import os

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from flax import traverse_util  # noqa: E402

from dvl.jobs import import_weights  # noqa: E402
from dvl.convert import imported, preprocess  # noqa: E402
from dvl.train import job as job_lib, loop, steps, transfer  # noqa: E402
from test_convert_keras import Case, make_reference  # noqa: E402
from train_runs import experiment_config, needs_shared_data, summary  # noqa: E402

PETS = needs_shared_data('oxford_pets_3class')

MOBILENET = Case('mobilenet_v1', 'MobileNet', 'mobilenet', alpha=0.25)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """A Keras MobileNet (alpha 0.25) imported into dvl: its workdir."""
  directory = tmp_path_factory.mktemp('mobilenet')
  reference = make_reference(MOBILENET, directory)
  workdir = directory / 'imported'
  import_weights.run(experiment_config(
      'import_weights',
      f'model=mobilenet_v1,alpha=0.25,path={reference.path}'), str(workdir))
  return workdir


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def finetune_config(source, data_dir, *args):
  config = experiment_config('finetune', ','.join(
      (f'init={source}', 'dataset=pets', 'runlocal', *args)))
  config.input.data_dir = data_dir
  config.train.compilation_cache = False
  return config


def flat(tree) -> dict:
  return traverse_util.flatten_dict(jax.device_get(tree), sep='/')


@PETS
def test_setup_takes_model_preprocessing_and_weights_from_the_import(
    source, data_dir):
  config = finetune_config(source, data_dir)
  assert config.model.name == 'mobilenet_v1' and config.model.width == 0.25
  job = job_lib.setup(config)
  spec = imported.load(source).info['preprocessing']
  assert dict(job.config.run.preprocessing) == preprocess.spec(spec)
  assert job.config.input.normalize == 'none'
  assert job.config.run.num_classes == 3
  start = flat(job_lib.fresh_state(job.config, job.model, job.tx,
                                   job.pipeline).params)
  loaded = flat(imported.load(source).variables['params'])
  assert start['head/dense/kernel'].shape[-1] == 3
  assert loaded['head/dense/kernel'].shape[-1] == 1000
  for name, value in start.items():
    if not name.startswith('head/'):
      np.testing.assert_array_equal(value, loaded[name], err_msg=name)


def test_steps_apply_the_imported_preprocessing():
  images = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 3)),
                       jnp.float32)
  spec = preprocess.spec('caffe')
  expected = preprocess.apply(spec, np.asarray(images) * 255.0)
  np.testing.assert_allclose(steps.model_input(images, spec), expected,
                             rtol=1e-6, atol=1e-4)
  assert steps.model_input(images, None) is images


@pytest.mark.slow
@PETS
def test_finetune_run_trains_the_backbone_slowly_and_the_head(
    source, data_dir, tmp_path):
  config = finetune_config(source, data_dir)
  results = loop.run(config, str(tmp_path))
  assert results['steps'] == 4 and 0 <= results['test_accuracy'] <= 1
  assert summary(tmp_path)['model'] == 'mobilenet_v1'
  final, _ = transfer.load_source_variables(str(tmp_path), None,
                                            job_lib.state_template)
  params = flat(final['params'])
  loaded = flat(imported.load(source).variables['params'])
  moved = {n: float(np.abs(params[n] - loaded[n]).max())
           for n in params if not n.startswith('head/')}
  assert max(moved.values()) > 0  # the backbone trains too


@PETS
def test_scratch_uses_the_same_model_without_the_weights(source, data_dir):
  config = finetune_config(source, data_dir, 'scratch')
  assert not config.train.init_from and not config.train.preprocessing
  job = job_lib.setup(config)
  assert job.config.model.width == 0.25
  assert job.config.run.preprocessing is None


def test_bad_init_is_refused(tmp_path, data_dir):
  with pytest.raises(ValueError, match='neither imported.json'):
    experiment_config('finetune', f'init={tmp_path}')
  config = experiment_config('quickstart', 'runlocal')
  config.train.init_from = str(tmp_path)
  config.train.preprocessing = 'from_init'
  config.input.data_dir = data_dir
  with pytest.raises(FileNotFoundError, match='holds no imported.json'):
    job_lib.setup(config)
