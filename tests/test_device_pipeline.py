"""The device input pipeline against the host (tf.data) pipeline.

Specification: the same data order as the host pipeline for every step, also
when resuming; the same evaluation batches; with augmentation off the same
training batches; augmentations drawn from the same distributions; every
setting it lacks refused by name; and a training run on it learning as one
on the host pipeline does.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from dvl import train
from dvl.data import augment as tf_augment
from dvl.data import default_input_config
from dvl.data import device_augment
from dvl.data import device_pipeline
from dvl.data import make_pipeline
from train_runs import experiment_config, needs_shared_data

SEED = 3


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _config(data_dir, **overrides):
  """shapes at 16 pixels: 270 training, 30 validation, 70 test images."""
  cfg = default_input_config()
  cfg.data_dir = data_dir
  cfg.shapes.update(dict(image_size=16, num_train=300, num_test=70))
  cfg.val_count = 30
  cfg.batch_size, cfg.eval_batch_size = 32, 32
  augment = overrides.pop('augment', {})
  cfg.update(overrides)
  cfg.augment.update(augment)
  return cfg


def _both(cfg):
  """The host and the device pipeline of one config."""
  host = make_pipeline(dict(cfg.to_dict(), pipeline='tfdata'), seed=SEED)
  device = make_pipeline(dict(cfg.to_dict(), pipeline='device'), seed=SEED)
  assert (host.kind, device.kind) == ('tfdata', 'device')
  return host, device


def _take(batches, count):
  return [jax.device_get(next(batches)) for _ in range(count)]


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_allclose(np.asarray(b[key]), a[key], atol=2e-5,
                               err_msg=key)


@pytest.mark.parametrize('fields', [
    {}, dict(resolution=24), dict(resolution=12, normalize='none')])
def test_training_batches_equal_the_host_ones_with_augmentation_off(
    data_dir, fields):
  """Same examples, same order (across an epoch boundary), same pixels; a
  pipeline resumed at step k yields the uninterrupted run's batches."""
  host, device = _both(_config(data_dir, **fields))
  assert host.steps_per_epoch == device.steps_per_epoch == 270 // 32
  steps = host.steps_per_epoch + 3
  uninterrupted = _take(host.train_iter(0), steps)
  for a, b in zip(uninterrupted, _take(device.train_iter(0), steps)):
    _assert_same(a, b)
  for k in (5, host.steps_per_epoch + 1):
    for a, b in zip(uninterrupted[k:], _take(device.train_iter(k), 2)):
      _assert_same(a, b)
    assert np.array_equal(device.train_indices(k),
                          host.reader.train_indices(SEED, k, 32).numpy())


def test_data_order_is_the_host_order_under_augmentation(data_dir):
  """With flips on, each device image is the host's un-augmented image of
  the same step and row, or its mirror: the order does not depend on the
  augmentation."""
  plain, _ = _both(_config(data_dir))
  flipped = make_pipeline(dict(_config(
      data_dir, augment=dict(hflip=True)).to_dict(), pipeline='device'),
                          seed=SEED)
  mirrored = same = 0
  for k in (0, 4, 11):
    a = next(plain.train_iter(k))
    b = jax.device_get(next(flipped.train_iter(k)))
    assert np.array_equal(a['label'], b['label'])
    for x, y in zip(a['image'], b['image']):
      is_same = np.allclose(x, y, atol=2e-5)
      is_mirror = np.allclose(x[:, ::-1], y, atol=2e-5)
      assert is_same or is_mirror
      same += is_same and not is_mirror
      mirrored += is_mirror and not is_same
  assert same > 10 and mirrored > 10


@pytest.mark.parametrize('fields', [
    {}, dict(resolution=24, eval_crop_fraction=0.875, eval_batch_size=20)])
