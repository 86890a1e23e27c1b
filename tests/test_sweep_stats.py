"""The sweep report's statistics, checked against computations written out by
hand: Student's t intervals, paired differences, verdicts, the seeds a
difference needs, the paired bootstrap of the choice and the formatting."""

import math

import numpy as np
import pytest

from dvl.sweep import stats

# Student's t quantiles t_{0.975, df}, from a printed table.
T975 = {2: 4.302652729911275, 8: 2.306004135204166, 9: 2.262157162798205}


def test_mean_ci_is_the_student_t_interval():
  ci = stats.mean_ci([0.80, 0.82, 0.84])
  # mean 0.82; deviations ±0.02, 0: sd = sqrt((0.0004 + 0.0004) / 2) = 0.02.
  half = T975[2] * 0.02 / math.sqrt(3)  # 0.0496828...
  assert ci.n == 3
  assert ci.mean == pytest.approx(0.82)
  assert ci.sd == pytest.approx(0.02)
  assert ci.half_width == pytest.approx(half) == pytest.approx(0.0496828, 1e-6)
  assert (ci.low, ci.high) == pytest.approx((0.82 - half, 0.82 + half))


def test_mean_ci_of_one_value_has_no_interval():
  ci = stats.mean_ci([0.9])
  assert ci.mean == 0.9 and ci.n == 1
  assert math.isnan(ci.low) and math.isnan(ci.high) and math.isnan(ci.sd)
  assert math.isnan(ci.half_width)
  with pytest.raises(ValueError, match='non-empty'):
    stats.mean_ci([])


def test_paired_difference_pairs_by_seed_and_ignores_unshared_seeds():
  a = {0: 0.80, 1: 0.85, 2: 0.90, 7: 0.10}
  b = {2: 0.885, 0: 0.79, 1: 0.83, 5: 0.99}  # another order; 5 and 7 unpaired
  diff = stats.paired_difference(a, b)
  # Differences 0.01, 0.02, 0.015: mean 0.015, sd 0.005.
  half = T975[2] * 0.005 / math.sqrt(3)  # 0.0124207...
  assert diff.n == 3
  assert diff.mean == pytest.approx(0.015)
  assert diff.sd == pytest.approx(0.005)
  assert (diff.low, diff.high) == pytest.approx((0.015 - half, 0.015 + half))


def test_pairing_removes_a_shared_seed_effect():
  # Each seed moves both candidates by the same amount (0, +0.05, +0.10);
  # a is ahead by 0.01, 0.02, 0.015 on top of that.
  a = {0: 0.80, 1: 0.85, 2: 0.90}
  b = {0: 0.79, 1: 0.83, 2: 0.885}
  paired = stats.paired_difference(a, b)
  # Unpaired: sd(a) = 0.05; b has mean 0.835 and deviations -0.045,
  # -0.005, 0.05, so sd(b) = sqrt(0.00455 / 2) = 0.04770. The difference of
  # means has a standard error of sqrt(0.05^2 / 3 + 0.04770^2 / 3) = 0.03990,
  # against the paired 0.005 / sqrt(3) = 0.00289: fourteen times smaller.
  unpaired_se = math.sqrt(0.05 ** 2 / 3 + 0.04770 ** 2 / 3)
  assert stats.mean_ci(list(b.values())).sd == pytest.approx(0.04770, abs=1e-5)
  assert paired.sd / math.sqrt(3) < unpaired_se / 10
  assert stats.verdict(paired) == stats.WINS
  # Unpaired, the same data resolve nothing: both intervals overlap.
  ci_a, ci_b = stats.mean_ci(list(a.values())), stats.mean_ci(list(b.values()))
  assert ci_a.low < ci_b.high


def test_paired_difference_without_shared_seeds_names_them():
  with pytest.raises(ValueError, match=r'\[0, 1\].*\[2, 3\]'):
    stats.paired_difference({0: 0.5, 1: 0.6}, {2: 0.5, 3: 0.6})


