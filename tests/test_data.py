"""The TFDS datasets and the pipeline: real TFDS reading, small data sets."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dvl.data import datasets
from dvl.data import default_input_config
from dvl.data import make_pipeline
from dvl.data import npz_folder
from dvl.data import shapes
from train_runs import SHARED_DATA, needs_shared_data

_needs = needs_shared_data


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _shapes_config(data_dir, **overrides):
  cfg = default_input_config()
  cfg.data_dir = data_dir
  cfg.shapes.update(dict(image_size=16, num_train=300, num_test=70))
  cfg.batch_size, cfg.eval_batch_size = 32, 32
  cfg.update(overrides)
  return cfg


def _digest(images):
  return {row.tobytes() for row in np.asarray(images)}


def test_shapes_are_deterministic_per_seed_and_differ_across_seeds():
  render = lambda seed: shapes.render(np.random.default_rng(seed), 20, 24)
  first, again, other = render(0), render(0), render(1)
  for key in first:
    np.testing.assert_array_equal(first[key], again[key])
  assert not np.array_equal(first['image'], other['image'])
  assert len(set(first['label'])) > 2


def test_shapes_masks_lie_inside_boxes_of_their_class():
  arrays = shapes.render(np.random.default_rng(5), 50, 32)
  np.testing.assert_array_equal(arrays['box_label'][:, 0], arrays['label'])
  for mask, boxes, labels in zip(arrays['mask'][..., 0], arrays['boxes'],
                                 arrays['box_label']):
    for y, x in zip(*np.nonzero(mask)):
      inside = ((boxes[:, 0] <= x) & (x < boxes[:, 2]) & (boxes[:, 1] <= y)
                & (y < boxes[:, 3]) & (labels == mask[y, x] - 1))
      assert inside.any(), (x, y, mask[y, x])
    real = labels >= 0
    assert np.isnan(boxes[~real]).all() and not np.isnan(boxes[real]).any()


def test_shapes_configs_do_not_collide(data_dir):
  small = shapes.Shapes(config=shapes.ShapesConfig.make(16, 10, 5),
                        data_dir=data_dir)
  large = shapes.Shapes(config=shapes.ShapesConfig.make(24, 10, 5),
                        data_dir=data_dir)
  other = shapes.Shapes(config=shapes.ShapesConfig.make(16, 10, 5, seed=1),
                        data_dir=data_dir)
  assert len({small.data_dir, large.data_dir, other.data_dir}) == 3
  default = shapes.Shapes(data_dir=data_dir)
  explicit = shapes.Shapes(config=shapes.ShapesConfig.make(), data_dir=data_dir)
  assert default.data_dir == explicit.data_dir


def test_shapes_pipeline_facts_and_batches(data_dir):
  cfg = _shapes_config(data_dir, with_masks=True, with_boxes=True)
  pipe = make_pipeline(cfg, seed=0)
  assert (pipe.num_train, pipe.num_val, pipe.num_test) == (270, 30, 70)
  assert pipe.steps_per_epoch == 270 // 32 and pipe.num_classes == 6
  assert pipe.class_names == shapes.CLASS_NAMES
  batch = next(pipe.train_iter())
  assert batch['image'].shape == (32, 16, 16, 3) == (32,) + pipe.image_shape
  assert batch['image'].dtype == np.float32 and batch['label'].dtype == np.int32
  assert batch['mask'].shape == (32, 16, 16)
  assert batch['boxes'].shape == (32, 8, 4)
  np.testing.assert_array_equal(batch['box_label'][:, 0], batch['label'])
  assert 'soft_label' not in batch


def test_val_split_is_disjoint_from_train_and_deterministic(data_dir):
  cfg = _shapes_config(data_dir, val_count=50, normalize='none')
  first, second = make_pipeline(cfg, seed=0), make_pipeline(cfg, seed=9)
  val = np.concatenate([b['image'][b['valid']] for b in first.eval_iter('val')])
  train = np.concatenate([b['image'][b['valid']]
                          for b in first.eval_iter('train')])
  again = np.concatenate([b['image'][b['valid']]
                          for b in second.eval_iter('val')])
  assert len(val) == 50 and len(train) == 250
  assert not _digest(val) & _digest(train)
  np.testing.assert_array_equal(val, again)


def test_resumed_training_repeats_the_uninterrupted_batches(data_dir):
  cfg = _shapes_config(data_dir, zca=True, zca_epsilon=0.1)
  cfg.augment.update(dict(hflip=True, crop='inception', color_jitter=0.3,
                          randaugment_layers=2, affine_degrees=10,
                          mixup_alpha=0.2, cutmix_alpha=1.0))
  pipe = make_pipeline(cfg, seed=4)
  stream = pipe.train_iter(0)
  steps = pipe.steps_per_epoch + 3  # Crosses an epoch boundary.
  uninterrupted = [next(stream) for _ in range(steps)]
  resumed = pipe.train_iter(pipe.steps_per_epoch - 2)
  for expected in uninterrupted[pipe.steps_per_epoch - 2:]:
    batch = next(resumed)
    for key in expected:
      np.testing.assert_array_equal(batch[key], expected[key], err_msg=key)
  soft = uninterrupted[0]['soft_label']
  np.testing.assert_allclose(soft.sum(axis=1), 1, atol=1e-5)
  other = next(dataclasses.replace(pipe, seed=5).train_iter(0))
  assert not np.array_equal(other['image'], uninterrupted[0]['image'])


def test_epoch_visits_every_training_example_once(data_dir):
  cfg = _shapes_config(data_dir, normalize='none', val_count=12)
  cfg.batch_size = 36  # 288 training examples: exactly 8 steps.
  pipe = make_pipeline(cfg, seed=1)
  stream = pipe.train_iter(0)
  seen = np.concatenate([next(stream)['image'] for _ in range(8)])
  train = np.concatenate([b['image'][b['valid']]
                          for b in pipe.eval_iter('train')])
  assert _digest(seen) == _digest(train) and len(_digest(seen)) == 288


def test_eval_covers_every_example_once_with_padding(data_dir):
  cfg = _shapes_config(data_dir, eval_batch_size=32)
  pipe = make_pipeline(cfg, seed=0)
  batches = list(pipe.eval_iter('test'))
  assert len(batches) == 3 and all(len(b['label']) == 32 for b in batches)
  valid = np.concatenate([b['valid'] for b in batches])
  assert valid.sum() == 70 and not valid[70:].any()
  images = np.concatenate([b['image'] for b in batches])[valid]
  assert len(_digest(images)) == 70
  assert len(list(pipe.eval_iter('test', drop_remainder=True))) == 2


def test_normalisation_statistics_come_from_training_images(data_dir):
  pipe = make_pipeline(_shapes_config(data_dir), seed=0)
  images = np.concatenate([b['image'][b['valid']]
                           for b in pipe.eval_iter('train')])
  np.testing.assert_allclose(images.mean(axis=(0, 1, 2)), 0, atol=1e-3)
  np.testing.assert_allclose(images.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_pipelines_of_one_dataset_share_its_decoded_arrays(data_dir):
  from dvl.data import pipeline as pipeline_lib
  base = make_pipeline(_shapes_config(data_dir, resolution=16), seed=0)
  larger = make_pipeline(_shapes_config(data_dir, resolution=24,
                                        batch_size=16), seed=3)
  assert larger.reader is base.reader  # decoded once
  assert next(larger.train_iter())['image'].shape == (16, 24, 24, 3)
  other_val = make_pipeline(_shapes_config(data_dir, val_count=40), seed=0)
  assert other_val.reader is not base.reader
  assert other_val.num_val == 40
  # A cached pipeline delivers what a freshly decoded one does.
  cached = [b['image'] for b in larger.eval_iter('val')]
  pipeline_lib._memory_readers.clear()
  pipeline_lib._fitted.clear()
  fresh = make_pipeline(_shapes_config(data_dir, resolution=24,
                                       batch_size=16), seed=3)
  assert fresh.reader is not base.reader
  np.testing.assert_array_equal(fresh.transforms.mean, larger.transforms.mean)
  for got, want in zip(cached, [b['image'] for b in fresh.eval_iter('val')]):
    np.testing.assert_array_equal(got, want)


@_needs('oxford_pets_3class')
def test_npz_folder_reads_pets_with_boxes_and_masks(data_dir):
  config = npz_folder.NpzFolderConfig.make(SHARED_DATA / 'oxford_pets_3class')
  builder = npz_folder.NpzFolder(config=config, data_dir=data_dir)
  builder.download_and_prepare(**datasets._PREPARE)
  splits = builder.info.splits
  assert (splits['train'].num_examples, splits['test'].num_examples) == (300,
                                                                         298)
  train = list(tfds.as_numpy(builder.as_dataset('train')))
  box_counts = [len(ex['boxes']) for ex in train]
  assert sum(box_counts) == 297 and box_counts.count(0) == 4
  assert not any(np.isnan(ex['boxes']).any() for ex in train)
  bengal = next(ex for ex in train if ex['name'] == b'Bengal_105')
  np.testing.assert_array_equal(bengal['box_label'], [2, 2])
  assert set(np.unique(train[0]['mask'])) <= {1, 2, 3}
  test_boxes = [len(ex['boxes']) for ex in tfds.as_numpy(
      builder.as_dataset('test'))]
  assert sum(test_boxes) == 0


@_needs('oxford_pets_3class')
def test_pets_local_pipeline_delivers_resized_masks_and_boxes(data_dir):
  cfg = default_input_config()
  cfg.update(dict(dataset='pets_local', data_dir=data_dir, resolution=64,
                  batch_size=16, with_masks=True, with_boxes=True,
                  max_boxes=2))
  cfg.augment.hflip = True
  pipe = make_pipeline(cfg, seed=0)
  assert pipe.class_names == ('Abyssinian', 'american_bulldog', 'Bengal')
  batch = next(pipe.train_iter())
  assert batch['image'].shape == (16, 64, 64, 3)
  assert set(np.unique(batch['mask'])) <= {0, 1, 2, 3}
  real = batch['box_label'] >= 0
  assert real.any() and (batch['boxes'][real] <= 64).all()


@_needs('mnist')
def test_mnist_local_counts(data_dir):
  cfg = default_input_config()
  cfg.update(dict(dataset='mnist_local', data_dir=data_dir, val_count=0,
                  normalize='none'))
  pipe = make_pipeline(cfg, seed=0)
  assert (pipe.num_train, pipe.num_test) == (60_000, 10_000)
  assert pipe.image_shape == (28, 28, 1) and pipe.num_classes == 10
  first = next(pipe.eval_iter('test'))
  assert first['label'][0] in range(10)


def test_unknown_dataset_lists_the_choices():
  cfg = default_input_config()
  cfg.dataset = 'cifr10'
  with pytest.raises(ValueError, match=r"unknown dataset 'cifr10'.*cifar10.*"
                     r"shapes, npz_folder"):
    make_pipeline(cfg, seed=0)


def test_missing_catalog_data_says_how_to_prepare(tmp_path):
  cfg = default_input_config()
  cfg.update(dict(dataset='mnist', data_dir=str(tmp_path)))
  with pytest.raises(FileNotFoundError, match=r"'mnist' is not prepared in "
                     r"data_dir .*tfds build mnist"):
    make_pipeline(cfg, seed=0)


def test_missing_manual_download_names_the_manual_dir(tmp_path):
  cfg = default_input_config()
  cfg.update(dict(dataset='imagenet2012', data_dir=str(tmp_path),
                  resolution=32))
  with pytest.raises(FileNotFoundError, match=r'manual download.*'
                     r'downloads/manual.*ILSVRC2012_img_train.tar'):
    make_pipeline(cfg, seed=0)


def test_missing_npz_folder_says_where_it_looked(tmp_path):
  cfg = default_input_config()
  cfg.update(dict(dataset='cifar10_local', path=str(tmp_path / 'nowhere'),
                  data_dir=str(tmp_path)))
  with pytest.raises(FileNotFoundError, match=r'no folder of numpy archives '
                     r'at .*nowhere.*config.input.path'):
    make_pipeline(cfg, seed=0)


def test_misspelled_config_field_is_an_error():
  with pytest.raises(KeyError, match='bach_size'):
    make_pipeline(dict(bach_size=3), seed=0)


def test_catalog_dataset_through_tfds_mock_data():
  cfg = default_input_config()
  cfg.update(dict(dataset='cifar10', batch_size=8, eval_batch_size=16,
                  val_count=0))
  cfg.augment.update(dict(hflip=True, crop='pad_crop'))
  with tfds.testing.mock_data(num_examples=40):
    pipe = make_pipeline(cfg, seed=0)
    batch = next(pipe.train_iter())
    evaluated = list(pipe.eval_iter('test'))
  assert pipe.num_classes == 10 and pipe.image_shape == (32, 32, 3)
  assert batch['image'].shape == (8, 32, 32, 3)
  assert sum(b['valid'].sum() for b in evaluated) == pipe.num_test == 40


def test_variable_size_catalog_dataset_streams(tmp_path):
  cfg = default_input_config()
  cfg.update(dict(dataset='imagenet2012', data_dir=str(tmp_path),
                  resolution=24, batch_size=4, eval_batch_size=8,
                  val_count=0, shuffle_buffer=8, mean=(0.5, 0.5, 0.5),
                  std=(0.25, 0.25, 0.25)))
  cfg.augment.update(dict(crop='inception', hflip=True))
  with tfds.testing.mock_data(num_examples=12):
    pipe = make_pipeline(cfg, seed=0)
    stream = pipe.train_iter(0)
    batches = [next(stream) for _ in range(5)]
    resumed = next(pipe.train_iter(4))
  assert pipe.num_classes == 1000 and pipe.image_shape == (24, 24, 3)
  assert batches[0]['image'].shape == (4, 24, 24, 3)
  np.testing.assert_array_equal(resumed['image'], batches[4]['image'])


def test_training_batches_without_autotuning_are_the_batches_with_it(
    tmp_path):
  """The training iterator turns tf.data's autotuning off (deleting an
  autotuned iterator mid-stream waits for its tuning thread); the seeded,
  deterministic augmentation gives the same batches either way."""
  import tensorflow as tf
  from dvl.data import reader
  config = default_input_config()
  config.dataset = 'shapes'
  config.data_dir = str(tmp_path)
  config.shapes.update(dict(num_train=256, num_test=64, image_size=32))
  config.val_count = 64
  config.batch_size = 32
  config.augment.hflip = True
  config.augment.crop = 'pad_crop'
  pipeline = make_pipeline(config, seed=3)
  ds = pipeline.reader.train_batches(pipeline.seed, 0, pipeline.batch_size)
  ds = ds.map(lambda *a: pipeline.transforms.train(pipeline.seed, *a),
              num_parallel_calls=tf.data.AUTOTUNE).take(4)
  tuned = list(ds.as_numpy_iterator())
  plain = reader.without_autotune(ds)
  assert plain.options().autotune.enabled is False
  assert ds.options().autotune.enabled is not False
  for a, b in zip(tuned, plain.as_numpy_iterator(), strict=True):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  # And the pipeline's own training iterator draws those batches.
  for a, b in zip(tuned, pipeline.train_iter(), strict=False):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