def test_evaluation_batches_equal_the_host_ones(data_dir, fields):
  host, device = _both(_config(data_dir, **fields))
  for split in ('val', 'test', 'train'):
    for drop in (False, True):
      a = list(host.eval_iter(split, drop_remainder=drop))
      b = [jax.device_get(x) for x in device.eval_iter(split,
                                                        drop_remainder=drop)]
      assert len(a) == len(b) and (a or drop)
      for x, y in zip(a, b):
        _assert_same(x, y)
      valid = sum(int(x['valid'].sum()) for x in b)
      size = host.cfg.eval_batch_size
      count = host.num_examples(split)
      assert valid == (count // size * size if drop else count)


def test_mixed_batches_have_soft_labels_that_sum_to_one(data_dir):
  cfg = _config(data_dir, augment=dict(mixup_alpha=0.4, cutmix_alpha=1.0))
  host, device = _both(cfg)
  assert device.soft_labels and host.soft_labels
  a, b = next(host.train_iter(2)), jax.device_get(next(device.train_iter(2)))
  assert b['soft_label'].shape == a['soft_label'].shape
  np.testing.assert_allclose(b['soft_label'].sum(1), 1.0, atol=1e-5)
  assert np.array_equal(a['label'], b['label'])


# The augmentations: the same distributions as the tf.data ones.

def _tf_seed(i):
  return tf.constant([i, 17], tf.int64)


def test_crop_resize_samples_windows_as_tf_crop_and_resize():
  """Given the same windows (random, flipped, partly outside the image),
  the device sampler returns the host sampler's pixels."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 20, 14, 3), np.uint8)
  windows = dict(top=rng.uniform(-4, 12, 64), left=rng.uniform(-4, 8, 64),
                 height=rng.uniform(3, 24, 64), width=rng.uniform(3, 18, 64),
                 flip=rng.random(64) < 0.5)
  for out_hw in ((16, 16), (9, 23), (1, 5)):
    expected = tf_augment.crop_resize(
        dict(image=tf.constant(images)),
        {k: tf.constant(v, tf.bool if k == 'flip' else tf.float32)
         for k, v in windows.items()}, out_hw)['image'].numpy()
    got = device_augment.crop_resize(
        jnp.asarray(images), {k: jnp.asarray(v) for k, v in windows.items()},
        out_hw)
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-3)


def test_flip_rate_is_one_half():
  windows = device_augment.centre_windows(20_000, (32, 32))
  flips = device_augment.random_flips(jax.random.key(0), windows)['flip']
  assert float(flips.mean()) == pytest.approx(0.5, abs=0.015)


def test_pad_crop_offsets_cover_the_same_range_evenly():
  count, padding = 20_000, 4
  host = tf_augment.pad_crop_windows(_tf_seed(0), count, (32, 32), (32, 32),
                                     padding)
  device = device_augment.pad_crop_windows(jax.random.key(0), count,
                                           (32, 32), (32, 32), padding)
  for key in ('top', 'left'):
    a, b = host[key].numpy(), np.asarray(device[key])
    values = np.arange(-padding, padding + 1)
    assert set(np.unique(a)) == set(np.unique(b)) == set(values.tolist())
    share = np.array([(b == v).mean() for v in values])
    np.testing.assert_allclose(share, 1 / len(values), atol=0.012)
    assert b.mean() == pytest.approx(0.0, abs=0.08)
    assert b.std() == pytest.approx(a.std(), rel=0.03)


def test_inception_windows_have_the_host_area_and_ratio_spread():
  count, src = 20_000, (40, 30)
  host = tf_augment.inception_windows(_tf_seed(1), count, src)
  device = device_augment.inception_windows(jax.random.key(1), count, src)
  host = {k: v.numpy() for k, v in host.items()}
  device = {k: np.asarray(v) for k, v in device.items()}
  for w in (host, device):
    assert (w['top'] >= 0).all() and (w['left'] >= 0).all()
    assert (w['top'] + w['height'] <= src[0] + 1e-3).all()
    assert (w['left'] + w['width'] <= src[1] + 1e-3).all()
  area = lambda w: w['height'] * w['width'] / (src[0] * src[1])
  log_ratio = lambda w: np.log(w['width'] / w['height'])
  for stat in (area, log_ratio):
    a, b = stat(host), stat(device)
    assert b.mean() == pytest.approx(a.mean(), abs=0.02)
    assert b.std() == pytest.approx(a.std(), rel=0.05)
  centre = lambda w: w['top'] + w['height'] / 2
  assert centre(device).std() == pytest.approx(centre(host).std(), rel=0.05)


@pytest.mark.parametrize('alpha', [0.2, 1.0])
def test_mixup_lambda_follows_beta_alpha_alpha(alpha):
  """lambda read back from the soft labels of a batch whose rows have
  distinct classes: mean 1/2, variance 1 / (4 (2 alpha + 1))."""
  size = 8
  images = jnp.zeros((size, 2, 2, 1))
  soft = jnp.eye(size)
  draw = jax.jit(jax.vmap(lambda key: device_augment.mixup(
      key, images, soft, alpha)[1]))
  labels = draw(jax.random.split(jax.random.key(2), 4000))
  # Row 0 keeps lambda of its own class unless it was paired with itself.
  mixed = np.asarray(labels[:, 0])
  own = mixed[:, 0]
  lam = own[mixed[:, 1:].max(1) > 0]
  assert lam.mean() == pytest.approx(0.5, abs=0.02)
  assert lam.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.08)


def test_cutmix_pastes_the_host_share_of_the_image():
  size, count, alpha = 4, 3000, 1.0
  images = jnp.zeros((size, 32, 32, 1))
  soft = jnp.eye(size)
  device = jax.jit(jax.vmap(lambda key: device_augment.cutmix(
      key, images, soft, alpha)[1][:, :].diagonal()))
  kept_device = np.asarray(device(jax.random.split(jax.random.key(3),
                                                   count)))
  host = tf.function(lambda seed: tf.linalg.diag_part(tf_augment.cutmix(
      seed, tf.zeros((size, 32, 32, 1)), tf.eye(size), alpha)[1]))
  kept_host = np.asarray([host(_tf_seed(i)).numpy() for i in range(600)])
  # Rows paired with themselves keep 1; the rest keep 1 - pasted area.
  a, b = kept_host[kept_host < 1], kept_device[kept_device < 1]
  assert b.mean() == pytest.approx(a.mean(), abs=0.03)
  assert b.std() == pytest.approx(a.std(), rel=0.1)


def test_hsv_conversions_match_tensorflow():
  rgb = np.random.default_rng(4).random((500, 3)).astype(np.float32)
  rgb[:20] = rgb[:20, :1]  # greys: no hue, no saturation
  hsv = np.asarray(device_augment.rgb_to_hsv(jnp.asarray(rgb)))
  np.testing.assert_allclose(hsv, tf.image.rgb_to_hsv(rgb).numpy(),
                             atol=1e-5)
  back = device_augment.hsv_to_rgb(jnp.asarray(hsv))
  np.testing.assert_allclose(np.asarray(back), rgb, atol=1e-5)


def test_colour_jitter_changes_images_as_the_host_jitter_does():
  """Per-image mean brightness, contrast (std) and colourfulness of one
  image jittered 1,000 times: the same means and spreads."""
  image = np.random.default_rng(5).random((1, 12, 12, 3)).astype(np.float32)
  count, strength = 1000, 0.4
  host = tf_augment.color_jitter(_tf_seed(5), tf.constant(
      np.repeat(image, count, 0)), strength).numpy()
  device = np.asarray(device_augment.color_jitter(
      jax.random.key(5), jnp.asarray(np.repeat(image, count, 0)), strength))
  assert device.min() >= 0 and device.max() <= 1
  stats = dict(
      brightness=lambda x: x.mean((1, 2, 3)),
      contrast=lambda x: x.std((1, 2, 3)),
      colour=lambda x: (x.max(-1) - x.min(-1)).mean((1, 2)),
      red_share=lambda x: x[..., 0].mean((1, 2)) / (x.mean((1, 2, 3)) + 1e-6))
  for name, stat in stats.items():
    a, b = stat(host), stat(device)
    assert b.mean() == pytest.approx(a.mean(), rel=0.03), name
    assert b.std() == pytest.approx(a.std(), rel=0.12), name


# Choosing the pipeline, and refusing what the device pipeline lacks.

@pytest.mark.parametrize('fields, named', [
    (dict(augment=dict(randaugment_layers=2)), 'augment.randaugment_layers'),
    (dict(augment=dict(affine_degrees=10.0)), 'augment.affine_degrees'),
    (dict(zca=True), 'zca'),
    (dict(with_masks=True), 'with_masks'),
    (dict(with_boxes=True), 'with_boxes'),
    (dict(reader='stream'), "reader = 'stream'"),
])
def test_unsupported_settings_are_refused_by_name(data_dir, fields, named):
  cfg = _config(data_dir, **fields)
  with pytest.raises(ValueError, match=r"pipeline = 'device' does not "
                     r"support .*set config.input.pipeline = 'tfdata'") as e:
    make_pipeline(dict(cfg.to_dict(), pipeline='device'), seed=0)
  assert named in str(e.value)
  auto = make_pipeline(dict(cfg.to_dict(), pipeline='auto'), seed=0)
  assert auto.kind == 'tfdata'


def test_a_dataset_larger_than_device_memory_is_refused_with_sizes(
    data_dir, monkeypatch):
  """A device with 100 kB free (the shapes set takes about 290 kB)."""
  monkeypatch.setattr(device_pipeline, 'free_memory_bytes', lambda: 100_000)
  with pytest.raises(ValueError, match=r"takes 0\.3 MiB .* more than the "
                     r"0\.1 MiB free .*pipeline = 'tfdata'"):
    make_pipeline(dict(_config(data_dir).to_dict(), pipeline='device'),
                  seed=0)


def test_auto_picks_the_device_on_an_accelerator_when_the_data_fits(
    data_dir, monkeypatch):
  cfg = _config(data_dir).to_dict()
  assert make_pipeline(cfg, seed=0).kind == 'tfdata'  # the CPU backend
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  monkeypatch.setattr(device_pipeline, 'free_memory_bytes', lambda: 2 ** 30)
  picked = make_pipeline(cfg, seed=0)
  assert picked.kind == 'device' and 'fits' in picked.choice
  monkeypatch.setattr(device_pipeline, 'free_memory_bytes', lambda: 400_000)
  assert make_pipeline(cfg, seed=0).kind == 'tfdata'


def test_unknown_pipeline_lists_the_choices(data_dir):
  with pytest.raises(ValueError, match="'auto', 'device', 'tfdata'"):
    make_pipeline(dict(_config(data_dir).to_dict(), pipeline='gpu'), seed=0)


@needs_shared_data('cifar10')
def test_cifar10_fits_and_matches_the_host_pipeline():
  cfg = default_input_config()
  cfg.update(dict(dataset='cifar10_local', val_count=5000, batch_size=256,
                  eval_batch_size=1000, mean=(0.49, 0.48, 0.45),
                  std=(0.25, 0.24, 0.26)))
  host, device = _both(cfg)
  assert device.num_train == 45_000 and device.num_test == 10_000
  _assert_same(next(host.train_iter(300)),
               jax.device_get(next(device.train_iter(300))))
  _assert_same(next(host.eval_iter('test')),
               jax.device_get(next(device.eval_iter('test'))))


# Training on it.

def _tinted_squares(folder, rng):
  """A 3-class npz_folder: a noisy 32x32 image with a faint square tinted
  with the class's colour channel, somewhere in it."""
  folder.mkdir(exist_ok=True)
  for split, count in (('train', 900), ('test', 300)):
    labels = rng.integers(0, 3, count)
    images = rng.normal(110, 40, (count, 32, 32, 3))
    corner = rng.integers(0, 20, (count, 2))
    for i, (label, (y, x)) in enumerate(zip(labels, corner)):
      images[i, y:y + 12, x:x + 12, label] += 22
    np.savez(folder / f'{split}.npz', label=labels,
             image=np.clip(images, 0, 255).astype(np.uint8))


@pytest.fixture(scope='module')
def squares(tmp_path_factory):
  """``_tinted_squares`` and its TFDS data dir, prepared once per module."""
  root = tmp_path_factory.mktemp('squares')
  _tinted_squares(root / 'squares', np.random.default_rng(0))
  return root


def _train_config(root, pipeline, hflip):
  """LeNet-5 on the ``squares`` in ``root``: seconds per run."""
  config = experiment_config('mnist_lenet5', 'runlocal')
  config.input = default_input_config()
  config.input.update(dict(
      dataset='npz_folder', path=str(root / 'squares'),
      data_dir=str(root / 'tfds'), val_count=100, batch_size=32,
      eval_batch_size=100, pipeline=pipeline))
  config.input.augment.hflip = hflip
  config.train.steps = 40
  config.train.eval_every = 40
  config.train.log_every = 5
  config.train.compilation_cache = False
  return config


def _losses(workdir):
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text()
          .splitlines()]
  return np.array([r['loss'] for r in rows if r['split'] == 'train'])