@pytest.mark.parametrize('values, expected', [
    ([0.01, 0.02, 0.015], stats.WINS),
    ([-0.01, -0.02, -0.015], stats.LOSES),
    ([-0.01, 0.02, 0.015], stats.UNRESOLVED),
    ([0.05], stats.UNRESOLVED),
])
def test_verdict(values, expected):
  assert stats.verdict(stats.mean_ci(values)) == expected


def test_verdict_with_fewer_than_two_seeds_is_unresolved():
  one = stats.Interval(mean=0.5, low=0.4, high=0.6, n=1, sd=math.nan)
  assert stats.verdict(one) == stats.UNRESOLVED
  assert stats.UNRESOLVED == 'no difference resolved at this budget'


def _monte_carlo_power(n, sd, delta, crit, trials=200_000):
  """The share of simulated paired experiments whose t statistic, from n
  normal differences of mean delta and sd sd, exceeds crit in size."""
  rng = np.random.Generator(np.random.PCG64(1))
  d = rng.normal(delta, sd, size=(trials, n))
  t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
  return float(np.mean(np.abs(t) > crit))


def test_seeds_to_resolve_a_one_sd_difference_takes_ten_seeds():
  # Effect size delta / sd = 1 at 5 % two-sided and 80 % power: n = 10.
  # Simulated t-tests (the critical values from the table above) give power
  # 0.803 at n = 10 and 0.748 at n = 9.
  n = stats.seeds_to_resolve(sd=0.01, delta=0.01)
  assert n == 10
  assert _monte_carlo_power(10, 0.01, 0.01, T975[9]) == pytest.approx(
      0.803, abs=0.005)
  assert _monte_carlo_power(9, 0.01, 0.01, T975[8]) == pytest.approx(
      0.748, abs=0.005)
  assert _monte_carlo_power(9, 0.01, 0.01, T975[8]) < 0.8


def test_seeds_to_resolve_grows_with_the_noise():
  sds = [0.001, 0.003, 0.005, 0.01, 0.02, 0.05]
  needed = [stats.seeds_to_resolve(sd) for sd in sds]
  assert needed == sorted(needed)
  # Two seeds are not enough even for a tenfold effect: with one degree of
  # freedom t_crit = 12.71 and the power is 0.73.
  assert needed[0] == 3 and needed[-1] > 100
  # Roughly ((z_0.975 + z_0.8) sd / delta)^2 = 7.85 (sd / delta)^2 for many.
  assert needed[-1] == pytest.approx(7.85 * 25, rel=0.02)


def test_seeds_to_resolve_edge_cases():
  assert stats.seeds_to_resolve(math.nan) is None
  assert stats.seeds_to_resolve(0.0) == 2
  assert stats.seeds_to_resolve(1.0, delta=0.001) is None  # ~7.85e6 seeds
  with pytest.raises(ValueError, match='delta'):
    stats.seeds_to_resolve(0.01, delta=0.0)


def test_bootstrap_selection_a_dominant_candidate_always_wins():
  scores = {'a': {0: 0.70, 1: 0.71, 2: 0.69},
            'b': {0: 0.80, 1: 0.81, 2: 0.79}}
  assert stats.bootstrap_selection(scores) == {'a': 0.0, 'b': 1.0}


def test_bootstrap_selection_resamples_seeds_in_pairs():
  # b beats a by 0.001 on every seed, but the seeds differ by 0.1: resampled
  # separately the two would trade places; paired, b wins every draw.
  a = {0: 0.60, 1: 0.70, 2: 0.80, 3: 0.90}
  b = {s: v + 0.001 for s, v in a.items()}
  assert stats.bootstrap_selection({'a': a, 'b': b})['b'] == 1.0


def test_bootstrap_selection_breaks_ties_by_order():
  same = {0: 0.7, 1: 0.8, 2: 0.75}
  assert stats.bootstrap_selection({'x': same, 'y': dict(same)}) == {
      'x': 1.0, 'y': 0.0}
  assert stats.bootstrap_selection({'y': dict(same), 'x': same}) == {
      'y': 1.0, 'x': 0.0}


