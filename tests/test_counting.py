"""Golden tests: params, MACs and activations against
../shared/REFERENCE.md."""

import functools

import pytest

from dvl import flops, models, reference
from dvl.jobs.model_table import zoo_rows
import ml_collections


@functools.lru_cache(maxsize=None)
def _cost(name, side=None, **fields):
  model = models.build_model(name, **fields)
  side = side or model.default_resolution
  return flops.count(model, (side, side, models.get_spec(name).channels))


@pytest.mark.parametrize('name', sorted(
    n for n, s in models.MODELS.items() if s.reference is not None))
def test_params_and_macs_match_the_reference(name):
  ref = models.get_spec(name).reference
  cost = _cost(name)
  if ref.params_tolerance == 0:
    assert cost.params == ref.params
  else:
    assert abs(cost.params / ref.params - 1) <= ref.params_tolerance
  assert abs(cost.macs / 1e6 / ref.macs_m - 1) <= ref.tolerance


@pytest.mark.parametrize('name', sorted(
    n for n, s in models.MODELS.items()
    if s.reference is not None and s.reference.activations_m is not None))
def test_activations_match_the_reference(name):
  """Dollár et al. 2021's activations (pycls MODEL_ZOO; exact figures of
  fvcore on the same architectures) at the reference resolution."""
  ref = models.get_spec(name).reference
  counted = _cost(name).activations / 1e6
  assert abs(counted / ref.activations_m - 1) <= ref.activations_tolerance


def test_references_carry_pyclss_activations():
  """The models REFERENCE.md gives activations for hold them in their specs
  (the figures themselves are checked against the count above)."""
  with_figure = {n for n, s in models.MODELS.items()
                 if s.reference and s.reference.activations_m is not None}
  assert {'resnet50', 'efficientnet_b0', 'efficientnet_b1', 'efficientnet_b2',
          'efficientnet_b3', 'regnetx_002', 'regnety_008', 'convnext_tiny',
          'efficientnetv2_s'} <= with_figure


def test_resnet50_v1_has_other_activations():
  """v1 strides its downsampling blocks in the first 1x1, so that layer's
  output is a quarter of v1.5's (which strides in the 3x3); pycls's figure is
  v1.5's, and v1 carries none."""
  v1, v15 = _cost('resnet50_v1'), _cost('resnet50')
  assert models.get_spec('resnet50_v1').reference.activations_m is None
  first = lambda c: {l.path: l.activations for l in c.layers}[
      'stage2_block1/conv1/conv']
  assert first(v15) == 4 * first(v1) == 56 * 56 * 128
  assert v1.activations < v15.activations


@pytest.mark.parametrize('name', ['efficientnet_b4', 'efficientnet_b5'])
def test_b4_b5_within_five_percent_of_the_paper(name):
  paper = reference.EFFICIENTNET_PAPER_MACS_M[name]
  assert abs(_cost(name).macs / 1e6 / paper - 1) <= 0.05


@pytest.mark.parametrize('label,fields,side,macs,params,tol',
                         reference.MOBILENET_V1_TABLES)
def test_mobilenet_v1_tables(label, fields, side, macs, params, tol):
  cost = _cost('mobilenet_v1', side, **fields)
  assert abs(cost.macs / 1e6 - macs) <= tol, label
  assert abs(cost.params / 1e6 - params) <= 0.05, label


def test_lenet5_layer_by_layer():
  """C1 117,600 + C3 240,000 + F5 48,000 + F6 10,080 + out 840 MACs."""
  cost = _cost('lenet5')
  assert [l.macs for l in cost.layers] == [117_600, 240_000, 48_000, 10_080,
                                            840]


def test_lenet5_activations_layer_by_layer():
  """C1 6x28x28, C3 16x10x10, F5 120, F6 84, output 10; the pooling layers'
  outputs are not counted."""
  cost = _cost('lenet5')
  assert [l.activations for l in cost.layers] == [4_704, 1_600, 120, 84, 10]
  assert cost.activations == 6_518


def test_activations_count_squeeze_excite_and_the_classifier():
  """pycls counts the outputs of the squeeze-and-excitation 1x1 convolutions
  (one element per channel) and of the classifier, as every other counted
  layer's: B0's first block squeezes its 32 channels to 8."""
  acts = {l.path: l.activations for l in _cost('efficientnet_b0').layers}
  assert acts['stage1_block1/se/reduce'] == 8
  assert acts['stage1_block1/se/expand'] == 32
  assert acts['head/dense'] == 1000
  assert acts['stage1_block1/depthwise/conv'] == 112 * 112 * 32


def test_unet_layer_by_layer():
  """Depth 1, widths 4 and 8, 8x8 RGB: every convolution, the 2x2
  up-convolution (each of the 4x4x8 inputs feeds 2·2·4 outputs) and the
  1x1 classifier."""
  cost = _cost('unet', 8, num_classes=2, depth=1, base_width=4)
  assert [(l.kind, l.macs) for l in cost.layers] == [
      ('conv', 64 * 9 * 3 * 4), ('conv', 64 * 9 * 4 * 4),
      ('conv', 16 * 9 * 4 * 8), ('conv', 16 * 9 * 8 * 8),
      ('conv_transpose', 16 * 8 * 4 * 4),
      ('conv', 64 * 9 * 8 * 4), ('conv', 64 * 9 * 4 * 4),
      ('conv', 64 * 4 * 2)]
  # The up-convolution outputs 8x8x4, as the other layers their maps.
  assert [l.activations for l in cost.layers] == [
      64 * 4, 64 * 4, 16 * 8, 16 * 8, 64 * 4, 64 * 4, 64 * 4, 64 * 2]


def test_depthwise_macs_are_taps_times_outputs():
  cost = _cost('mobilenet_v1')
  first = next(l for l in cost.layers if l.kind == 'depthwise')
  assert first.macs == 112 * 112 * 32 * 9


def test_batch_norm_statistics_are_not_params():
  with_bn = _cost('vgg16_bn').params
  without = _cost('vgg16').params
  # Each BatchNorm adds a scale and an offset per channel, not its statistics.
  channels = 2 * 64 + 2 * 128 + 3 * 256 + 3 * 512 + 3 * 512
  assert with_bn - without == 2 * channels


def test_counts_agree_with_xla_within_its_convention():
  """XLA skips SAME-padding taps and adds elementwise work; on ResNet-50 the
  two differ by a few percent, not more."""
  model = models.build_model('resnet50')
  ours = flops.count(model, (224, 224, 3)).macs
  xla = flops.xla_macs(model, (224, 224, 3))
  assert 0.9 < xla / ours < 1.05


def test_macs_and_activations_are_per_example():
  model = models.build_model('resnet18')
  batch = flops.count(model, (4, 64, 64, 3))
  one = flops.count(model, (64, 64, 3))
  assert batch.macs == one.macs
  assert batch.activations == one.activations > 0


def test_zoo_table_rows_are_all_within_tolerance():
  config = ml_collections.ConfigDict(
      dict(models=('lenet5', 'resnet50', 'mobilenet_v1', 'efficientnet_b0'),
           xla=False))
  rows = zoo_rows(config)
  assert len(rows) == 4 + len(reference.MOBILENET_V1_TABLES)
  assert all(r['ok'] for r in rows), [r for r in rows if not r['ok']]
