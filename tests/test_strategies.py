"""Scaling strategies at equal cost (dvl.sweep.strategies): compound, one
dimension alone, uniform and dWr (Dollár, Singh & Girshick 2021), given
exponents, matching a counted cost, and the config checks."""

import math

import pytest

from dvl.sweep import candidates, strategies

PHIS = (0, 1, 2.5)


def cost_factor(dwr):
  d, w, r = dwr
  return d * w ** 2 * r ** 2


@pytest.mark.parametrize('spec', ['compound', 'depth', 'width', 'resolution',
                                  'uniform', 'dwr:0.8', 'dwr:0',
                                  'exponents:0.2,0.3,0.1'])
@pytest.mark.parametrize('phi', PHIS)
def test_every_strategy_costs_what_compound_costs(spec, phi):
  growth = candidates.nominal_growth(*candidates.PAPER)
  dwr = strategies.at_phi(spec, phi)
  assert cost_factor(dwr) == pytest.approx(growth ** phi, rel=1e-12)
  assert min(dwr) >= 1.0


def test_compound_is_tan_and_le():
  for phi in PHIS:
    assert strategies.at_phi('compound', phi, (1.2, 1.1, 1.15)) == \
        pytest.approx((1.2 ** phi, 1.1 ** phi, 1.15 ** phi), rel=1e-12)
  assert strategies.at_phi('compound', 2, (1.4, 1.0, 1.2)) == pytest.approx(
      (1.96, 1.0, 1.44))


@pytest.mark.parametrize('kind', candidates.SINGLE_DIMENSIONS)
def test_single_dimensions_agree_with_the_search(kind):
  growth = candidates.nominal_growth(*candidates.PAPER)
  assert strategies.at_phi(kind, 3) == pytest.approx(
      candidates.single_dimension(kind, 3, growth), rel=1e-12)


def test_uniform_gives_each_of_d_w2_r2_a_third():
  d, w, r = strategies.parse('uniform').at_cost(8.0)
  assert (d, w ** 2, r ** 2) == pytest.approx((2.0, 2.0, 2.0))


def test_dwr_gives_width_its_share_and_splits_the_rest():
  d, w, r = strategies.parse('dwr:0.8').at_cost(2.0 ** 10)
  assert math.log2(w ** 2) == pytest.approx(8.0)  # 0.8 of 10 doublings
  assert math.log2(d) == pytest.approx(1.0)  # half of the other 0.2
  assert math.log2(r ** 2) == pytest.approx(1.0)
  assert strategies.parse('dwr:1').exponents == pytest.approx((0, 0.5, 0))
  third = strategies.parse(f'dwr:{1 / 3!r}').exponents
  assert third == pytest.approx(strategies.parse('uniform').exponents)


def test_given_exponents_are_used_as_written():
  assert strategies.parse('exponents:0.2,0.3,0.1').at_cost(4.0) == \
      pytest.approx((4 ** 0.2, 4 ** 0.3, 4 ** 0.1))
  assert strategies.parse(' Exponents: 1, 0, 0').exponents == (1, 0, 0)


@pytest.mark.parametrize('spec, message', [
    ('uniformly', 'unknown scaling strategy'),
    ('dwr', 'unknown scaling strategy'),
    ('compound:2', 'unknown scaling strategy'),
    ('dwr:1.5', r'must lie in \[0, 1\]'),
    ('dwr:-0.1', r'must lie in \[0, 1\]'),
    ('dwr:high', 'not a number'),
    ('exponents:0.2,0.3', 'three numbers'),
    ('exponents:1,1,1', r'exponents:0\.2,0\.2,0\.2'),
    ('exponents:1.2,-0.1,0', '>= 0'),
    (0.8, 'is a string'),
])
def test_bad_strategies_say_what_to_do(spec, message):
  with pytest.raises(ValueError, match=message):
    strategies.parse(spec)


def counted(d, w, r):
  """A counted cost with a fixed part and rounding: channels of 16·w and
  sides of 32·r rounded to multiples of 8, layers of 4·d rounded up."""
  channels = max(8, round(16 * w / 8) * 8)
  side = max(8, round(32 * r / 8) * 8)
  return 1000 + math.ceil(4 * d) * channels ** 2 * side ** 2


@pytest.mark.parametrize('spec', ['uniform', 'dwr:0.8', 'depth', 'compound'])
def test_match_finds_the_multipliers_of_a_counted_cost(spec):
  strategy = strategies.parse(spec)

  def smooth(d, w, r):
    return 50.0 + 7.0 * d * w ** 2 * r ** 2 + 3.0 * w ** 2

  target = smooth(*strategies.at_phi('compound', 2)) * 1.01
  dwr = strategies.match(strategy, smooth, target)
  assert smooth(*dwr) == pytest.approx(target, rel=1e-9)
  assert dwr == pytest.approx(strategy.at_cost(cost_factor(dwr)))


def test_match_on_a_stepped_cost_lands_on_the_step():
  strategy = strategies.parse('width')
  target = (counted(1, 1.25, 1) + counted(1, 1.5, 1)) / 2  # between steps
  d, w, r = strategies.match(strategy, counted, target)
  assert (d, r) == (1.0, 1.0)
  assert counted(d, w * (1 - 1e-6), r) < target <= counted(d, w, r)


def test_match_refuses_a_target_out_of_reach():
  with pytest.raises(ValueError, match='below the baseline'):
    strategies.match(strategies.parse('uniform'), counted, 10.0)
  with pytest.raises(ValueError, match='out of reach'):
    strategies.match(strategies.parse('depth'), lambda d, w, r: w, 2.0)


def test_check_strategies_reads_the_sweep_fields():
  sweep = {'strategies': ('uniform', 'dwr:0.8', 'exponents:0.2,0.3,0.1'),
           'match': 'activations'}
  got = strategies.check_strategies(sweep)
  assert [s.spec for s in got] == list(sweep['strategies'])
  assert strategies.check_strategies({}) == []


@pytest.mark.parametrize('sweep, message', [
    ({'match': 'flops'}, 'macs, activations, params, time'),
    ({'strategies': 'uniform'}, 'tuple of strings'),
    ({'strategies': ('uniform', 'uniform')}, 'twice'),
    ({'strategies': ('dwr:2',)}, r'\[0, 1\]'),
])
def test_check_strategies_refuses_bad_fields(sweep, message):
  with pytest.raises(ValueError, match=message):
    strategies.check_strategies(sweep)
