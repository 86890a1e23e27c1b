"""Importing keras.applications weights (``dvl.convert``): dvl's logits must
equal Keras's.

Every Keras model is built offline (``weights=None``) at its reference
resolution, with ``classifier_activation=None`` (pre-softmax logits). Its
BatchNorm gammas and betas, its biases and EfficientNet's input
normalisation are set to random values (Keras initialises them to 0 and 1,
which would hide a swapped, untransposed or unfolded tensor), its BatchNorm
moving statistics to those of real activations with the variances perturbed
per channel (``_set_statistics`` says why not purely random ones). The
weights are saved and loaded back into the Keras model (Keras's own reading
of the file), and the file is imported. Raw images in 0–255 go through the
imported preprocessing spec into dvl and through the application's
``preprocess_input`` into Keras; the logits must agree to 1e-4 of the
largest logit, and dvl's BatchNorm epsilons must be Keras's. Each model's
largest difference is printed (``pytest -s``).
"""

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import flax.linen as nn
import h5py
import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from dvl import flops, layers, models
from dvl.jobs import import_weights
from dvl.convert import imported, preprocess
from dvl.convert import keras as keras_convert

keras = pytest.importorskip('keras')

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Case:
  model: str           # dvl registry name
  keras: str           # keras.applications constructor
  module: str          # keras.applications module with preprocess_input
  alpha: float = 1.0
  side: int = 224