def test_bootstrap_selection_frequencies_by_hand():
  # Two seeds, four equally likely resamples: (0, 0) a 1.0 > b 0.5; (1, 1)
  # a 0.0 < b 0.5; (0, 1) and (1, 0) tie at 0.5 and go to a, listed first.
  # So a is chosen 3/4 of the time. Seed 9, which only b has, is ignored.
  scores = {'a': {0: 1.0, 1: 0.0}, 'b': {0: 0.5, 1: 0.5, 9: 1.0}}
  freq = stats.bootstrap_selection(scores, draws=20_000)
  assert sum(freq.values()) == pytest.approx(1.0)
  assert freq['a'] == pytest.approx(0.75, abs=0.015)


def test_bootstrap_selection_is_deterministic_for_a_seed():
  rng = np.random.Generator(np.random.PCG64(3))
  scores = {k: dict(enumerate(0.8 + 0.01 * rng.standard_normal(5)))
            for k in 'abc'}
  first = stats.bootstrap_selection(scores, seed=4)
  assert stats.bootstrap_selection(scores, seed=4) == first
  assert sum(first.values()) == pytest.approx(1.0)
  assert stats.bootstrap_selection(scores, seed=5) != first


def test_bootstrap_selection_needs_shared_seeds():
  with pytest.raises(ValueError, match='share no seed'):
    stats.bootstrap_selection({'a': {0: 0.5}, 'b': {1: 0.5}})


def test_runner_up_margin():
  scores = {'a': {0: 0.80, 1: 0.85, 2: 0.90},
            'b': {0: 0.79, 1: 0.83, 2: 0.885},
            'c': {0: 0.50, 1: 0.55, 2: 0.60}}
  runner_up, margin = stats.runner_up_margin(scores, 'a')
  assert runner_up == 'b'
  assert margin.mean == pytest.approx(0.015)
  assert margin.half_width == pytest.approx(T975[2] * 0.005 / math.sqrt(3))
  # The second-best besides the chosen one, even if the chosen is not best.
  assert stats.runner_up_margin(scores, 'c')[0] == 'a'
  with pytest.raises(ValueError, match="'d' is not a candidate"):
    stats.runner_up_margin(scores, 'd')


def test_spearman_by_hand():
  # Ranks of y: 2 1 4 3 5; d = -1 1 -1 1 0, sum d^2 = 4;
  # rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8.
  assert stats.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
  assert stats.spearman([1, 2, 3], [1, 8, 27]) == pytest.approx(1.0)
  assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert math.isnan(stats.spearman([1], [2]))
  assert math.isnan(stats.spearman([1, 2, 3], [0.5, 0.5, 0.5]))


def test_formatting():
  ci = stats.mean_ci([0.80, 0.82, 0.84])  # 0.82 ± 0.049683
  assert stats.fmt_pct(ci) == '82.00 ± 4.97'
  assert stats.fmt_pct(stats.mean_ci([0.8431])) == '84.31 (1 seed)'
  assert stats.fmt_percent(0.8431) == '84.31'
  assert stats.fmt_percent(0.8431, '%') == '84.31%'
  assert stats.fmt_percent(None, '%') == '—'
  diff = stats.paired_difference({0: 0.80, 1: 0.85, 2: 0.90},
                                 {0: 0.79, 1: 0.83, 2: 0.885})
  # 0.015 ± 0.0124207: [0.0025793, 0.0274207].
  assert stats.fmt_diff(diff) == '+1.50 [+0.26, +2.74]'
  assert stats.fmt_diff(stats.Interval(0.012, -0.003, 0.027, 4, 0.01)) == (
      '+1.20 [-0.30, +2.70]')
  assert stats.fmt_diff(stats.mean_ci([-0.012])) == '-1.20 (1 seed)'
