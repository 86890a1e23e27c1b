"""ConvNeXt (Liu et al. 2022) against keras.applications and the paper.

Every variant has exactly Keras's trainable parameters (``weights=None``,
1000 classes; its input Normalization has none) and within 1% of the
paper's MACs (Sec. 3 / Table 1, rounded to 0.1 G). A randomly initialised
Keras ConvNeXtTiny saved as ``.keras``, its LayerNorm gammas and betas,
biases and layer scales drawn at random (Keras starts them at 1, 0 and 1e-6,
which would hide a swapped or misplaced tensor), imports into
``convnext_tiny`` with the same logits (1e-4 of the largest); a file of
another variant is refused. Only Tiny's Keras model is built in the default
suite; the larger ones run with ``-m slow``.
"""

import os

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvl import flops, models, peer
from dvl.convert import keras as keras_convert
from dvl.models import convnext
from test_convert_keras import assert_same_logits, dvl_logits

keras = pytest.importorskip('keras')

PAPER_MACS_G = dict(convnext_tiny=4.5, convnext_small=8.7, convnext_base=15.4,
                    convnext_large=34.4, convnext_xlarge=60.9)
KERAS_PARAMS = dict(convnext_tiny=28_589_128, convnext_small=50_223_688,
                    convnext_base=88_591_464, convnext_large=197_767_336,
                    convnext_xlarge=350_196_968)


def _keras_params(name: str) -> int:
  keras.backend.clear_session()
  model = getattr(keras.applications, convnext.CONVNEXT[name].keras)(
      weights=None)
  count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  keras.backend.clear_session()
  return count


@pytest.mark.parametrize('name', [
    n if n == 'convnext_tiny' else pytest.param(n, marks=pytest.mark.slow)
    for n in convnext.CONVNEXT])
def test_params_equal_keras(name):
  ours = flops.count(models.build_model(name), (224, 224, 3)).params
  assert ours == KERAS_PARAMS[name] == _keras_params(name)


@pytest.mark.parametrize('name', list(convnext.CONVNEXT))
def test_macs_within_one_percent_of_the_paper(name):
  macs = flops.count(models.build_model(name), (224, 224, 3)).macs
  assert abs(macs / (PAPER_MACS_G[name] * 1e9) - 1) <= 0.01
  assert models.get_spec(name).reference.macs_m == round(
      PAPER_MACS_G[name] * 1e3)


def test_proxy_keeps_a_map_at_32_pixels():
  model = models.build_model(
      'convnext_tiny', **models.get_spec('convnext_tiny').scaling.proxy)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  _, features = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  assert features['stage4'].shape == (1, 2, 2, 192)


def test_depth_and_width_scale_every_stage():
  model = models.build_model('convnext_tiny', depth=2.0, width=1.5)
  assert model.stages() == [(6, 144), (6, 288), (18, 576), (6, 1152)]


@pytest.mark.slow
def test_remat_keeps_outputs_and_gradients():
  fields = dict(models.get_spec('convnext_tiny').scaling.proxy,
                stage_sizes=(1, 1, 1, 1), num_classes=5)
  plain = models.build_model('convnext_tiny', **fields)
  remat = models.build_model('convnext_tiny', remat=True, **fields)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = plain.init(jax.random.key(1), x, train=False)

  def loss(model, params):
    y, _ = model.apply({'params': params}, x, train=True)
    return jnp.sum(jnp.sin(y))

  grad = jax.jit(jax.value_and_grad(loss, 1), static_argnums=0)
  (l0, g0), (l1, g1) = (grad(m, variables['params']) for m in (plain, remat))
  np.testing.assert_allclose(l1, l0, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_keras_peer():
  assert peer.keras_peer('convnext_tiny') == 'ConvNeXtTiny'
  assert peer.keras_peer('convnext_xlarge') == 'ConvNeXtXLarge'


def _randomize(model, rng) -> None:
  """Every LayerNorm gamma and beta, bias and layer scale at random; the
  kernels keep Keras's random initialisation."""
  for layer in model.layers:
    if not layer.weights:
      continue
    values = []
    for w in layer.weights:
      shape = tuple(w.shape)
      if w.name in ('gamma', 'variable'):  # LayerNorm, LayerScale
        values.append(rng.uniform(0.5, 1.5, shape))
      elif w.name in ('beta', 'bias'):
        values.append(rng.normal(0, 0.1, shape))
      else:
        values.append(np.asarray(w.numpy()))
    layer.set_weights([v.astype(np.float32) for v in values])


@pytest.fixture(scope='module')
def tiny_file(tmp_path_factory):
  """(path of a random ConvNeXtTiny .keras file, raw images, its logits,
  its LayerNorm epsilons)."""
  rng = np.random.default_rng(0)
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  model = keras.applications.ConvNeXtTiny(weights=None,
                                          classifier_activation=None)
  _randomize(model, rng)
  path = tmp_path_factory.mktemp('convnext') / 'convnext_tiny.keras'
  model.save(path)
  images = rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
  logits = np.asarray(model(images, training=False))
  epsilons = {layer.epsilon for layer in model.layers
              if isinstance(layer, keras.layers.LayerNormalization)}
  keras.backend.clear_session()
  return path, images, logits, epsilons


def _layer_norm_epsilons(result) -> set:
  found = set()

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.LayerNorm):
      found.add(context.module.epsilon)
    return next_fun(*args, **kwargs)

  x = jax.ShapeDtypeStruct((1, 224, 224, 3), np.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: result.model.apply(v, x, train=False),
                   result.variables, x)
  return found


def test_keras_weights_give_the_same_logits(tiny_file):
  path, images, logits, epsilons = tiny_file
  result = keras_convert.convert('convnext_tiny', path)
  assert result.info['preprocessing']['name'] == 'torch'
  assert _layer_norm_epsilons(result) == epsilons == {1e-6}
  assert_same_logits('convnext_tiny', dvl_logits(result, images), logits)


def test_weights_of_another_variant_are_refused(tiny_file):
  with pytest.raises(keras_convert.WeightMismatchError,
                     match=r"convnext_small_stem_conv/kernel' is missing.*"
                     'another model or variant.*Nothing was written'):
    keras_convert.convert('convnext_small', tiny_file[0])


@pytest.mark.slow
def test_small_weights_into_tiny_are_refused(tmp_path):
  keras.backend.clear_session()
  path = tmp_path / 'small.weights.h5'
  keras.applications.ConvNeXtSmall(weights=None).save_weights(path)
  keras.backend.clear_session()
  with pytest.raises(keras_convert.WeightMismatchError,
                     match=r"\(Keras ConvNeXtTiny\).*convnext_tiny_stem_conv/"
                     "kernel' is missing"):
    keras_convert.convert('convnext_tiny', path)