CASES = {
    **{f'efficientnet_b{i}': Case(f'efficientnet_b{i}', f'EfficientNetB{i}',
                                  'efficientnet', side=side)
       for i, side in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    'mobilenet_v1': Case('mobilenet_v1', 'MobileNet', 'mobilenet'),
    'mobilenet_v1_a0.5': Case('mobilenet_v1', 'MobileNet', 'mobilenet', 0.5),
    'mobilenet_v2': Case('mobilenet_v2', 'MobileNetV2', 'mobilenet_v2'),
    'mobilenet_v2_a0.35': Case('mobilenet_v2', 'MobileNetV2', 'mobilenet_v2',
                               0.35),
    'mobilenet_v2_a1.4': Case('mobilenet_v2', 'MobileNetV2', 'mobilenet_v2',
                              1.4),
    'resnet50_v1': Case('resnet50_v1', 'ResNet50', 'resnet50'),
    'vgg16': Case('vgg16', 'VGG16', 'vgg16'),
    'vgg19': Case('vgg19', 'VGG19', 'vgg19'),
}
SLOW = ('efficientnet_b4', 'efficientnet_b5', 'efficientnet_b6',
        'efficientnet_b7', 'vgg16')
# Files of several hundred MB, removed once their test has used them.
LARGE = ('vgg16', 'vgg19')


@dataclasses.dataclass
class Reference:
  path: Path           # the .weights.h5 file
  images: np.ndarray   # raw RGB, 0–255
  logits: np.ndarray   # Keras's
  files: dict          # other formats of the same weights, by format name
  epsilons: set        # of Keras's BatchNorm layers


def _randomize(model, rng) -> None:
  """Random gammas, betas, biases and input normalisation: Keras
  initialises them to 0 or 1, which would hide a swapped, untransposed or
  unfolded tensor."""
  draw = {'gamma': lambda s: rng.uniform(0.5, 1.5, s),
          'beta': lambda s: rng.normal(0, 0.1, s),
          'bias': lambda s: rng.normal(0, 0.1, s),
          'mean': lambda s: rng.uniform(0.3, 0.6, s),
          'variance': lambda s: rng.uniform(0.03, 0.1, s)}
  for layer in model.layers:
    if layer.weights:
      layer.set_weights([
          draw[w.name](tuple(w.shape)).astype(np.float32)
          if w.name in draw else np.asarray(w.numpy()) for w in layer.weights])


def _set_statistics(model, images, rng) -> None:
  """Moving statistics of real activations: the means and variances of one
  training-mode pass (momentum 0, dropout off) on other images, the
  variances then scaled per channel by U(0.8, 1.25).

  Statistics drawn at random (say mean ~ N(0, 0.1), variance ~ U(0.5, 1.5))
  normalise nothing: in evaluation the activations of B5–B7 then grow by
  orders of magnitude (logits of 1e6 to 1e8), and float32 rounding alone
  makes two correct implementations differ by 30% and more. Variance
  factors like U(0.5, 1.5) do the same (their mean 1/f is 1.1 per layer),
  and shifting every mean by N(0, 0.1) std makes B6 ten times more
  sensitive to rounding; U(0.8, 1.25) is symmetric in log.
  """
  for layer in model.layers:
    if isinstance(layer, keras.layers.Normalization):
      layer.finalize_state()  # Its call reads the weights set from here.
  norms = [layer for layer in model.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
  drops = [layer for layer in model.layers
           if isinstance(layer, keras.layers.Dropout)]
  saved = [layer.momentum for layer in norms], [d.rate for d in drops]
  for layer in norms:
    layer.momentum = 0.0
  for layer in drops:  # Statistics as evaluation will see them.
    layer.rate = 0.0
  model(images, training=True)
  for layer, rate in zip(drops, saved[1]):
    layer.rate = rate
  for layer, momentum in zip(norms, saved[0]):
    layer.momentum = momentum
    gamma, beta, mean, var = layer.get_weights()
    factor = rng.uniform(0.8, 1.25, var.shape)
    layer.set_weights([gamma, beta, mean, (var * factor).astype(np.float32)])


def write_published_h5(model, path: Path) -> None:
  """Writes the layout of Keras 2's published ImageNet weight files
  (``save_weights`` to HDF5): a group per layer at the root, tensors at
  ``<layer>/<layer>/<weight>:0`` listed by ``weight_names``, a depthwise
  kernel called ``depthwise_kernel``. Keras 3 no longer writes this variant
  (its ``model.save('m.h5')`` nests the groups under ``model_weights`` and
  drops the ``:0``), so it is written here with h5py."""
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [layer.name.encode() for layer in model.layers]
    f.attrs['backend'] = b'tensorflow'
    f.attrs['keras_version'] = b'2.4.0'
    for layer in model.layers:
      group = f.create_group(layer.name)
      names = []
      for w in layer.weights:
        role = w.name
        if isinstance(layer, keras.layers.DepthwiseConv2D) and role == 'kernel':
          role = 'depthwise_kernel'
        names.append(f'{layer.name}/{role}:0')
        group.create_dataset(names[-1], data=np.asarray(w.numpy()))
      group.attrs['weight_names'] = [n.encode() for n in names]


SAVERS = {
    'keras': lambda model, d: model.save(d / 'model.keras'),
    'h5': lambda model, d: model.save(d / 'model.h5'),  # Keras 3's legacy
    'published_h5': lambda model, d: write_published_h5(model, d / 'pub.h5'),
}
FILE_NAMES = {'keras': 'model.keras', 'h5': 'model.h5',
              'published_h5': 'pub.h5'}
# The reference models also saved in the other formats.
FORMATS = {'efficientnet_b0': ('keras', 'h5'),
           'mobilenet_v1_a0.5': ('keras', 'published_h5')}


def _keras_model(case: Case):
  kwargs = dict(alpha=case.alpha) if case.module.startswith('mobilenet') else {}
  return getattr(keras.applications, case.keras)(
      weights=None, input_shape=(case.side, case.side, 3),
      classifier_activation=None, **kwargs)


def _keras_input(case: Case, images):
  return getattr(keras.applications, case.module).preprocess_input(
      images.copy())


def _keras_logits(model, case: Case, images) -> np.ndarray:
  return np.asarray(model(_keras_input(case, images), training=False))


def make_reference(case: Case, directory: Path, formats=(), seed: int = 0,
                   edit=None, keras_input=None) -> Reference:
  """Builds, randomises and saves a Keras model. ``edit(model)`` may change
  its weights first; Keras sees ``keras_input(images)`` when given."""
  rng = np.random.default_rng(seed)
  keras.backend.clear_session()
  keras.utils.set_random_seed(seed)
  model = _keras_model(case)
  _randomize(model, rng)
  if edit:
    edit(model)
  keras_input = keras_input or (lambda x: x)
  calibration = rng.uniform(0, 255, (2, case.side, case.side, 3))
  _set_statistics(model, _keras_input(case, keras_input(
      calibration.astype(np.float32))), rng)
  path = directory / f'{case.keras}.weights.h5'
  model.save_weights(path)
  model.load_weights(path)  # Keras's own reading of the file.
  for fmt in formats:
    SAVERS[fmt](model, directory)
  images = rng.uniform(0, 255, (2, case.side, case.side, 3)).astype(np.float32)
  seen = keras_input(images)
  reference = Reference(path, images, _keras_logits(model, case, seen),
                        {f: directory / FILE_NAMES[f] for f in formats},
                        {layer.epsilon for layer in model.layers if isinstance(
                            layer, keras.layers.BatchNormalization)})
  keras.backend.clear_session()
  return reference


class References:
  """Keras reference files, each built once per module."""

  def __init__(self, factory):
    self._factory, self._cache = factory, {}

  def __call__(self, case_id: str) -> Reference:
    if case_id not in self._cache:
      self._cache[case_id] = make_reference(
          CASES[case_id], self._factory.mktemp(case_id.replace('.', '_')),
          FORMATS.get(case_id, ()))
    return self._cache[case_id]

  def drop(self, case_id: str) -> None:
    self._cache.pop(case_id).path.unlink()


@pytest.fixture(scope='module')
def references(tmp_path_factory):
  return References(tmp_path_factory)


def dvl_logits(result: imported.Imported, images) -> np.ndarray:
  x = preprocess.apply(result.info['preprocessing'], images)
  apply = jax.jit(lambda v, x: result.model.apply(v, x, train=False)[0])
  return np.asarray(apply(result.variables, x))


def dvl_batch_norm_epsilons(result: imported.Imported) -> set:
  """The epsilons of every BatchNorm the imported model calls."""
  found = set()

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.BatchNorm):
      found.add(context.module.epsilon)
    return next_fun(*args, **kwargs)

  side = result.info['resolution']
  x = jax.ShapeDtypeStruct((1, side, side, 3), np.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: result.model.apply(v, x, train=False),
                   result.variables, x)
  return found


def assert_same_logits(label: str, ours, theirs) -> None:
  scale = float(np.abs(theirs).max())
  diff = float(np.abs(ours - theirs).max())
  print(f'\n{label}: max |logit diff| {diff:.2e}, relative to max |logit| '
        f'{scale:.3g}: {diff / scale:.2e}')
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize('case_id', [
    pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
    for c in CASES])
def test_logits_equal_keras(case_id, references):
  case = CASES[case_id]
  reference = references(case_id)
  result = keras_convert.convert(case.model, reference.path, alpha=case.alpha)
  assert dvl_batch_norm_epsilons(result) == reference.epsilons
  assert_same_logits(case_id, dvl_logits(result, reference.images),
                     reference.logits)
  if case_id in LARGE:
    references.drop(case_id)


def _forget_layer_names(f: h5py.File) -> None:
  groups = []
  f.visititems(lambda _, item: groups.append(item)
               if isinstance(item, h5py.Group) else None)
  for group in groups:
    if 'name' in group.attrs:
      del group.attrs['name']


def _strip_layer_names(archive: Path, out: Path) -> None:
  """A copy of a .keras archive as Keras versions that did not record layer
  names in the weights wrote it."""
  with zipfile.ZipFile(archive) as src:
    members = {n: src.read(n) for n in src.namelist()}
  inner = out.with_suffix('.h5')
  inner.write_bytes(members['model.weights.h5'])
  with h5py.File(inner, 'r+') as f:
    _forget_layer_names(f)
  members['model.weights.h5'] = inner.read_bytes()
  with zipfile.ZipFile(out, 'w') as dst:
    for name, data in members.items():
      dst.writestr(name, data)


@pytest.mark.parametrize('case_id,fmt', [
    ('efficientnet_b0', 'keras'), ('efficientnet_b0', 'h5'),
    ('mobilenet_v1_a0.5', 'published_h5'),
    ('mobilenet_v1_a0.5', 'keras_without_names')])
def test_every_file_format_gives_the_same_logits(case_id, fmt, references,
                                                  tmp_path):
  case, reference = CASES[case_id], references(case_id)
  path = reference.files.get(fmt)
  if fmt == 'keras_without_names':
    path = tmp_path / 'old.keras'
    _strip_layer_names(reference.files['keras'], path)
  result = keras_convert.convert(case.model, path, alpha=case.alpha)
  assert result.info['source']['format'] == {
      'keras': 'keras_archive', 'keras_without_names': 'keras_archive',
      'h5': 'legacy_h5', 'published_h5': 'legacy_h5'}[fmt]
  assert_same_logits(f'{case_id} ({fmt})',
                     dvl_logits(result, reference.images), reference.logits)


def test_weights_file_without_layer_names_says_how_to_resave(references,
                                                             tmp_path):
  path = tmp_path / 'old.weights.h5'
  path.write_bytes(references('mobilenet_v1_a0.5').path.read_bytes())
  with h5py.File(path, 'r+') as f:
    _forget_layer_names(f)
  with pytest.raises(ValueError, match=r"do not record their layer name.*"
                     r"model\.save\('m\.keras'\)"):
    keras_convert.convert('mobilenet_v1', path, alpha=0.5)


def test_published_efficientnet_weights_get_keras_imagenet_rescaling(tmp_path):
  """Keras's published EfficientNet weights store the ImageNet standard
  deviations as the Normalization *variance*, and Keras, when it loads them
  (weights='imagenet'), adds a per-channel Rescaling by 1/sqrt(std) after
  the Normalization (tensorflow/tensorflow#49930). That model cannot be built
  offline; feeding the weights=None model ``255 (m + c (x/255 - m))``
  instead of ``x`` gives its Normalization the same output."""
  mean = np.float32(preprocess.IMAGENET_MEAN_RGB)
  std = np.float32(preprocess.IMAGENET_STD_RGB)
  rescale = 1 / np.sqrt(std)

  def published(model):
    norm = next(layer for layer in model.layers
                if isinstance(layer, keras.layers.Normalization))
    norm.set_weights([mean, std, norm.weights[2].numpy()])

  reference = make_reference(
      CASES['efficientnet_b0'], tmp_path, ('published_h5',), edit=published,
      keras_input=lambda x: 255 * (mean + rescale * (x / 255 - mean)))
  result = keras_convert.convert('efficientnet_b0',
                                 reference.files['published_h5'])
  spec = result.info['preprocessing']
  np.testing.assert_allclose(spec['mean'], mean, rtol=1e-6)
  np.testing.assert_allclose(spec['std'], std, rtol=1e-6)  # torch-style
  assert_same_logits('efficientnet_b0 (published statistics)',
                     dvl_logits(result, reference.images), reference.logits)


def _job_config(model: str, path, alpha: float = 1.0) -> ConfigDict:
  return ConfigDict(dict(job='import_weights', source='keras', model=model,
                         path=str(path), alpha=alpha, imagenet_rescale='auto'))


def _vars_group(f: h5py.File, layer: str) -> h5py.Group:
  found = []
  f.visititems(lambda _, item: found.append(item) if isinstance(
      item, h5py.Group) and item.attrs.get('name') == layer else None)
  return found[0]


def _edited(source: Path, tmp_path: Path, edit) -> Path:
  path = tmp_path / 'edited.weights.h5'
  path.write_bytes(source.read_bytes())
  with h5py.File(path, 'r+') as f:
    edit(f)
  return path


def _drop_moving_variance(f):
  del _vars_group(f, 'conv_pw_5_bn')['3']


def _add_conv_bias(f):
  _vars_group(f, 'conv1').create_dataset('1', data=np.zeros(16, np.float32))


def _add_layer(f):
  group = f.create_group('layers/conv2d_extra/vars')
  group.attrs['name'] = 'conv_extra'
  group.create_dataset('0', data=np.zeros((1, 1, 8, 8), np.float32))


def _reshape_depthwise(f):
  group = _vars_group(f, 'conv_dw_2')
  del group['0']
  group.create_dataset('0', data=np.zeros((3, 3, 48, 1), np.float32))


@pytest.mark.parametrize('edit,message', [
    (_drop_moving_variance, r"tensor 'conv_pw_5_bn/moving_variance' is "
     r'missing from the file \(the model expects shape \(128,\)\)'),
    (_add_conv_bias, r"tensor 'conv1/bias' \(shape \(16,\)\) is in the file "
     'but has no place'),
    (_add_layer, r"1 layer\(s\) of the file have no place in the model; the "
     r"first, tensor 'conv_extra/kernel', has shape \(1, 1, 8, 8\)"),
    (_reshape_depthwise, r"tensor 'conv_dw_2/kernel': the model expects "
     r'shape \(3, 3, 32, 1\), the file has \(3, 3, 48, 1\)'),
])
def test_a_file_that_does_not_fit_names_the_tensor_and_writes_nothing(
    edit, message, references, tmp_path):
  path = _edited(references('mobilenet_v1_a0.5').path, tmp_path, edit)
  workdir = tmp_path / 'run'
  with pytest.raises(keras_convert.WeightMismatchError,
                     match=message + '.*Nothing was written'):
    keras_convert.run(_job_config('mobilenet_v1', path, 0.5), workdir)
  assert not workdir.exists()


@pytest.mark.parametrize('model,case_id,alpha,message', [
    ('efficientnet_b0', 'efficientnet_b1', 1.0,
     r"layer\(s\) of the file have no place in the model; the first, tensor "
     r"'block1b_\w+/\w+'"),
    ('mobilenet_v1', 'mobilenet_v1_a0.5', 1.0,
     r"tensor 'conv1/kernel': the model expects shape \(3, 3, 3, 32\), the "
     r'file has \(3, 3, 3, 16\)'),
    ('mobilenet_v2', 'mobilenet_v2_a0.35', 1.0,
     r"tensor 'Conv1/kernel': the model expects shape \(3, 3, 3, 32\), the "
     r'file has \(3, 3, 3, 16\)'),
    ('vgg16', 'mobilenet_v1_a0.5', 1.0,
     r"tensor 'block1_conv1/kernel' is missing from the file"),
])
def test_weights_of_another_model_or_variant_are_refused(
    model, case_id, alpha, message, references, tmp_path):
  workdir = tmp_path / 'run'
  with pytest.raises(keras_convert.WeightMismatchError, match=message):
    keras_convert.run(_job_config(model, references(case_id).path, alpha),
                      workdir)
  assert not workdir.exists()


@pytest.mark.parametrize('model,path,alpha,error,message', [
    ('resnet50', 'any.weights.h5', 1.0, ValueError,
     r'ResNet v1.*architectures differ.*model=resnet50_v1'),
    ('googlenet', 'any.weights.h5', 1.0, ValueError,
     r"no Keras application matches.*'googlenet'.*efficientnet_b0"),
    ('efficientnet_b0', 'any.weights.h5', 0.5, ValueError,
     r'alpha=0.5: only MobileNet and MobileNetV2'),
    ('mobilenet_v1', 'missing.weights.h5', 1.0, FileNotFoundError,
     r'no Keras weight file at .*missing\.weights\.h5'),
    ('mobilenet_v1', 'notes.txt', 1.0, ValueError,
     r'neither an HDF5 file .* nor a \.keras archive'),
])
def test_bad_requests_are_refused_before_writing(model, path, alpha, error,
                                                 message, tmp_path):
  (tmp_path / 'notes.txt').write_text('not weights')
  workdir = tmp_path / 'run'
  with pytest.raises(error, match=message):
    keras_convert.run(_job_config(model, tmp_path / path, alpha), workdir)
  assert not workdir.exists()


def test_job_writes_a_checkpoint_that_loads_back(references, tmp_path):
  reference = references('mobilenet_v1_a0.5')
  workdir = tmp_path / 'run'
  keras_convert.run(_job_config('mobilenet_v1', reference.path, 0.5), workdir)
  info = json.loads((workdir / imported.INFO_FILE).read_text())
  assert info['model'] == 'mobilenet_v1'
  assert info['fields'] == {'padding': 'same', 'width': 0.5}
  assert info['preprocessing']['name'] == 'tf'
  assert info['source']['application'] == 'MobileNet'
  loaded = imported.load(workdir)
  assert set(loaded.variables) == {'params', 'batch_stats'}
  np.testing.assert_allclose(dvl_logits(loaded, reference.images),
                             reference.logits, rtol=1e-4,
                             atol=1e-4 * np.abs(reference.logits).max())
  with pytest.raises(FileExistsError, match='choose a new --workdir'):
    keras_convert.run(_job_config('mobilenet_v1', reference.path, 0.5),
                      workdir)


def test_launch_runs_the_import_job(references, tmp_path):
  path = references('mobilenet_v1_a0.5').path
  config = (f'experiments/import_weights.py:source=keras,model=mobilenet_v1,'
            f'alpha=0.5,path={path}')
  done = subprocess.run(
      [sys.executable, 'launch.py', '--config', config,
       '--workdir', str(tmp_path / 'run')],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert (tmp_path / 'run' / imported.INFO_FILE).is_file()


@pytest.mark.parametrize('mode', ['tf', 'caffe', 'torch'])
def test_preprocessing_presets_equal_keras_preprocess_input(mode):
  images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3))
  theirs = keras.applications.imagenet_utils.preprocess_input(
      images.astype(np.float32), mode=mode)
  np.testing.assert_allclose(preprocess.apply(mode, images), theirs,
                             rtol=1e-6, atol=1e-5)


