"""EfficientNetV2 (Tan & Le 2021) and its Fused-MBConv block.

The block string ``fr_…`` decodes to a Fused-MBConv stage that the shared
EfficientNet builder builds as ``layers.FusedInvertedResidual``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dvl import layers
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
  x = jnp.ones((1, 8, 8, 8))
  variables = block.init(jax.random.key(0), x, train=False)
  kernels = {k: v for k, v in _shapes(variables).items()
             if k.endswith('kernel')}
  assert kernels == expected
  assert block.apply(variables, x, train=False).shape == (1, 4, 4, 16)


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
  x = jnp.ones((1, 32, 32, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  shapes = _shapes(variables)
  assert shapes['stage1_block1/project/conv/kernel'] == (3, 3, 16, 16)
  assert shapes['stage2_block1/expand/conv/kernel'] == (3, 3, 16, 64)
  assert shapes['stage3_block1/depthwise/conv/kernel'] == (3, 3, 1, 96)
  logits, features = model.apply(variables, x, train=False)
  assert logits.shape == (1, 10)
  assert features['stage3'].shape == (1, 4, 4, 32)


def test_builder_refuses_a_block_type_it_does_not_build():
  model = EfficientNet(blocks=('ds_r1_k3_s1_c16',), resolution=32)
  with pytest.raises(ValueError, match=r"block type 'ds'.*'fr'"):
    model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)
