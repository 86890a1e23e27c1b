"""Folders of numpy archives as a user brings them: images and masks without
labels, images alone, and damaged or inconsistent archives (dvl.data.npz_folder).
Every fixture is generated here, so nothing needs ../shared."""

import json

import numpy as np
import pytest
from PIL import Image

from dvl import draw, tasks
from dvl.data import datasets, npz_folder, pipeline
from dvl.train import run, setup
from train_runs import experiment_config


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'tfds'))


def _membranes(folder, *, counts=(40, 5), side=32, labels=False, masks=True):
  """Greyscale images whose bright pixels are class 1 of their mask."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for split, count in zip(('train', 'test'), counts):
    image = rng.integers(0, 256, (count, side, side, 1), np.uint8)
    arrays = dict(image=image)
    if masks:
      arrays['mask'] = (image[..., 0] > 127).astype(np.uint8)
    if labels:
      arrays['label'] = rng.integers(0, 2, count)
    np.savez(folder / f'{split}.npz', **arrays)
  return folder


def _input(folder, **fields):
  return pipeline._resolve(dict(dataset='npz_folder', path=str(folder),
                                **fields))


def _segment(folder, **mask_classes):
  config = experiment_config('segment', 'model=unet,dataset=shapes')
  config.model.depth = 2
  config.model.base_width = 4
  config.input.dataset = 'npz_folder'
  config.input.path = str(folder)
  config.input.resolution = 32
  config.input.val_count = 8
  config.input.batch_size = 8
  config.input.eval_batch_size = 8
  config.input.update(mask_classes)
  config.input.augment.affine_degrees = 0.0
  config.input.augment.affine_scale = 0.0
  config.train.epochs = 0.0
  config.train.steps = 6
  config.train.eval_every = 6
  config.train.log_every = 2
  config.train.compilation_cache = False
  config.task.pictures = 8
  return config


def _rows(png) -> int:
  with Image.open(png) as image:
    return round(image.size[1] / (draw.PANEL_INCHES * 80))


def test_images_and_masks_without_labels_train_with_named_classes(tmp_path):
  folder = _membranes(tmp_path / 'em')
  config = _segment(folder, mask_classes=('membrane', 'cell'))
  results = run(config, str(tmp_path / 'run'))
  assert {'test_iou_membrane', 'test_iou_cell'} <= set(results)
  assert not any('background' in k for k in results)
  # The test split has 5 images, padded to an eval batch of 8: the
  # picture shows the 5.
  assert _rows(results['pictures']) == 5


def test_mask_classes_are_needed_when_nothing_else_names_them(tmp_path):
  config = _segment(_membranes(tmp_path / 'em'))
  with pytest.raises(ValueError, match='no labels to name its mask classes.*'
                                       'config.input.mask_classes'):
    setup(config)


def test_images_alone_train_an_autoencoder(tmp_path):
  folder = _membranes(tmp_path / 'plain', masks=False, side=16)
  config = experiment_config('autoencoder', 'dataset=shapes')
  config.model.widths = (8, 16)
  config.input.dataset = 'npz_folder'
  config.input.path = str(folder)
  config.input.resolution = 16
  config.input.val_count = 8
  config.input.batch_size = 8
  config.input.eval_batch_size = 8
  config.input.augment.hflip = False
  config.train.epochs, config.train.steps = 0.0, 3
  config.train.compilation_cache = False
  config.task.pictures = 8
  results = run(config, str(tmp_path / 'run'))
  assert np.isfinite(results['test_psnr'])
  assert _rows(results['pictures']) == 5


def test_a_classifier_needs_labels(tmp_path):
  config = experiment_config('quickstart', 'runlocal')
  config.input.dataset = 'npz_folder'
  config.input.path = str(_membranes(tmp_path / 'em', side=16))
  config.input.val_count = 8
  config.input.batch_size = 8
  with pytest.raises(ValueError, match="has no labels .* classification "
                                       'model needs'):
    setup(config)


@pytest.mark.parametrize('kind', ['segmentation', 'detection',
                                  'reconstruction'])
def test_pictures_draw_only_the_real_rows_of_a_padded_batch(tmp_path, kind):
  count, rows = 3, 8
  valid = np.arange(rows) < count
  images = np.random.default_rng(0).random((rows, 16, 16, 3), np.float32)
  batch = dict(image=images, valid=valid, label=np.zeros(rows, np.int32))
  if kind == 'segmentation':
    task = tasks.Segmentation(num_classes=2, class_names=('a', 'b'))
    batch['mask'] = np.zeros((rows, 16, 16, 1), np.uint8)
    out = dict(predictions=np.zeros((rows, 16, 16), np.int32))
  elif kind == 'detection':
    task = tasks.Detection(num_classes=2, class_names=('a', 'b'),
                           image_hw=(16, 16), grid=2, boxes_per_cell=1)
    batch['boxes'] = np.zeros((rows, 2, 4), np.float32)
    batch['box_label'] = -np.ones((rows, 2), np.int32)
    out = dict(boxes=np.zeros((rows, 4, 4), np.float32),
               scores=np.zeros((rows, 4, 2), np.float32))
  else:
    task = tasks.Reconstruction()
    out = dict(inputs=images, outputs=images)
  path = task.draw(tmp_path / 'grid.png', batch, out, ('a', 'b'))
  assert _rows(path) == count


def _prepare(folder, tmp_path, **fields):
  return datasets.load_builder(_input(folder, data_dir=str(tmp_path / 'tfds'),
                                      **fields))


def _damage(tmp_path, how):
  folder = _membranes(tmp_path / 'bad', labels=True, counts=(12, 4), side=8)
  train = folder / 'train.npz'
  data = bytearray(train.read_bytes())
  if how == 'truncated':
    train.write_bytes(data[:len(data) // 2])
  elif how == 'garbage':
    train.write_bytes(b'this is not a zip archive\n' * 20)
  elif how == 'bit_rot':  # the zip directory intact, an array's bytes not
    start = data.index(b'\x93NUMPY') + 200
    data[start:start + 16] = bytes(16)
    train.write_bytes(bytes(data))
  return folder, train


@pytest.mark.parametrize('how, message', [
    ('truncated', 'is not a readable numpy archive .*truncated or corrupt'),
    ('garbage', 'is not a readable numpy archive .*File is not a zip file'),
    ('bit_rot', 'is not a readable numpy archive .*Bad CRC-32'),
])
def test_a_damaged_archive_is_named(tmp_path, how, message):
  folder, train = _damage(tmp_path, how)
  with pytest.raises(ValueError, match=f'{train}.* {message}'):
    _prepare(folder, tmp_path)


def _write(folder, name, **arrays):
  folder.mkdir(parents=True, exist_ok=True)
  np.savez(folder / name, **arrays)


def _images(count, side=8, dtype=np.uint8):
  return np.zeros((count, side, side, 3), dtype)


@pytest.mark.parametrize('files, message', [
    ({'train.npz': dict(image=_images(4, dtype=np.float32),
                        label=np.zeros(4, int))},
     r"train.npz: image must be uint8 \(N, H, W, 1 or 3\); got float32 "
     r".*astype\(np.uint8\)"),
    ({'train-00.npz': dict(image=_images(4), label=np.zeros(4, int)),
      'train-01.npz': dict(image=_images(4, side=6), label=np.zeros(4, int))},
     r'train-01.npz: array image is uint8 with examples of shape \(6, 6, 3\),'
     r' but in .*train-00.npz it is uint8 with examples of shape \(8, 8, 3\)'),
    ({'train-00.npz': dict(image=_images(4), label=np.zeros(4, int)),
      'train-01.npz': dict(image=_images(4), label=np.zeros(4, float))},
     'train-01.npz: array label is float64 .* in .*train-00.npz it is int64'),
    ({'train.npz': dict(image=_images(4), label=np.zeros(4, int)),
      'test.npz': dict(image=_images(4))},
     r"train.npz has arrays \['image', 'label'\] but .*test.npz has "
     r"\['image'\]; every archive of the folder needs the same arrays"),
    ({'train.npz': dict(image=_images(4), label=np.zeros(3, int))},
     r"train.npz: its arrays have different lengths \{'image': 4, 'label': "
     r"3\}"),
    ({'train.npz': dict(label=np.zeros(3, int))},
     r"train.npz lacks the array image \(it has \['label'\]\)"),
])
def test_inconsistent_archives_are_named(tmp_path, files, message):
  for name, arrays in files.items():
    _write(tmp_path / 'data', name, **arrays)
  with pytest.raises(ValueError, match=message):
    _prepare(tmp_path / 'data', tmp_path)


def test_a_label_outside_the_named_classes_is_named(tmp_path):
  _write(tmp_path / 'data', 'train.npz', image=_images(4),
         label=np.array([0, 1, 2, 1]))
  with pytest.raises(ValueError, match=r'train.npz, example 2: label 2 is '
                                       r'not a class index in \[0, 2\)'):
    _prepare(tmp_path / 'data', tmp_path, class_names=('cat', 'dog'))


def test_an_empty_folder_says_what_to_put_there(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match=r"no <split>.npz .* in "
                                              r"'.*empty' \(it holds nothing\)"):
    _prepare(tmp_path / 'empty', tmp_path)
  (tmp_path / 'empty' / 'notes.txt').write_text('x')
  with pytest.raises(FileNotFoundError, match=r'it holds only notes.txt'):
    _prepare(tmp_path / 'empty', tmp_path)


def test_a_damaged_archive_leaves_what_was_prepared(tmp_path):
  folder = _membranes(tmp_path / 'em', labels=True, counts=(12, 4), side=8)
  builder = _prepare(folder, tmp_path)
  prepared = builder.data_path
  assert builder.is_prepared()
  data = (folder / 'train.npz').read_bytes()
  (folder / 'train.npz').write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match='not a readable numpy archive'):
    _prepare(folder, tmp_path)
  assert (prepared / 'dataset_info.json').is_file()
  (folder / 'train.npz').write_bytes(data)
  again = _prepare(folder, tmp_path)
  assert again.is_prepared()
  assert len(list(again.as_dataset(split='train'))) == 12
