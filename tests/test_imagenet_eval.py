"""The imagenet_eval job on TFDS mock data: imported weights must predict
what the Keras model they came from predicts, after the reference's centre
crop and resize computed here by hand. A MobileNet (alpha 0.25) keeps it
fast; ``resize=bicubic`` takes EfficientNet's path through the crop."""

import os

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from dvl.jobs import import_weights  # noqa: E402
from dvl.jobs import imagenet_eval  # noqa: E402
from test_convert_keras import (Case, _keras_input, _keras_model,  # noqa: E402
                                _randomize, _set_statistics, keras)
from train_runs import experiment_config, needs_shared_data  # noqa: E402


CASE = Case('mobilenet_v1', 'MobileNet', 'mobilenet', alpha=0.25)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """A randomised Keras MobileNet and its import (workdir)."""
  case = CASE
  directory = tmp_path_factory.mktemp('mobilenet')
  rng = np.random.default_rng(0)
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  model = _keras_model(case)
  _randomize(model, rng)
  calibration = rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
  _set_statistics(model, _keras_input(case, calibration), rng)
  weights = directory / 'mobilenet.weights.h5'
  model.save_weights(weights)
  import_weights.run(experiment_config(
      'import_weights', f'model=mobilenet_v1,alpha=0.25,path={weights}'),
              str(directory / 'imported'))
  return model, directory / 'imported'


def reference_input(image: np.ndarray, side: int = 224) -> np.ndarray:
  """The TF reference's evaluation crop, computed by hand: 224/256 of the
  shorter side, centred (odd remainders go to the bottom and right), then a
  bicubic resize."""
  height, width = image.shape[:2]
  crop = int(side / (side + 32) * min(height, width))
  top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
  window = image[top:top + crop, left:left + crop].astype(np.float32)
  return np.asarray(tf.image.resize(window, [side, side], method='bicubic'))


def test_imported_weights_predict_what_keras_predicts(source, tmp_path):
  model, checkpoint = source
  config = experiment_config(
      'imagenet_eval', f'model=mobilenet_v1,checkpoint={checkpoint},'
      f'batch=4,save_predictions,resize=bicubic,data_dir={tmp_path / "tfds"}')
  with tfds.testing.mock_data(num_examples=6):
    results = imagenet_eval.run(config, str(tmp_path / 'eval'))
    examples = list(tfds.load('imagenet2012', split='validation',
                              shuffle_files=False).as_numpy_iterator())
  saved = np.load(tmp_path / 'eval' / 'predictions.npz')
  labels = np.array([ex['label'] for ex in examples])
  np.testing.assert_array_equal(saved['label'], labels)
  sizes = {ex['image'].shape[:2] for ex in examples}
  assert len(sizes) > 1  # images of several sizes went through the crop

  inputs = np.stack([reference_input(ex['image']) for ex in examples])
  logits = np.asarray(model(_keras_input(CASE, inputs), training=False))
  order = np.argsort(-logits, axis=1)
  np.testing.assert_array_equal(saved['top5'][:, 0], order[:, 0])
  for row, (ours, theirs) in enumerate(zip(saved['top5'], order)):
    gap = logits[row, theirs[4]] - logits[row, theirs[5]]
    if gap > 1e-4 * np.abs(logits[row]).max():
      assert set(ours) == set(theirs[:5]), row
  top1 = np.mean(order[:, 0] == labels)
  top5 = np.mean([label in row[:5] for label, row in zip(labels, order)])
  assert results['examples'] == 6
  assert results['top1'] == pytest.approx(top1)
  assert results['top5'] == pytest.approx(top5)
  assert (results['resize'], results['resolution']) == ('bicubic', 224)


@needs_shared_data('mnist')
def test_dataset_with_other_classes_is_refused(source, tmp_path):
  _, checkpoint = source
  config = experiment_config(
      'imagenet_eval', f'checkpoint={checkpoint},dataset=mnist_local,'
      f'split=test,data_dir={tmp_path}')
  with pytest.raises(ValueError, match='predicts 1000 classes but '
                     'mnist_local has 10'):
    imagenet_eval.run(config, str(tmp_path / 'eval'))


def test_missing_imagenet_names_the_manual_dir(source, tmp_path):
  _, checkpoint = source
  config = experiment_config(
      'imagenet_eval', f'checkpoint={checkpoint},data_dir={tmp_path}')
  with pytest.raises(FileNotFoundError, match='manual'):
    imagenet_eval.run(config, str(tmp_path / 'eval'))


def test_a_train_workdir_is_not_an_import(tmp_path):
  config = experiment_config('imagenet_eval', f'checkpoint={tmp_path}')
  with pytest.raises(FileNotFoundError, match='import_weights run'):
    imagenet_eval.run(config, str(tmp_path / 'eval'))


def test_resize_methods_follow_the_source():
  assert imagenet_eval.resize_method('efficientnet_b3') == 'bicubic'
  assert imagenet_eval.resize_method('resnet50_v1') == 'bilinear'
  assert imagenet_eval.resize_method('mobilenet_v2') == 'bilinear'