@pytest.mark.parametrize('hflip', [False, True])
def test_training_on_the_device_pipeline_learns_as_on_the_host(
    squares, tmp_path, hflip):
  """Augmentation off: the same loss curve to float tolerance (the same
  batches). Flips on: other random flips, the same accuracy region."""
  results, losses = {}, {}
  for pipeline in ('tfdata', 'device'):
    workdir = tmp_path / pipeline
    results[pipeline] = train.run(_train_config(squares, pipeline, hflip),
                                  str(workdir))
    losses[pipeline] = _losses(workdir)
  host, device = results['tfdata'], results['device']
  assert len(losses['device']) == len(losses['tfdata']) == 9
  assert host['test_accuracy'] > 0.6  # it learned: chance is 1/3
  if not hflip:
    np.testing.assert_allclose(losses['device'], losses['tfdata'],
                               rtol=1e-3)
    assert device['test_accuracy'] == pytest.approx(host['test_accuracy'],
                                                    abs=0.011)
  else:
    assert device['test_accuracy'] == pytest.approx(host['test_accuracy'],
                                                    abs=0.1)
    assert not np.allclose(losses['device'], losses['tfdata'], rtol=1e-3)


def test_a_population_gets_each_members_host_batches_on_the_device(
    squares):
  """A population's stacked batches: member i's own data order, as the host
  pipeline delivers it, stacked on the device."""
  from dvl.train import population
  seeds, stacked = (3, 7), {}
  for pipeline in ('tfdata', 'device'):
    job = train.setup(_train_config(squares, pipeline, hflip=False))
    assert job.pipeline.kind == pipeline
    batches = population._stacked_batches(job, seeds, 4)
    stacked[pipeline] = [next(batches) for _ in range(3)]
  assert isinstance(stacked['device'][0]['image'], jax.Array)
  for a, b in zip(stacked['tfdata'], stacked['device']):
    _assert_same(a, jax.device_get(b))
    assert not np.array_equal(a['label'][0], a['label'][1])
