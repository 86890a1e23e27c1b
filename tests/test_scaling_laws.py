"""Scaling laws that predict (dvl.sweep.laws) and the star sweep's
coefficients (dvl.sweep.star), on synthetic results of known parameters."""

import math

import numpy as np
import pytest

from dvl.sweep import laws, star

A, B, C = 0.30, 0.45, 0.08  # the synthetic law E = A·(cost / cost_0)^(−B) + C
COST0 = 1.6e6  # the baseline's MACs
SEEDS = (0, 1, 2, 3)


def synthetic(phis=range(6), noise=0.0, law=None, seed=0):
  """(phi, cost, {seed: error}) with cost = COST0·2^φ."""
  law = law or (lambda x: A * x ** -B + C)
  rng = np.random.default_rng(seed)
  return [(phi, COST0 * 2.0 ** phi,
           {s: float(law(2.0 ** phi) + noise * rng.standard_normal())
            for s in SEEDS}) for phi in phis]


def test_fit_recovers_a_known_law():
  law = laws.fit(synthetic(range(5)))
  assert (law.a, law.b, law.c) == pytest.approx((A, B, C), rel=1e-6)
  assert law.cost_ref == COST0 and law.phis == (0, 1, 2, 3, 4)
  assert float(law(COST0 * 2 ** 7)) == pytest.approx(A * 2 ** (-7 * B) + C)


def test_fit_recovers_a_noisy_law_within_its_standard_errors():
  law = laws.fit(synthetic(range(6), noise=0.002))
  for got, true, err in zip((law.a, law.b, law.c), (A, B, C), law.stderr):
    assert 0 < err < 0.5 * true
    assert abs(got - true) < 4 * err


def test_heldout_prediction_of_a_true_law_is_within_the_spread():
  result = laws.heldout(synthetic(range(5), noise=0.003, seed=1))
  assert result.phi == 4 and result.law.phis == (0, 1, 2, 3)
  true = A * 2 ** (-4 * B) + C
  assert result.measured.n == len(SEEDS)
  assert result.measured.mean == pytest.approx(true, abs=0.006)
  assert result.predicted == pytest.approx(true, abs=0.01)
  assert result.error_points == pytest.approx(
      100 * (result.predicted - result.measured.mean))
  assert result.spread_points == pytest.approx(
      100 * result.measured.half_width)
  assert result.verdict == laws.WITHIN


def test_heldout_at_an_earlier_phi_fits_only_below_it():
  result = laws.heldout(synthetic(range(6)), phi=3)
  assert result.law.phis == (0, 1, 2)
  assert result.predicted == pytest.approx(A * 2 ** (-3 * B) + C, rel=1e-6)


def test_a_law_that_breaks_at_the_heldout_phi_is_flagged():
  # Error falls slowly, then sharply at φ = 4 (a regime the fit never saw).
  def broken(x):
    return 0.25 - 0.01 * math.log2(x) if x < 16 else 0.05
  result = laws.heldout(synthetic(range(5), noise=0.002, law=broken))
  assert result.verdict == laws.OUTSIDE
  assert result.error_points > 5  # it predicts about 21%, measures 5%


def test_a_law_that_turns_up_is_flagged():
  # Overfitting: error rises again at φ = 4; a saturating law cannot.
  def turning(x):
    return A * x ** -B + C + (0.1 if x >= 16 else 0.0)
  result = laws.heldout(synthetic(range(5), noise=0.002, law=turning))
  assert result.verdict == laws.OUTSIDE
  assert result.error_points < -5


def test_one_seed_has_no_spread_to_judge_by():
  points = [(phi, cost, {0: e[0]}) for phi, cost, e in synthetic(range(5))]
  result = laws.heldout(points)
  assert result.verdict == laws.NO_SPREAD and math.isnan(result.spread_points)


def test_three_means_fit_exactly_and_have_no_standard_errors():
  points = [(phi, cost, [e[0]]) for phi, cost, e in synthetic(range(3))]
  law = laws.fit(points)
  assert [float(law(cost)) for _, cost, _ in points] == pytest.approx(
      [e[0] for _, _, e in points], abs=1e-9)
  assert all(math.isnan(e) for e in law.stderr)


