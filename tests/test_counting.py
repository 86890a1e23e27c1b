"""Golden tests: params and MACs against ../shared/REFERENCE.md."""

import pytest

from dvl import flops, models, reference
from dvl.jobs.model_table import zoo_rows
import ml_collections


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


def test_macs_are_per_example():
  model = models.build_model('resnet18')
  assert (flops.count(model, (4, 64, 64, 3)).macs ==
          flops.count(model, (64, 64, 3)).macs)


def test_zoo_table_rows_are_all_within_tolerance():
  config = ml_collections.ConfigDict(
      dict(models=('lenet5', 'resnet50', 'mobilenet_v1', 'efficientnet_b0'),
           xla=False))
  rows = zoo_rows(config)
  assert len(rows) == 4 + len(reference.MOBILENET_V1_TABLES)
  assert all(r['ok'] for r in rows), [r for r in rows if not r['ok']]
