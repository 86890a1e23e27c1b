"""EfficientNetV2 (Tan & Le 2021) and its Fused-MBConv block.

The block string ``fr_…`` decodes to a Fused-MBConv stage that the shared
EfficientNet builder builds as ``layers.FusedInvertedResidual``. The family:
params equal to ``keras.applications``' (B0 here, the others with the slow
tests), MACs within 1% of the published figures, Keras weights imported
with Keras's logits, another variant's file refused.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dvl import flops, layers, models, peer
from dvl.convert import keras as keras_convert
from dvl.convert import keras_layouts, preprocess
from dvl.models import blocks
from dvl.models.efficientnet import EfficientNet


def _shapes(variables) -> dict:
  flat = traverse_util.flatten_dict(variables['params'], sep='/')
  return {k: tuple(v.shape) for k, v in flat.items()}


def test_fused_block_string_decodes_and_encodes():
  stage = blocks.decode('fr_r2_k3_s2_e4_c48')
  assert stage == blocks.StageSpec(kind='fr', repeats=2, kernel=3, stride=2,
                                   channels=48, expansion=4.0, se_ratio=0.0)
  assert blocks.encode(stage) == 'fr_r2_k3_s2_e4_c48'
  assert blocks.encode(blocks.decode('fr_r1_k3_s1_e1_c16_se0.25')) == (
      'fr_r1_k3_s1_e1_c16_se0.25')


def test_v2_rounding_drops_v1s_step_up():
  """16 channels at width 1.2 (EfficientNetV2-B3's first stage): V1 steps
  up to 24, V2's reference keeps the nearest multiple of 8."""
  assert layers.round_filters(16 * 1.2) == 24
  assert layers.round_filters(16 * 1.2, min_ratio=0.0) == 16
  scaled = blocks.scale_stages(['fr_r1_k3_s1_e1_c16'], width=1.2, depth=1.4,
                               min_ratio=0.0)
  assert (scaled[0].channels, scaled[0].repeats) == (16, 2)


@pytest.mark.parametrize('expansion,expected', [
    (4, {'expand/conv/kernel': (3, 3, 8, 32),
         'project/conv/kernel': (1, 1, 32, 16)}),
    (1, {'project/conv/kernel': (3, 3, 8, 16)})])
def test_fused_block_convolutions(expansion, expected):
  """With e > 1: a k×k expansion then a 1×1 projection; with e = 1 the
  k×k convolution is the whole block."""
  block = layers.FusedInvertedResidual(16, 3, 2, expansion)
  x = jax.ShapeDtypeStruct((1, 8, 8, 8), jnp.float32)
  variables = jax.eval_shape(
      lambda x: block.init(jax.random.key(0), x, train=False), x)
  kernels = {k: v for k, v in _shapes(variables).items()
             if k.endswith('kernel')}
  assert kernels == expected
  y = jax.eval_shape(lambda v, x: block.apply(v, x, train=False),
                     variables, x)
  assert y.shape == (1, 4, 4, 16)


@pytest.mark.parametrize('expansion', [1, 4])
def test_fused_block_is_residual_at_stride_1_and_equal_width(expansion):
  """The projection's BatchNorm zeroed, the block is the identity (with
  e = 1 the activation follows it: swish(0) = 0)."""
  block = layers.FusedInvertedResidual(8, 3, 1, expansion, drop_path=0.1)
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 8))
  variables = block.init(jax.random.key(0), x, train=False)
  bn = variables['params']['project']['norm']['bn']
  bn['scale'] = jnp.zeros_like(bn['scale'])
  np.testing.assert_allclose(block.apply(variables, x, train=False), x,
                             atol=1e-6)


def test_builder_builds_fused_and_mbconv_stages():
  model = EfficientNet(blocks=('fr_r2_k3_s1_e1_c16', 'fr_r1_k3_s2_e4_c24',
                               'ir_r1_k3_s2_e4_c32_se0.25'),
                       stem_width=16, head_width=64, resolution=32,
                       num_classes=10)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  shapes = _shapes(variables)
  assert shapes['stage1_block1/project/conv/kernel'] == (3, 3, 16, 16)
  assert shapes['stage2_block1/expand/conv/kernel'] == (3, 3, 16, 64)
  assert shapes['stage3_block1/depthwise/conv/kernel'] == (3, 3, 1, 96)
  logits, features = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  assert logits.shape == (1, 10)
  assert features['stage3'].shape == (1, 4, 4, 32)


def test_builder_refuses_a_block_type_it_does_not_build():
  model = EfficientNet(blocks=('ds_r1_k3_s1_c16',), resolution=32)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  with pytest.raises(ValueError, match=r"block type 'ds'.*'fr'"):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


# The family: registry, golden counts, Keras's import. ------------------------

V2 = ('efficientnetv2_b0', 'efficientnetv2_b1', 'efficientnetv2_b2',
      'efficientnetv2_b3', 'efficientnetv2_s', 'efficientnetv2_m',
      'efficientnetv2_l')