def test_fewer_than_three_phis_are_refused():
  with pytest.raises(ValueError, match='at least 3 phi values'):
    laws.fit(synthetic(range(2)))
  with pytest.raises(ValueError, match='at least 3 phi values'):
    laws.heldout(synthetic(range(3)))


def test_bad_points_are_refused():
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    laws.fit([(0, 1.0, [0.5]), (1, 2.0, [1.5]), (2, 4.0, [0.2])])
  with pytest.raises(ValueError, match='cost must be > 0'):
    laws.fit([(0, 0.0, [0.5]), (1, 2.0, [0.4]), (2, 4.0, [0.2])])
  with pytest.raises(ValueError, match='no points at the held-out phi'):
    laws.heldout(synthetic(range(4)), phi=7)


def test_points_from_series_turn_accuracies_into_errors():
  series = [{'phi': 0, 'macs': 10, 'values': {0: 0.9, 1: 0.8}},
            {'phi': 1, 'macs': 20, 'values': {0: 0.95}}]
  assert laws.points_from_series(series) == [
      (0, 10, {0: pytest.approx(0.1), 1: pytest.approx(0.2)}),
      (1, 20, {0: pytest.approx(0.05)})]


@pytest.mark.parametrize('law, message', [
    ({'holdout': 2}, 'integer >= 3'),
    ({'holdout': 3.0}, 'integer >= 3'),
    ({'holdout': 5}, 'beyond sweep.max_phi'),
])
def test_check_law_refuses_bad_settings(law, message):
  with pytest.raises(ValueError, match=message):
    laws.check_law({'max_phi': 4, 'law': law})


def test_check_law_accepts_good_settings():
  for sweep in ({}, {'law': {'holdout': 0}}, {'max_phi': 4,
                                              'law': {'holdout': 4}}):
    laws.check_law(sweep)


# The star sweep.

E0 = 0.30  # the baseline's error
EXPONENTS = {'depth': 0.10, 'width': 0.20, 'resolution': 0.15}


def star_runs(exponents, multipliers=(1.25, 1.5, 2.0), noise=0.0):
  """{dimension: {m: [errors]}} from E_k = E0·C_k^(−b_k), C_k = m^p_k."""
  rng = np.random.default_rng(0)
  return {k: {m: [E0 * (m ** star.COST_POWER[k]) ** -b
                  * (1 + noise * rng.standard_normal()) for _ in SEEDS]
              for m in multipliers}
          for k, b in exponents.items()}


def test_star_recovers_the_per_dimension_exponents():
  result = star.derive([E0] * 4, star_runs(EXPONENTS))
  for k, b in EXPONENTS.items():
    assert result.laws[k] == pytest.approx((E0, b), rel=1e-9)


def test_shape_rule_shares_cost_in_inverse_proportion_to_the_exponents():
  result = star.derive([E0] * 4, star_runs(EXPONENTS))
  inverse = {k: 1 / b for k, b in EXPONENTS.items()}  # 10, 5, 6.67
  for k in star.DIMENSIONS:
    assert result.share[k] == pytest.approx(inverse[k] / sum(
        inverse.values()), rel=1e-9)
  alpha, beta, gamma = result.coefficients
  assert alpha == pytest.approx(2 ** (10 / (10 + 5 + 20 / 3)), rel=1e-9)
  assert alpha * beta ** 2 * gamma ** 2 == pytest.approx(2.0, rel=1e-9)
  assert result.rule == 'shape'


def test_budget_rule_equalises_marginal_gains():
  result = star.derive({0: E0}, star_runs(EXPONENTS, noise=0.01),
                       target=2.0 ** 12, rule='budget')
  alpha, beta, gamma = result.coefficients
  assert alpha * beta ** 2 * gamma ** 2 == pytest.approx(2.0 ** 12, rel=1e-9)
  assert sum(result.share.values()) == pytest.approx(1.0)
  gains = [b * a * result.cost[k] ** -b for k, (a, b) in result.laws.items()]
  assert min(result.share.values()) > 0
  assert max(gains) == pytest.approx(min(gains), rel=1e-6)


