"""RegNet (Radosavovic et al. 2020): the quantized-linear generator against
pycls's published layout, every variant's params and MACs against the
golden figures, and the errors of a parameter set that makes no RegNet."""

import jax
import jax.numpy as jnp
import pytest

from dvl import flops, models
from dvl.models import regnet
from dvl.models.regnet import Stage

# name: (exact trainable params, ../shared/REFERENCE.md; pycls's exact flops,
# its dev/model_complexity.json: MACs of convolutions and dense layers plus
# one per bias).
GOLDEN = {
    'regnetx_002': (2_684_792, 199_040_872),
    'regnetx_004': (5_157_512, 397_678_568),
    'regnetx_006': (6_196_040, 600_891_112),
    'regnetx_008': (7_259_656, 799_700_712),
    'regnetx_016': (9_190_136, 1_602_850_792),
    'regnetx_032': (15_296_552, 3_176_622_952),
    'regnetx_040': (22_118_248, 3_964_499_816),
    'regnetx_064': (26_209_256, 6_460_292_264),
    'regnetx_080': (39_572_648, 7_995_133_416),
    'regnetx_120': (46_106_056, 12_086_679_016),
    'regnetx_160': (54_278_536, 15_940_756_456),
    'regnetx_320': (107_811_560, 31_735_930_792),
    'regnety_002': (3_162_996, 199_519_076),
    'regnety_004': (4_344_144, 401_849_056),
    'regnety_006': (6_055_160, 601_227_608),
    'regnety_008': (6_263_168, 797_183_328),
    'regnety_016': (11_202_430, 1_612_087_326),
    'regnety_032': (19_436_338, 3_176_496_162),
    'regnety_040': (20_646_656, 3_973_301_344),
    'regnety_064': (30_583_252, 6_355_221_876),
    'regnety_080': (39_180_068, 7_963_074_196),
    'regnety_120': (51_822_544, 12_092_395_504),
    'regnety_160': (83_590_140, 15_911_534_044),
    'regnety_320': (145_046_770, 32_279_583_362),
}
# From 6.4 GF up the variants count in a second or more each.
LARGE = ('064', '080', '120', '160', '320')


def test_every_size_of_the_paper_is_registered():
  assert sorted(n for n in models.MODELS if n.startswith('regnet')) == sorted(
      GOLDEN)


def test_regnetx_200mf_stages_are_pyclss():
  """pycls's RegNetX-200MF: depths [1, 1, 4, 7], widths [24, 56, 152, 368],
  group width 8. By hand, u_j = 24 + 36.44·j gives s_j = 0, 1, 2, 2, 2, 2,
  then 3 from j = 6 (u_6 = 242.6: log(10.1) / log(2.49) = 2.54), and
  24·2.49^s rounded to multiples of 8 is 24, 56 (59.8), 152 (148.8), 368
  (370.5)."""
  assert regnet.generate(*regnet.REGNETX['002']) == (
      Stage(24, 1, 8), Stage(56, 1, 8), Stage(152, 4, 8), Stage(368, 7, 8))
  assert regnet.generate(*regnet.REGNETY['002']) == regnet.generate(
      *regnet.REGNETX['002'])


def test_a_group_wider_than_its_stage_shrinks_to_it():
  """RegNetX-8.0GF: g = 120 but its first stage is 80 wide (one group);
  RegNetX-4.0GF rounds 1360 to 34 groups of 40."""
  stages = regnet.generate(*regnet.REGNETX['080'])
  assert [(s.width, s.group_width) for s in stages] == [
      (80, 80), (240, 120), (720, 120), (1920, 120)]
  assert regnet.compatible(Stage(1368, 2, 40)) == Stage(1360, 2, 40)


def _cost(name):
  return flops.count(models.build_model(name), (224, 224, 3))


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n[-3:] in LARGE else n
    for n in GOLDEN])
def test_params_exact_and_macs_within_one_percent_of_pycls(name):
  params, pycls_flops = GOLDEN[name]
  cost = _cost(name)
  assert cost.params == params
  assert abs(cost.macs / pycls_flops - 1) <= 0.01
  ref = models.get_spec(name).reference
  assert (ref.params, ref.macs_m * 1e6, ref.tolerance) == (
      params, pycls_flops, 0.01)