KERAS = dict(zip(V2, ('EfficientNetV2B0', 'EfficientNetV2B1',
                      'EfficientNetV2B2', 'EfficientNetV2B3',
                      'EfficientNetV2S', 'EfficientNetV2M', 'EfficientNetV2L')))
# keras.applications' trainable params (weights=None, 1000 classes;
# ../shared/REFERENCE.md), the default side, the published MACs (M) and
# their source: the reference README for B0-B3 (the paper lists none) and
# for S/M/L beside the paper's Table 7.
GOLDEN = {
    'efficientnetv2_b0': (7_139_704, 224, 720, None),
    'efficientnetv2_b1': (8_141_052, 240, 1_200, None),
    'efficientnetv2_b2': (10_096_086, 260, 1_700, None),
    'efficientnetv2_b3': (14_358_406, 300, 3_000, None),
    'efficientnetv2_s': (21_458_488, 384, 8_400, 8_800),
    'efficientnetv2_m': (54_139_356, 480, 24_700, 24_000),
    'efficientnetv2_l': (118_515_272, 480, 56_300, 53_000),
}


def _slow_but(first, names):
  return [n if n == first else pytest.param(n, marks=pytest.mark.slow)
          for n in names]


def _import_keras():
  os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return pytest.importorskip('keras')


def test_registry_and_keras_peer():
  assert tuple(n for n in models.MODELS if n.startswith('efficientnetv2')) == V2
  for name in V2:
    assert peer.keras_peer(name) == KERAS[name]
    assert models.build_model(name).default_resolution == GOLDEN[name][1]
  assert models.model_fields('efficientnetv2_b3')['width'] == 1.2


@pytest.mark.parametrize('name', _slow_but('efficientnetv2_b0', V2))
def test_macs_match_the_published_figures(name):
  """Within 1% of the reference README; S/M/L count 5% below, 2% and 6%
  above the paper's Table 7 (8.8/24/53 G), as every count of the released
  architecture does."""
  params, side, published, paper = GOLDEN[name]
  cost = flops.count(models.build_model(name), (side, side, 3))
  assert cost.params == params
  assert abs(cost.macs / 1e6 / published - 1) <= 0.01
  if paper:
    assert abs(cost.macs / 1e6 / paper - 1) <= 0.06


@pytest.mark.parametrize('name', _slow_but('efficientnetv2_b0', V2))
def test_params_equal_keras_applications(name):
  keras = _import_keras()
  params, side, _, _ = GOLDEN[name]
  keras.backend.clear_session()
  peer_model = getattr(keras.applications, KERAS[name])(weights=None)
  theirs = sum(int(np.prod(w.shape)) for w in peer_model.trainable_weights)
  keras.backend.clear_session()
  assert theirs == params
  assert flops.count(models.build_model(name), (side, side, 3)).params == params


@pytest.mark.parametrize('name', _slow_but('efficientnetv2_b0',
                                           ['efficientnetv2_b0',
                                            'efficientnetv2_s']))
def test_imported_keras_weights_give_keras_logits(name, tmp_path):
  """A randomised Keras model saved as .keras; dvl's logits after the
  import equal Keras's to 1e-4 of the largest (B0 normalises in the model
  as torch's preset does; S maps to x / 128 - 1)."""
  _import_keras()
  import test_convert_keras as reference  # pylint: disable=import-outside-toplevel
  side = GOLDEN[name][1]
  case = reference.Case(name, KERAS[name], 'efficientnet_v2', side=side)
  ref = reference.make_reference(case, tmp_path, formats=('keras',))
  result = keras_convert.convert(name, ref.files['keras'])
  assert reference.dvl_batch_norm_epsilons(result) == ref.epsilons
  reference.assert_same_logits(name, reference.dvl_logits(result, ref.images),
                               ref.logits)


def test_weights_of_another_variant_are_refused(tmp_path):
  keras = _import_keras()
  keras.backend.clear_session()
  path = tmp_path / 'EfficientNetV2B1.weights.h5'
  keras.applications.EfficientNetV2B1(weights=None).save_weights(path)
  keras.backend.clear_session()
  with pytest.raises(keras_convert.WeightMismatchError,
                     match=r'does not fit dvl efficientnetv2_b0 \(Keras '
                           r'EfficientNetV2B0\)'):
    keras_convert.convert('efficientnetv2_b0', path)


def test_keras_preprocessing_of_s_m_l_maps_to_minus_one_one():
  spec = keras_layouts.family('efficientnetv2_m').preprocessing
  out = preprocess.apply(spec, np.array([[[0.0, 128.0, 255.0]]]))
  np.testing.assert_allclose(out, [[[-1.0, 0.0, 127 / 128]]])
  assert keras_layouts.family('efficientnetv2_b2').preprocessing == 'torch'