def test_budget_rule_is_the_cheapest_split():
  laws_ = {k: (E0, b) for k, b in EXPONENTS.items()}

  def error(log_c):
    return sum(a * math.exp(-b * log_c[k]) for k, (a, b) in laws_.items())

  rng = np.random.default_rng(1)
  for target in (2.0, 2.0 ** 6):
    best = star.allocate(laws_, target, rule='budget')
    for split in rng.dirichlet(np.ones(3), size=200):
      other = dict(zip(laws_, split * math.log(target)))
      assert error(best) <= error(other) + 1e-12


def test_budget_rule_at_two_is_a_corner_and_tends_to_the_shape_rule():
  # Marginal gains b·A at the baseline: 0.03, 0.06, 0.045. Width alone
  # reaches resolution's 0.045 only at ln C = ln(0.06 / 0.045) / 0.2 = 1.44,
  # beyond ln 2, so at a budget of 2 width takes it all.
  laws_ = {k: (E0, b) for k, b in EXPONENTS.items()}
  assert star.allocate(laws_, 2.0, rule='budget') == pytest.approx(
      {'depth': 0.0, 'width': math.log(2), 'resolution': 0.0})
  big = 2.0 ** 1000
  budget = star.allocate(laws_, big, rule='budget')
  shape = star.allocate(laws_, big, rule='shape')
  for k in laws_:
    assert budget[k] / math.log(big) == pytest.approx(
        shape[k] / math.log(big), abs=0.02)


@pytest.mark.parametrize('rule', star.RULES)
def test_equal_exponents_give_uniform_scaling(rule):
  result = star.derive(E0, star_runs({k: 0.2 for k in star.DIMENSIONS}),
                       rule=rule)
  assert result.coefficients == pytest.approx(
      (2 ** (1 / 3), 2 ** (1 / 6), 2 ** (1 / 6)), rel=1e-9)


def test_a_dimension_whose_error_does_not_fall_gets_nothing():
  exponents = dict(EXPONENTS, depth=-0.05)
  result = star.derive(E0, star_runs(exponents))
  assert result.share['depth'] == 0 and result.coefficients[0] == 1.0
  assert result.cost['width'] * result.cost['resolution'] == pytest.approx(2)
  with pytest.raises(ValueError, match='no dimension'):
    star.derive(E0, star_runs({k: -0.1 for k in star.DIMENSIONS}))


@pytest.mark.parametrize('multipliers, message', [
    ((1.0, 1.5, 2.0), 'must all exceed 1'),
    ((0.8, 1.5), 'must all exceed 1'),
    ((1.5,), 'at least 2 distinct'),
    ((1.5, 1.5), 'at least 2 distinct'),
])
def test_star_multipliers_must_exceed_one(multipliers, message):
  with pytest.raises(ValueError, match=message):
    star.check_star({'search': 'star', 'star': {'multipliers': multipliers}})
  runs = star_runs(EXPONENTS)
  runs['width'] = {m: [E0] for m in multipliers}
  with pytest.raises(ValueError, match=message):
    star.derive(E0, runs)


def test_check_star_reads_the_sweep_fields():
  assert star.check_star({'search': 'grid'}) is None
  assert star.check_star({'search': 'star',
                          'star': {'multipliers': (1.25, 2)}}) == (1.25, 2.0)
  with pytest.raises(ValueError, match='needs sweep.star.multipliers'):
    star.check_star({'search': 'star'})
  with pytest.raises(ValueError, match='shape, budget'):
    star.check_star({'search': 'star',
                     'star': {'multipliers': (1.25, 2), 'rule': 'greedy'}})
  with pytest.raises(ValueError, match='shape, budget'):
    star.allocate({'depth': (E0, 0.1)}, rule='greedy')


def test_star_needs_all_three_dimensions():
  runs = star_runs(EXPONENTS)
  del runs['resolution']
  with pytest.raises(ValueError, match=r"missing \['resolution'\]"):
    star.derive(E0, runs)