def test_keras_normalization_layers_as_a_spec():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
  mean, variance = rng.uniform(0.3, 0.6, 3), rng.uniform(0.03, 0.1, 3)
  scale = rng.uniform(0.5, 2, 3)
  keras_out = keras.layers.Rescaling(scale.tolist())(
      keras.layers.Normalization(mean=mean, variance=variance)(
          keras.layers.Rescaling(1 / 255)(images)))
  spec = preprocess.keras_layers(1 / 255, 0.0, mean, variance, scale)
  np.testing.assert_allclose(preprocess.apply(spec, images),
                             np.asarray(keras_out), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('spec,message', [
    ('imagenet', "unknown preprocessing 'imagenet'; choose one of: tf, caffe"),
    ({'scale': 1.0}, r"spec lacks \['channel_order', 'mean', 'std'\]"),
    ({'channel_order': 'gbr', 'scale': 1, 'mean': [0] * 3, 'std': [1] * 3},
     "channel_order must be 'rgb' or 'bgr'"),
])
def test_bad_preprocessing_specs_are_named(spec, message):
  with pytest.raises(ValueError, match=message):
    preprocess.apply(spec, np.zeros((1, 4, 4, 3)))


def _stride2_input_sides(resolution: int) -> list[int]:
  """Input sides of the five stride-2 layers at a reference resolution."""
  sides = [resolution]
  for _ in range(4):
    sides.append(-(-sides[-1] // 2))
  return sides


EFFICIENTNET_SIDES = sorted({s for c in CASES.values() if c.module ==
                             'efficientnet' for s in _stride2_input_sides(
                                 c.side)})


@pytest.mark.parametrize('kernel', [3, 5])
def test_keras_correct_pad_is_tensorflow_same(kernel):
  """EfficientNet and MobileNetV2 pad a stride-2 layer by ``correct_pad``
  before a valid convolution; dvl uses SAME. They agree at every side the
  reference resolutions reach, odd (B3: 75) and even."""
  from keras.src.applications.imagenet_utils import correct_pad
  assert any(s % 2 for s in EFFICIENTNET_SIDES)
  for side in EFFICIENTNET_SIDES:
    keras_pad = correct_pad(np.zeros((1, side, side, 1)), kernel)
    same = jax.lax.padtype_to_pads((side, side), (kernel, kernel), (2, 2),
                                   'SAME')
    assert tuple(map(tuple, same)) == tuple(map(tuple, keras_pad)), side


@pytest.mark.parametrize('resolution', [128, 160, 192, 224])
def test_keras_mobilenet_pad_is_tensorflow_same(resolution):
  """Keras's MobileNet pads every stride-2 depthwise layer by (0, 1): SAME
  for the even sides of its published resolutions."""
  for side in _stride2_input_sides(resolution)[1:]:
    same = jax.lax.padtype_to_pads((side, side), (3, 3), (2, 2), 'SAME')
    assert tuple(map(tuple, same)) == ((0, 1), (0, 1)), side


def test_resnet50_v1_has_resnet50_parameters():
  """Keras's ResNet50 trainable weights less its 26,560 convolution biases
  (folded into BatchNorm here) equal ResNet-50's 25,557,032."""
  keras.backend.clear_session()
  peer = keras.applications.ResNet50(weights=None)
  trainable = sum(int(np.prod(w.shape)) for w in peer.trainable_weights)
  biases = sum(int(np.prod(layer.bias.shape)) for layer in peer.layers
               if isinstance(layer, keras.layers.Conv2D))
  keras.backend.clear_session()
  ours = flops.count(models.build_model('resnet50_v1'), (224, 224, 3)).params
  assert ours == trainable - biases == 25_557_032


def test_unknown_source_lists_the_sources(tmp_path):
  config = _job_config('efficientnet_b0', tmp_path / 'b0.pth')
  config.source = 'timm'
  with pytest.raises(ValueError, match="unknown weight source 'timm'.*keras"):
    import_weights.run(config, tmp_path / 'run')
  assert not (tmp_path / 'run').exists()
