"""Training beyond classification: detection, segmentation and reconstruction
runs through the train job, their metrics, pictures and bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dvl import detection, models, tasks
from dvl.train import run, setup
from train_runs import experiment_config, needs_shared_data


@pytest.fixture(autouse=True)
def _data_dir(tmp_path_factory, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR',
                     str(tmp_path_factory.getbasetemp() / 'tfds'))


def _shrink(config, *, steps=8, num_train=192, num_test=64):
  """A few steps on a few hundred generated images."""
  if config.input.dataset == 'shapes':
    config.input.shapes.update(dict(num_train=num_train, num_test=num_test))
    config.input.val_count = 32
  config.input.batch_size = 16
  config.input.eval_batch_size = 32
  config.train.epochs = 0.0
  config.train.steps = steps
  config.train.eval_every = steps
  config.train.log_every = 1
  config.train.compilation_cache = False
  config.optim.warmup_epochs = 0.0
  if 'task' in config:
    config.task.pictures = 4
  return config


def _train_losses(workdir):
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [r['loss'] for r in map(json.loads, lines) if r['split'] == 'train']


def _assert_valid_png(path, min_side=100):
  with Image.open(path) as image:
    assert image.format == 'PNG'
    assert min(image.size) >= min_side


def _assert_loss_falls(workdir):
  history = _train_losses(workdir)
  assert all(np.isfinite(history)), history
  assert np.mean(history[-2:]) < np.mean(history[:2]), history


def test_yolo_run_learns_and_reports_map(tmp_path):
  config = _shrink(experiment_config('yolo_shapes'), steps=10)
  config.optim.learning_rate = 2e-3
  summary = run(config, str(tmp_path))
  _assert_loss_falls(tmp_path)
  assert 0.0 <= summary['test_map'] <= 1.0
  per_class = [summary[f'test_ap_{name}'] for name in
               ('circle', 'square', 'triangle', 'star', 'cross', 'ellipse')]
  assert np.nanmean(per_class) == pytest.approx(summary['test_map'])
  assert summary['best_val_step'] == 10 and 'val_map' in summary
  _assert_valid_png(summary['pictures'])


@needs_shared_data('oxford_pets_3class')
@pytest.mark.parametrize('model', [
    'unet', pytest.param('fcn8s', marks=pytest.mark.slow),
    pytest.param('segnet', marks=pytest.mark.slow)])
def test_segmentation_run_on_pets_learns(tmp_path, model):
  config = _shrink(experiment_config('segment', f'model={model},dataset=pets'),
                   steps=6)
  config.input.resolution = 64
  summary = run(config, str(tmp_path))
  _assert_loss_falls(tmp_path)
  for key in ('pixel_accuracy', 'mean_iou', 'foreground_iou'):
    assert 0.0 <= summary[f'test_{key}'] <= 1.0
  # Two classes, pet and background; the mean is theirs.
  ious = summary['test_iou_background'], summary['test_iou_pet']
  assert summary['test_mean_iou'] == pytest.approx(np.mean(ious))
  assert summary['test_foreground_iou'] == pytest.approx(ious[1])
  _assert_valid_png(summary['pictures'])


@pytest.mark.parametrize('mode', [
    'denoise', pytest.param('colorize', marks=pytest.mark.slow),
    pytest.param('super_resolution', marks=pytest.mark.slow)])
def test_autoencoder_runs_beat_their_input(tmp_path, mode):
  config = _shrink(experiment_config(
      'autoencoder', f'task={mode},dataset=shapes'), steps=40)
  config.input.resolution = 32
  summary = run(config, str(tmp_path))
  _assert_loss_falls(tmp_path)
  assert summary['test_psnr_gain'] == pytest.approx(
      summary['test_psnr'] - summary['test_input_psnr'])
  if mode == 'denoise':  # sigma 0.5: a few steps already clean it up
    assert summary['test_psnr_gain'] > 2.0
  _assert_valid_png(summary['pictures'])


def test_reconstruction_inputs():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(size=(2, 8, 8, 3)), jnp.float32)
  batch = {'image': images}
  key = jax.random.key(0)
  grey = tasks.Reconstruction(mode='colorize').inputs(batch, key, train=True)
  assert grey.shape == (2, 8, 8, 1)
  np.testing.assert_allclose(
      grey[1, 3, 4, 0], 0.299 * images[1, 3, 4, 0] + 0.587 * images[1, 3, 4, 1]
      + 0.114 * images[1, 3, 4, 2], rtol=1e-6)
  small = tasks.Reconstruction(mode='super_resolution', upscale=2).inputs(
      batch, key, train=True)
  np.testing.assert_allclose(small[0, 1, 2],
                             images[0, 2:4, 4:6].mean(axis=(0, 1)), rtol=1e-6)
  noisy = tasks.Reconstruction(noise_std=0.5, clip_noise=False).inputs(
      batch, key, train=True)
  assert float(jnp.std(noisy - images)) == pytest.approx(0.5, rel=0.15)
  clipped = tasks.Reconstruction(noise_std=0.5).inputs(batch, key, train=True)
  assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0


def _encode(boxes, labels, *, grid, side, num_classes):
  """A perfect YOLO output for the given boxes: a cell's first predictor
  gives its box with confidence 1, its class scores 1."""
  pred = np.zeros((len(boxes), grid, grid, 10 + num_classes), np.float32)
  for n, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
    for (x0, y0, x1, y1), label in zip(image_boxes, image_labels):
      if label < 0:
        continue
      cx, cy = (x0 + x1) / 2 / side * grid, (y0 + y1) / 2 / side * grid
      col, row = int(cx), int(cy)
      w, h = (x1 - x0) / side, (y1 - y0) / side
      # The first predictor is responsible; the other stays silent.
      pred[n, row, col, :5] = [cx - col, cy - row, np.sqrt(w), np.sqrt(h), 1]
      pred[n, row, col, 10 + label] = 1.0
  return pred


def test_detection_metrics_of_perfect_and_of_missing_predictions():
  boxes = np.array([[[4, 4, 20, 20], [40, 36, 60, 60]],
                    [[30, 2, 50, 22], [0, 0, 0, 0]]], np.float32)
  labels = np.array([[0, 1], [2, -1]], np.int32)
  task = tasks.Detection(num_classes=3, class_names=('a', 'b', 'c'),
                         image_hw=(64, 64), grid=4, boxes_per_cell=2)
  batch = {'boxes': boxes, 'box_label': labels,
           'valid': np.array([True, True])}
  perfect = _encode(boxes, labels, grid=4, side=64, num_classes=3)
  acc = task.update(task.start(), task.eval_outputs(
      jnp.asarray(perfect), batch, None), batch)
  results = task.finish(acc)
  assert results['map'] == pytest.approx(1.0)
  # The yolo loss of a perfect answer is zero.
  assert results['loss'] == pytest.approx(0.0, abs=1e-6)
  # Without the second image's prediction, class c is never found.
  missing = perfect.copy()
  missing[1] = 0.0
  acc = task.update(task.start(), task.eval_outputs(
      jnp.asarray(missing), batch, None), batch)
  results = task.finish(acc)
  assert results['ap_c'] == 0.0 and results['ap_a'] == pytest.approx(1.0)
  assert results['map'] == pytest.approx(2 / 3)


def test_segmentation_eval_leaves_out_padding_rows():
  task = tasks.Segmentation(num_classes=2, class_names=('background', 'pet'))
  labels = np.array([[[0, 1], [1, 1]], [[0, 0], [0, 0]]], np.int32)
  logits = jax.nn.one_hot(np.array([[[0, 1], [0, 1]], [[1, 1], [1, 1]]]), 2)
  batch = {'mask': labels, 'valid': np.array([True, False])}
  results = task.finish(task.update(
      task.start(), task.eval_outputs(logits * 10.0, batch, None), batch))
  # Only the first image counts: 3 of 4 pixels right; IoU pet 2/3, bg 1/2.
  assert results['pixel_accuracy'] == pytest.approx(0.75)
  assert results['iou_pet'] == pytest.approx(2 / 3)
  assert results['iou_background'] == pytest.approx(1 / 2)


def _npz_boxes(path, *, bad_example):
  rng = np.random.default_rng(0)
  for split, count in (('train', 40), ('test', 8)):
    boxes = np.full((count, 1, 4), [4, 4, 20, 20], np.float32)
    if split == 'train':
      boxes[bad_example, 0] = [10, 10, 10, 30]  # zero width
    np.savez(path / f'{split}.npz',
             image=rng.integers(0, 255, (count, 32, 32, 3), np.uint8),
             label=rng.integers(0, 2, count), boxes=boxes)


def test_a_zero_area_box_is_refused_naming_the_file_and_example(tmp_path):
  folder = tmp_path / 'boxes'
  folder.mkdir()
  _npz_boxes(folder, bad_example=13)
  config = _shrink(experiment_config('yolo_shapes'))
  config.input.dataset = 'npz_folder'
  config.input.path = str(folder)
  config.input.resolution = 32
  config.input.val_count = 8
  config.model.stages = ('3x8', 'M 3x8', 'M 3x8')
  config.model.grid = 4
  with pytest.raises(ValueError, match=r"train.npz, example 13: box 0: "
                                       r".* has zero area .*box_label -1"):
    setup(config)


@needs_shared_data('oxford_pets_3class')
def test_an_input_the_unet_depth_cannot_take_names_the_valid_sizes(tmp_path):
  config = _shrink(experiment_config('segment', 'model=unet,dataset=pets'))
  config.input.resolution = 100
  with pytest.raises(ValueError, match=r'100x100 .* divisible by 2\*\*4 = 16'
                                       r'.* 96 or 112'):
    setup(config)


def test_super_resolution_target_must_divide_by_the_upscale(tmp_path):
  config = _shrink(experiment_config(
      'autoencoder', 'task=super_resolution,dataset=shapes'))
  config.input.resolution = 33
  with pytest.raises(ValueError, match='33x33 target does not divide by '
                                       'upscale 2'):
    setup(config)


def test_unknown_task_arguments_are_refused():
  with pytest.raises(ValueError, match='unknown task .*denoise, colorize'):
    experiment_config('autoencoder', 'task=inpaint')
  with pytest.raises(ValueError, match="unknown model 'unet3'"):
    experiment_config('segment', 'model=unet3')


def _tiny_classifier_run(workdir):
  config = _shrink(experiment_config('quickstart', 'runlocal'), steps=3)
  run(config, str(workdir))
  return config


@pytest.mark.slow
def test_visualize_draws_first_layer_filters_and_activations(tmp_path):
  _tiny_classifier_run(tmp_path / 'run')
  config = experiment_config('visualize', f'run={tmp_path / "run"},'
                                          'layers=stem+stage2,images=3')
  from dvl.jobs import visualize
  drawn = visualize.run(config, str(tmp_path / 'viz'))
  # The stem is a 3x3 convolution from RGB to 32 channels.
  assert drawn['first_layer'] == 'stem/conv/kernel'
  assert drawn['first_layer_shape'] == [3, 3, 3, 32]
  assert list(drawn['layers']) == ['stem', 'stage2']
  for layer in drawn['layers'].values():
    assert len(layer['channels']) == 8 and len(set(layer['channels'])) == 8
  _assert_valid_png(tmp_path / 'viz' / 'filters.png')
  for name in ('stem', 'stage2'):
    _assert_valid_png(tmp_path / 'viz' / f'activations_{name}.png')
  with pytest.raises(ValueError, match="no feature map 'stage9'; it has: "
                                       'head_conv, stage1, '):
    visualize.run(experiment_config(
        'visualize', f'run={tmp_path / "run"},layers=stage9'),
        str(tmp_path / 'viz2'))


def test_visualize_refuses_a_missing_run(tmp_path):
  from dvl.jobs import visualize
  with pytest.raises(FileNotFoundError, match='no .*config.json'):
    visualize.run(experiment_config('visualize', f'run={tmp_path}/none'),
                  str(tmp_path / 'viz'))
  with pytest.raises(ValueError, match='config.run is empty'):
    visualize.run(experiment_config('visualize'), str(tmp_path / 'viz'))


def test_default_layers_are_the_stem_then_the_stages_in_order():
  from dvl.jobs import visualize
  maps = {k: np.zeros((1, 2, 2, 1)) for k in
          ('stage10', 'head', 'stage2', 'stem', 'pre_logits', 'stage1')}
  maps['pre_logits'] = np.zeros((1, 4))
  assert visualize.choose_layers(maps, '') == ['stem', 'stage1', 'stage2',
                                               'stage10']


def test_strongest_channels_rank_by_mean_activation():
  from dvl.jobs import visualize
  maps = np.zeros((2, 4, 4, 5), np.float32)
  maps[..., 3] = 2.0
  maps[0, ..., 1] = 1.0
  assert visualize.strongest_channels(maps, 2) == [3, 1]


def test_every_registered_model_has_a_task_class_that_owns_its_parts():
  for name, found in models.MODELS.items():
    cls = tasks.TASKS[found.task]
    assert issubclass(cls, tasks.Task), name
    assert cls.kind == found.task
  for cls in tasks.TASKS.values():
    assert cls.build is not tasks.Task.build, cls  # each builds itself
  assert tasks.TASKS['classification'].test_views
  assert not tasks.TASKS['classification'].pictures
  assert tasks.TASKS['detection'].input_fields == {'with_boxes': True}
  assert tasks.TASKS['segmentation'].input_fields == {'with_masks': True}
