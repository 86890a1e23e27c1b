"""Scaling as data: rounding rules and the per-backbone semantics."""

import jax
import jax.numpy as jnp
import pytest

from dvl import flops, layers, models, scaling
from dvl.models import blocks


@pytest.mark.parametrize('channels,expected', [
    (32, 32), (35.2, 32), (36, 40), (16 * 1.1, 16), (40 * 1.4, 56),
    (4, 8), (1280 * 1.1, 1408), (24 * 0.35, 8)])
def test_round_filters(channels, expected):
  assert layers.round_filters(channels) == expected


def test_round_filters_never_loses_more_than_ten_percent():
  for c in range(8, 2000):
    for w in (0.35, 0.5, 0.75, 1.1, 1.2, 1.4, 1.6, 1.8):
      rounded = layers.round_filters(c * w)
      assert rounded % 8 == 0
      assert rounded >= 0.9 * c * w


@pytest.mark.parametrize('repeats,depth,expected', [
    (3, 1.0, 3), (3, 1.1, 4), (2, 1.2, 3), (4, 3.1, 13), (1, 1.8, 2)])
def test_round_repeats_rounds_up(repeats, depth, expected):
  assert layers.round_repeats(repeats, depth) == expected


def _blocks_per_stage(model, side):
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, side, side, 3)), train=False))
  names = [k for k in variables['params'] if k.startswith('stage')]
  stages = {}
  for n in names:
    stage = n.split('_')[0]
    stages[stage] = stages.get(stage, 0) + 1
  return [stages[k] for k in sorted(stages)]


def _build(cfg):
  return models.build_model(cfg['name'],
                            **{k: v for k, v in cfg.items() if k != 'name'})


def test_resnet_depth_multiplies_each_stage():
  cfg, side = scaling.scale({'name': 'resnet50'}, depth=2.0)
  assert side == 224
  assert _blocks_per_stage(_build(cfg), 64) == [6, 8, 12, 6]


def test_vgg_depth_multiplies_convolutions_per_stage():
  cfg, _ = scaling.scale({'name': 'vgg16'}, depth=2.0)
  assert _blocks_per_stage(_build(cfg), 64) == [4, 4, 6, 6, 6]


def test_mobilenet_v1_depth_multiplies_width_stages():
  cfg, _ = scaling.scale({'name': 'mobilenet_v1'}, depth=1.4)
  assert _blocks_per_stage(_build(cfg), 64) == [2, 3, 3, 9, 3]


def test_efficientnet_b2_is_b0_scaled():
  """The B0-B7 table rows are the generic network at their coefficients."""
  cfg, _ = scaling.scale({'name': 'efficientnet'}, depth=1.2, width=1.1)
  ours = flops.count(_build(cfg), (260, 260, 3))
  b2 = flops.count(models.build_model('efficientnet_b2'), (260, 260, 3))
  assert ours.params == b2.params and ours.macs == b2.macs


def test_width_scales_macs_about_quadratically():
  base = flops.count(models.build_model('resnet50'), (224, 224, 3)).macs
  cfg, _ = scaling.scale({'name': 'resnet50'}, width=2.0)
  wide = flops.count(_build(cfg), (224, 224, 3)).macs
  assert 3.8 < wide / base < 4.1


def test_resolution_is_rounded_to_a_multiple_of_8():
  cfg, side = scaling.scale({'name': 'efficientnet_b0'}, resolution=1.3)
  assert side == 288 and cfg['resolution'] == 288
  _, side = scaling.scale({'name': 'mobilenet_v1'}, resolution=1.15)
  assert side == 256
  _, side = scaling.scale({'name': 'resnet18'}, resolution=1.3, multiple=1)
  assert side == 291


def test_scaling_composes_with_the_config():
  cfg, _ = scaling.scale({'name': 'efficientnet_b1'}, depth=2.0, width=1.5)
  assert cfg['depth'] == pytest.approx(2.2) and cfg['width'] == 1.5


def test_compound_coefficients():
  d, w, r = scaling.compound(1.0)
  assert (d, w, r) == (1.2, 1.1, 1.15)
  assert scaling.flops_ratio(d, w, r) == pytest.approx(1.92, abs=0.01)
  d2, _, _ = scaling.compound(2.0)
  assert d2 == pytest.approx(1.44)


def test_unsupported_backbone_is_refused():
  with pytest.raises(ValueError, match="'googlenet' cannot be scaled"):
    scaling.scale({'name': 'googlenet'}, depth=2.0)


def test_non_positive_multiplier_is_refused():
  with pytest.raises(ValueError, match='width multiplier must be > 0'):
    scaling.scale({'name': 'resnet18'}, width=0.0)


def test_block_strings_round_trip():
  for s in ('ir_r2_k3_s2_e6_c24_se0.25', 'ir_r1_k3_s1_e1_c16',
            'ds_r6_k3_s2_c512'):
    assert blocks.encode(blocks.decode(s)) == s
  spec = blocks.decode('ir_r4_k5_s2_e6_c192_se0.25')
  assert (spec.repeats, spec.kernel, spec.stride, spec.expansion,
          spec.channels, spec.se_ratio) == (4, 5, 2, 6.0, 192, 0.25)


@pytest.mark.parametrize('bad,message', [
    ('xx_r1_k3_s1_c16', 'unknown block type'),
    ('ir_r1_k3_s1_c16_q3', "cannot read field 'q3'"),
    ('ir_r1_k3_c16', r"lacks the fields \['s'\]")])
def test_bad_block_strings_name_the_problem(bad, message):
  with pytest.raises(ValueError, match=message):
    blocks.decode(bad)