@pytest.mark.parametrize('table', [regnet.REFERENCE_X, regnet.REFERENCE_Y])
def test_exact_flops_round_to_pyclss_model_zoo(table):
  for params, exact, zoo, _ in table.values():
    assert round(exact / 1e9, 1) == zoo


def test_published_activations_are_in_the_references():
  assert models.get_spec('regnetx_002').reference.activations_m == 2.16
  assert models.get_spec('regnety_320').reference.activations_m == 30.26
  assert models.get_spec('regnetx_006').reference.activations_m is None


def _param_shapes(name, side=224, **fields):
  model = models.build_model(name, **fields)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, side, side, 3)),
                         train=False))
  return jax.tree.map(lambda a: a.shape, variables['params']), model


def test_squeeze_excite_is_a_quarter_of_the_block_input():
  """RegNetY-200MF: the first block takes the 32-wide stem (SE 8), the
  second stage's first block the 24-wide first stage (SE 6)."""
  shapes, _ = _param_shapes('regnety_002')
  assert shapes['stage1_block1']['se']['reduce']['kernel'] == (1, 1, 24, 8)
  assert shapes['stage2_block1']['se']['reduce']['kernel'] == (1, 1, 56, 6)
  assert shapes['stage2_block1']['conv2']['conv']['kernel'] == (3, 3, 8, 56)
  assert 'se' not in _param_shapes('regnetx_002')[0]['stage1_block1']


def test_remat_keeps_the_parameter_tree():
  assert (_param_shapes('regnetx_002', 64)[0] ==
          _param_shapes('regnetx_002', 64, remat=True)[0])


def test_width_and_depth_multiply_the_generated_stages():
  """Width 1.5: 36, 84, 228, 552 round to multiples of 8 (40, 88, 232,
  552), all multiples of the unscaled group width 8; depth 2 doubles
  each stage. Width 0.25 on RegNetX-8.0GF: 184 is nearer two groups of 120
  than one."""
  model = models.build_model('regnetx_002', width=1.5, depth=2.0)
  assert model.stages() == (Stage(40, 2, 8), Stage(88, 2, 8),
                            Stage(232, 8, 8), Stage(552, 14, 8))
  model = models.build_model('regnetx_080', width=0.25)
  assert [(s.width, s.group_width) for s in model.stages()] == [
      (24, 24), (64, 64), (240, 120), (480, 120)]


@pytest.mark.slow  # compiles the proxy's training step
def test_the_proxy_ends_on_a_4x4_map_of_a_32x32_image():
  fields = models.get_spec('regnetx_002').scaling.proxy
  model = models.build_model('regnetx_002', num_classes=10, **fields)
  x = jnp.zeros((2, 32, 32, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  logits, features = model.apply(variables, x, train=False)
  assert logits.shape == (2, 10)
  assert features['stage4'].shape == (2, 4, 4, 96)
  assert [s.depth for s in model.stages()] == [1, 1, 2, 4]


@pytest.mark.parametrize('fields, message', [
    (dict(wm=1.0), 'the width multiplier wm must be > 1'),
    (dict(wm=0.8), 'the width multiplier wm must be > 1'),
    (dict(w0=30), 'w0 must be a positive multiple of 8.*use 32'),
    (dict(d=3), r'gives 3 stage\(s\).*raise d or wa'),
    (dict(d=60), r'gives 6 stage\(s\).*lower d or wa'),
    (dict(wa=0.0), 'the slope wa must be > 0'),
    (dict(d=13.5), 'd is the number of blocks, a whole number'),
    (dict(group_width=0), 'the group width g must be a whole number'),
    (dict(strides=(2, 2, 2)), 'one stride per stage'),
])
def test_a_parameter_set_that_makes_no_regnet_fails_at_build(fields, message):
  with pytest.raises(ValueError, match=message):
    models.build_model('regnetx_002', **fields)
