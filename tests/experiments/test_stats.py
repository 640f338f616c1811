"""The statistics of experiments, proven by simulation (issue #17; docs/experiments.md).

Every simulation is vectorised over thousands of experiments and seeded, so the figures are the same
on every run. Rates are checked against their target with a stated Monte Carlo margin: three standard
errors of a proportion estimated from the number of simulated experiments, sqrt(p (1 - p) / runs).
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from experiments import stats

ALPHA = 0.05


def mc_margin(p: float, runs: int) -> float:
    """Three Monte Carlo standard errors of a rate p measured over `runs` simulated experiments."""
    return 3 * math.sqrt(p * (1 - p) / runs)


def daily_conversions(rng, *, runs, days, per_day, rate_a, rate_b):
    """Cumulative customers and conversions per arm after each day: (n, x_a, x_b), x of shape (runs, days)."""
    n = per_day * np.arange(1, days + 1)
    x_a = rng.binomial(per_day, rate_a, size=(runs, days)).cumsum(axis=1)
    x_b = rng.binomial(per_day, rate_b, size=(runs, days)).cumsum(axis=1)
    return n, x_a, x_b


def daily_looks(n, x_a, x_b, *, tau):
    """The comparison at each daily look (0/1 values: Σx² = Σx), chaining the always-valid figures."""
    looks, previous = [], None
    for day in range(x_a.shape[1]):
        a = stats.mean_estimate(n[day], x_a[:, day], x_a[:, day])
        b = stats.mean_estimate(n[day], x_b[:, day], x_b[:, day])
        previous = stats.compare(a, b, tau=tau, alpha=ALPHA, previous=previous)
        looks.append(previous)
    return looks


def assert_verdicts_match_intervals(looks):
    """p < alpha exactly when the interval excludes 0, for every simulated experiment at every look."""
    for c in looks:
        np.testing.assert_array_equal(c.fixed_p < ALPHA, stats.excludes_zero(c.fixed_ci))
        np.testing.assert_array_equal(c.always_valid_p < ALPHA, stats.excludes_zero(c.always_valid_ci))


# A month of daily looks at a suggestion's conversion: 5% baseline, 500 customers a day per arm, and
# the smallest effect worth detecting one point (5% -> 6%).
BASELINE, MDE, DAYS, PER_DAY = 0.05, 0.01, 30, 500
TAU = stats.tau_for(MDE, alpha=ALPHA, power=0.8)


# ---------------------------------------------------------------------------------------------
# Assignment
# ---------------------------------------------------------------------------------------------


def test_assignment_is_pinned_so_a_customer_keeps_their_variant_across_processes_and_releases():
    ids = np.array([1, 2, 3, 42, 10**12, -5])
    assert stats.unit_hash(ids, salt="exp-17").tolist() == [
        0.5508546316366889,
        0.16753627762189838,
        0.6365183604678293,
        0.8103141426454274,
        0.5038883547258962,
        0.26395515755436305,
    ]
    assert stats.assign(ids, salt="exp-17", shares=(0.5, 0.5)).tolist() == [1, 0, 1, 1, 1, 0]
    assert stats.assign(ids, salt="exp-17", shares=(0.2, 0.3, 0.5), holdout=0.2).tolist() == [2, 0, 2, -1, 2, 1]


def test_another_process_with_another_hash_seed_assigns_the_same_variants():
    code = (
        "import numpy as np; from experiments.stats import assign;"
        "print(assign(np.arange(1000), salt='exp-17', shares=(0.5, 0.5), holdout=0.1).tolist())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    here = stats.assign(np.arange(1000), salt="exp-17", shares=(0.5, 0.5), holdout=0.1).tolist()
    assert out.strip() == str(here)


@pytest.mark.parametrize("ids", [np.arange(1, 1_000_001), np.arange(1, 1_000_001) * 1024], ids=["serial", "strided"])
def test_hash_buckets_are_uniform_for_serial_and_strided_customer_ids(ids):
    u = stats.unit_hash(ids, salt="exp-17")
    counts = np.bincount((u * 100).astype(int), minlength=100)
    assert sps.chisquare(counts).pvalue > 0.001


def test_two_experiments_assign_independently():
    ids = np.arange(1, 500_001)
    a = (stats.unit_hash(ids, salt="exp-17") * 10).astype(int)
    b = (stats.unit_hash(ids, salt="exp-18") * 10).astype(int)
    table = np.zeros((10, 10))
    np.add.at(table, (a, b), 1)
    assert sps.chi2_contingency(table).pvalue > 0.001
    # and a customer in B of one experiment is in B of the other half the time, not more
    va = stats.assign(ids, salt="exp-17", shares=(0.5, 0.5))
    vb = stats.assign(ids, salt="exp-18", shares=(0.5, 0.5))
    assert abs(np.mean(vb[va == 1]) - 0.5) < 0.005


def test_traffic_shares_are_respected():
    v = stats.assign(np.arange(200_000), salt="three-way", shares=(0.2, 0.3, 0.5))
    assert np.abs(np.bincount(v) / v.size - [0.2, 0.3, 0.5]).max() < 0.005
    assert not stats.srm(np.bincount(v), (0.2, 0.3, 0.5))["mismatch"]


def test_the_holdout_is_the_same_customers_in_every_experiment():
    ids = np.arange(100_000)
    one = stats.assign(ids, salt="exp-17", shares=(0.5, 0.5), holdout=0.1)
    other = stats.assign(ids, salt="campaign-variants", shares=(0.3, 0.7), holdout=0.1)
    np.testing.assert_array_equal(one == -1, other == -1)
    assert abs(np.mean(one == -1) - 0.1) < 0.005
    # the customers left in are still split by the shares
    assert not stats.srm(np.bincount(other[other >= 0]), (0.3, 0.7))["mismatch"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(customer_ids=np.array([1.5, 2.0]), salt="x", shares=(0.5, 0.5)), "customer_ids must be integers"),
        (dict(customer_ids=np.arange(3), salt="x", shares=(0.5, 0.6)), "shares must add up to 1"),
        (dict(customer_ids=np.arange(3), salt="x", shares=(1.0,)), "at least two variants"),
        (dict(customer_ids=np.arange(3), salt="x", shares=(0.5, 0.5), holdout=1.0), "holdout must be a share"),
        (dict(customer_ids=np.arange(3), salt="", shares=(0.5, 0.5)), "salt must be a non-empty string"),
    ],
)
def test_bad_assignment_input_is_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stats.assign(**kwargs)


# ---------------------------------------------------------------------------------------------
# The sequential test under daily looks
# ---------------------------------------------------------------------------------------------


def test_a_a_tests_looked_at_daily_reject_at_most_5_percent_while_the_naive_test_rejects_far_more():
    runs = 10_000
    rng = np.random.default_rng(17)
    n, x_a, x_b = daily_conversions(rng, runs=runs, days=DAYS, per_day=PER_DAY, rate_a=BASELINE, rate_b=BASELINE)
    looks = daily_looks(n, x_a, x_b, tau=TAU)

    msprt_rejected = looks[-1].always_valid_p < ALPHA  # running minimum: rejected at some look
    naive_rejected = np.any([c.fixed_p < ALPHA for c in looks], axis=0)  # stop at the first fixed p < 0.05

    assert msprt_rejected.mean() <= ALPHA + mc_margin(ALPHA, runs)  # measured: 1.4% (140 of 10,000)
    assert naive_rejected.mean() > 0.15  # measured: 28%: why the fixed test cannot be looked at daily
    # the fixed test at the single planned look is the 5% it claims
    assert abs((looks[-1].fixed_p < ALPHA).mean() - ALPHA) <= mc_margin(ALPHA, runs)
    assert_verdicts_match_intervals(looks)


def test_the_always_valid_interval_holds_the_true_effect_at_every_look_and_the_fixed_one_at_the_end():
    runs, true_effect = 10_000, 0.005
    rng = np.random.default_rng(18)
    n, x_a, x_b = daily_conversions(
        rng, runs=runs, days=DAYS, per_day=PER_DAY, rate_a=BASELINE, rate_b=BASELINE + true_effect
    )
    looks = daily_looks(n, x_a, x_b, tau=TAU)

    covered_every_day = np.all(
        [(c.always_valid_ci[0] <= true_effect) & (true_effect <= c.always_valid_ci[1]) for c in looks], axis=0
    )
    assert covered_every_day.mean() >= 0.95 - mc_margin(0.95, runs)  # measured: 98.5%
    end = looks[-1]
    fixed_coverage = ((end.fixed_ci[0] <= true_effect) & (true_effect <= end.fixed_ci[1])).mean()
    assert abs(fixed_coverage - 0.95) <= mc_margin(0.95, runs)
    assert_verdicts_match_intervals(looks)


def test_an_effect_of_the_declared_minimum_size_is_found_with_the_declared_power():
    plan = stats.sample_size(baseline=BASELINE, mde=MDE, alpha=ALPHA, power=0.8, looks=DAYS)
    per_day = math.ceil(plan.per_variant[0] / DAYS)
    runs = 4_000
    rng = np.random.default_rng(19)
    n, x_a, x_b = daily_conversions(rng, runs=runs, days=DAYS, per_day=per_day, rate_a=BASELINE, rate_b=BASELINE + MDE)
    looks = daily_looks(n, x_a, x_b, tau=TAU)

    b_better = np.any([(c.always_valid_p < ALPHA) & (c.difference > 0) for c in looks], axis=0)
    assert b_better.mean() >= 0.8 - mc_margin(0.8, runs)  # measured: 79.9% (MC margin 1.9 points)
    # the sequential test pays for its freedom with a larger sample than the fixed test's
    fixed = stats.sample_size(baseline=BASELINE, mde=MDE, alpha=ALPHA, power=0.8, sequential=False)
    assert 1.5 < plan.total / fixed.total < 2.0
    assert_verdicts_match_intervals(looks)


def test_the_fixed_test_at_its_planned_size_has_the_declared_power():
    plan = stats.sample_size(baseline=BASELINE, mde=MDE, alpha=ALPHA, power=0.8, sequential=False)
    runs, n = 10_000, plan.per_variant[0]
    rng = np.random.default_rng(20)
    x_a, x_b = rng.binomial(n, BASELINE, runs), rng.binomial(n, BASELINE + MDE, runs)
    c = stats.compare(stats.mean_estimate(n, x_a, x_a), stats.mean_estimate(n, x_b, x_b), tau=TAU)
    assert abs(((c.fixed_p < ALPHA) & (c.difference > 0)).mean() - 0.8) <= mc_margin(0.8, runs)


def test_the_mixture_width_follows_the_minimum_detectable_effect():
    # at alpha 0.05 and power 0.8 the rule gives tau close to the mde itself, whatever the metric's scale
    assert stats.tau_for(0.01) == pytest.approx(0.01023, rel=1e-3)
    assert stats.tau_for(2.5) == pytest.approx(2.5 * stats.tau_for(1.0))


# ---------------------------------------------------------------------------------------------
# Ratio and skewed metrics
# ---------------------------------------------------------------------------------------------


def click_population(rng, runs, customers, ctr_lift):
    """Impressions and clicks per customer: a few heavy viewers, most see a handful; each customer's own
    click-through varies (Beta(0.5, 9.5), mean 5%), so their impressions are not independent trials."""
    impressions = rng.negative_binomial(1, 1 / 9, size=(runs, customers)) + 1  # mean 9, long tail
    ctr = rng.beta(0.5, 9.5, size=(runs, customers)) * ctr_lift
    clicks = rng.binomial(impressions, np.minimum(ctr, 1.0))
    return clicks, impressions


def test_the_ratio_metric_delta_method_interval_covers_the_true_click_through_difference():
    runs, customers = 2_000, 2_000
    rng = np.random.default_rng(21)
    x_a, y_a = click_population(rng, runs, customers, 1.0)
    x_b, y_b = click_population(rng, runs, customers, 1.1)
    true_effect = 0.05 * 1.1 - 0.05  # impressions and a customer's taste are independent here

    def estimate(x, y):
        return stats.ratio_estimate(customers, x.sum(1), y.sum(1), (x * x).sum(1), (y * y).sum(1), (x * y).sum(1))

    c = stats.compare(estimate(x_a, y_a), estimate(x_b, y_b), tau=TAU)
    covered = (c.fixed_ci[0] <= true_effect) & (true_effect <= c.fixed_ci[1])
    assert abs(covered.mean() - 0.95) <= mc_margin(0.95, runs)  # measured: 95%

    # counting impressions as independent trials (the binomial variance) would claim too much precision
    def naive_variance(x, y):
        r = x.sum(1) / y.sum(1)
        return r * (1 - r) / y.sum(1)

    naive_se = np.sqrt(naive_variance(x_a, y_a) + naive_variance(x_b, y_b))
    naive_covered = np.abs(c.difference - true_effect) <= 1.96 * naive_se
    assert naive_covered.mean() < 0.90  # measured: 78%


def test_summaries_per_variant_match_the_sums_for_one_experiment():
    rng = np.random.default_rng(22)
    clicks, impressions = click_population(rng, 1, 3_000, 1.0)
    clicks, impressions = clicks[0], impressions[0]
    variants = stats.assign(np.arange(3_000), salt="ctr", shares=(0.5, 0.5), holdout=0.1)
    a, b = stats.summarize(variants, clicks, denominator=impressions)
    in_a = variants == 0
    assert a.n == in_a.sum()
    assert a.value == pytest.approx(clicks[in_a].sum() / impressions[in_a].sum())
    x, y = clicks[in_a].astype(float), impressions[in_a].astype(float)
    r = x.mean() / y.mean()
    delta = (x.var(ddof=1) - 2 * r * np.cov(x, y)[0, 1] + r * r * y.var(ddof=1)) / (x.size * y.mean() ** 2)
    assert a.variance == pytest.approx(delta)
    assert b.n + a.n == (variants >= 0).sum()


def test_revenue_per_customer_with_many_zeros_and_a_long_tail_gets_a_covering_interval():
    runs, customers = 2_000, 3_000
    rng = np.random.default_rng(23)

    def revenue(buy_rate):
        buys = rng.random((runs, customers)) < buy_rate
        return np.where(buys, rng.lognormal(3.5, 1.0, (runs, customers)), 0.0)

    a, b = revenue(0.06), revenue(0.066)
    true_effect = 0.006 * math.exp(3.5 + 0.5)
    c = stats.compare(
        stats.mean_estimate(customers, a.sum(1), (a * a).sum(1)),
        stats.mean_estimate(customers, b.sum(1), (b * b).sum(1)),
        tau=stats.tau_for(0.5),
    )
    covered = (c.fixed_ci[0] <= true_effect) & (true_effect <= c.fixed_ci[1])
    assert covered.mean() >= 0.95 - mc_margin(0.95, runs)  # measured: 95.5%
    np.testing.assert_array_equal(c.always_valid_p < ALPHA, stats.excludes_zero(c.always_valid_ci))
    # one variant's own interval feels the skew more than the difference does (180 buyers of 3,000):
    # measured 93.3%, a known limit of the normal interval on a single skewed mean (docs/experiments.md)
    low, high = c.control.ci()
    true_control = 0.06 * math.exp(3.5 + 0.5)
    assert ((low <= true_control) & (true_control <= high)).mean() >= 0.92


def test_a_a_tests_on_skewed_metrics_looked_at_daily_stay_under_5_percent():
    """The plug-in variance is the weak point of the guarantee on small, skewed samples: a first day of
    100 customers per arm holds about 6 buyers, and a few heavy viewers dominate the impressions."""
    days, per_day = 30, 100

    runs = 2_000
    rng = np.random.default_rng(40)
    sums, revenue = np.zeros((4, runs)), None
    for day in range(1, days + 1):
        for arm in (0, 1):
            buys = rng.random((runs, per_day)) < 0.06
            r = np.where(buys, rng.lognormal(3.5, 1.0, (runs, per_day)), 0.0)
            sums[2 * arm] += r.sum(1)
            sums[2 * arm + 1] += (r * r).sum(1)
        n = per_day * day
        a, b = stats.mean_estimate(n, sums[0], sums[1]), stats.mean_estimate(n, sums[2], sums[3])
        revenue = stats.compare(a, b, tau=stats.tau_for(1.0), previous=revenue)
    assert (revenue.always_valid_p < ALPHA).mean() <= ALPHA + mc_margin(ALPHA, runs)  # measured: 0.7%

    runs = 1_000
    rng = np.random.default_rng(41)
    sums, ctr = np.zeros((10, runs)), None
    for day in range(1, days + 1):
        for arm in (0, 1):
            x, y = click_population(rng, runs, per_day, 1.0)
            sums[5 * arm : 5 * arm + 5] += [x.sum(1), y.sum(1), (x * x).sum(1), (y * y).sum(1), (x * y).sum(1)]
        n = per_day * day
        a, b = stats.ratio_estimate(n, *sums[:5]), stats.ratio_estimate(n, *sums[5:])
        ctr = stats.compare(a, b, tau=stats.tau_for(0.005), previous=ctr)
    assert (ctr.always_valid_p < ALPHA).mean() <= ALPHA + mc_margin(ALPHA, runs)  # measured: 0.9%


# ---------------------------------------------------------------------------------------------
# Sample-ratio mismatch
# ---------------------------------------------------------------------------------------------


def test_srm_flags_a_52_48_split_and_leaves_a_true_50_50_alone():
    assert stats.srm([10_400, 9_600], (0.5, 0.5))["mismatch"]
    assert not stats.srm([10_050, 9_950], (0.5, 0.5))["mismatch"]

    runs, n = 100_000, 20_000
    rng = np.random.default_rng(24)
    fair = rng.binomial(n, 0.5, runs)
    false_alarms = stats.srm(np.stack([fair, n - fair], axis=1), (0.5, 0.5))["mismatch"].mean()
    assert abs(false_alarms - 0.001) <= mc_margin(0.001, runs)  # measured: 0.105%
    broken = rng.binomial(n, 0.52, runs)
    assert stats.srm(np.stack([broken, n - broken], axis=1), (0.5, 0.5))["mismatch"].mean() > 0.98


# ---------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------


def one_experiment(rng, n, rate_a, rate_b):
    x = np.concatenate([rng.random(n) < rate_a, rng.random(n) < rate_b]).astype(float)
    return stats.summarize(np.repeat([0, 1], n), x)


def test_a_planted_winner_is_called_and_an_a_a_test_is_not():
    rng = np.random.default_rng(25)
    winner = stats.analyze(one_experiment(rng, 30_000, 0.05, 0.065), mde=MDE, shares=(0.5, 0.5))
    assert (winner.verdict, winner.winner) == (stats.B_BETTER, 1)
    assert not winner.srm["mismatch"]
    same = stats.analyze(one_experiment(rng, 30_000, 0.05, 0.05), mde=MDE)
    assert (same.verdict, same.winner) == (stats.NO_DIFFERENCE_YET, None)
    worse = stats.analyze(one_experiment(rng, 30_000, 0.065, 0.05), mde=MDE)
    assert (worse.verdict, worse.winner) == (stats.A_BETTER, 0)


def test_lower_is_better_metrics_turn_the_verdict_around():
    rng = np.random.default_rng(26)
    fewer_unsubscribes = stats.analyze(one_experiment(rng, 30_000, 0.05, 0.035), mde=MDE, higher_is_better=False)
    assert (fewer_unsubscribes.verdict, fewer_unsubscribes.winner) == (stats.B_BETTER, 1)


def test_harm_on_a_guard_rail_stops_the_experiment_even_when_the_primary_metric_wins():
    rng = np.random.default_rng(27)
    primary = one_experiment(rng, 30_000, 0.05, 0.065)
    unsubscribes = stats.GuardRail(one_experiment(rng, 30_000, 0.01, 0.02), mde=0.005, higher_is_better=False)
    result = stats.analyze(primary, mde=MDE, guardrails={"unsubscribe rate": unsubscribes})
    assert (result.verdict, result.winner) == (stats.GUARDRAIL_HARM, None)
    assert result.reasons == ["variant 1 is worse on unsubscribe rate"]


def test_a_broken_split_voids_the_verdict():
    rng = np.random.default_rng(28)
    x = np.concatenate([rng.random(10_400) < 0.05, rng.random(9_600) < 0.07]).astype(float)
    result = stats.analyze(stats.summarize(np.repeat([0, 1], [10_400, 9_600]), x), mde=MDE, shares=(0.5, 0.5))
    assert (result.verdict, result.winner) == (stats.SAMPLE_RATIO_MISMATCH, None)


def test_with_three_variants_the_best_significant_one_wins():
    rng = np.random.default_rng(29)
    n = 30_000
    x = np.concatenate([rng.random(n) < 0.05, rng.random(n) < 0.058, rng.random(n) < 0.07]).astype(float)
    result = stats.analyze(stats.summarize(np.repeat([0, 1, 2], n), x), mde=MDE)
    assert (result.verdict, result.winner) == (stats.B_BETTER, 2)
    assert result.primary[0].alpha == ALPHA / 2  # two treatments against the control


def test_the_always_valid_p_value_only_goes_down_and_the_interval_only_narrows_over_looks():
    rng = np.random.default_rng(30)
    n, x_a, x_b = daily_conversions(rng, runs=200, days=DAYS, per_day=PER_DAY, rate_a=BASELINE, rate_b=0.055)
    looks = daily_looks(n, x_a, x_b, tau=TAU)
    p = np.stack([c.always_valid_p for c in looks], axis=1)
    width = np.stack([c.always_valid_ci[1] - c.always_valid_ci[0] for c in looks], axis=1)
    assert np.all(np.diff(p, axis=1) <= 0)
    assert np.all(np.diff(width, axis=1) <= 0)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def test_sample_size_and_duration_for_a_conversion_experiment():
    fixed = stats.sample_size(baseline=0.05, mde=0.01, sequential=False)
    # the textbook figure: (1.96 + 0.84)² (0.05·0.95 + 0.06·0.94) / 0.01² ≈ 8,155 per arm
    assert fixed.per_variant == (8_155, 8_155)
    plan = stats.sample_size(baseline=0.05, mde=0.01)
    assert plan.total > fixed.total
    assert stats.expected_days(plan.total, daily_traffic=1_000) == math.ceil(plan.total / 1_000)
    # an unequal split needs more customers in all than an even one
    assert stats.sample_size(baseline=0.05, mde=0.01, shares=(0.2, 0.8)).total > plan.total


def test_sample_size_for_a_mean_metric_needs_its_variance():
    with pytest.raises(ValueError, match="variance"):
        stats.sample_size(baseline=50.0, mde=2.0, kind="mean")
    plan = stats.sample_size(baseline=50.0, mde=2.0, kind="mean", variance=400.0, sequential=False)
    assert plan.per_variant[0] == math.ceil((sps.norm.isf(0.025) + sps.norm.ppf(0.8)) ** 2 * 800 / 4)


def test_expected_days_refuses_no_traffic():
    with pytest.raises(ValueError, match="daily_traffic"):
        stats.expected_days(1_000, daily_traffic=0)


# ---------------------------------------------------------------------------------------------
# The campaign report's test
# ---------------------------------------------------------------------------------------------


def test_two_proportion_keeps_the_campaign_report_shape_and_its_interval_and_p_value_agree():
    from campaigns.stats import two_proportion as campaign_two_proportion

    # the campaign report now uses this very function (campaigns.stats re-exports it)
    assert campaign_two_proportion is stats.two_proportion
    # a small control group: the Wald interval excludes 0 and the pooled z-test the report used
    # before gave p = 0.063; now both come from one statistic
    new = stats.two_proportion(30, 785, 1, 138)
    pooled = 31 / 923
    pooled_z = new["uplift_abs"] / math.sqrt(pooled * (1 - pooled) * (1 / 785 + 1 / 138))
    assert math.erfc(abs(pooled_z) / math.sqrt(2)) > 0.05 and new["uplift_abs_ci"][0] > 0
    assert new["p_value"] < 0.05 and new["significant"]

    rng = np.random.default_rng(31)
    for _ in range(2_000):
        n_t, n_c = int(rng.integers(20, 5_000)), int(rng.integers(20, 1_000))
        r = stats.two_proportion(int(rng.binomial(n_t, 0.04)), n_t, int(rng.binomial(n_c, 0.03)), n_c)
        lo, hi = r["uplift_abs_ci"]
        assert r["significant"] == (lo > 0 or hi < 0)


def test_two_proportion_edge_cases():
    assert stats.two_proportion(0, 0, 3, 10)["p_value"] is None
    assert stats.two_proportion(0, 100, 0, 100)["p_value"] == 1.0
    with pytest.raises(ValueError, match="conversions cannot exceed"):
        stats.two_proportion(11, 10, 0, 10)


def test_the_plan_at_current_traffic_looks_once_a_day_for_as_many_days_as_it_lasts():
    plan, days = stats.plan_experiment(baseline=0.05, mde=0.01, daily_traffic=2_000)
    assert days == stats.expected_days(plan.total, daily_traffic=2_000)
    assert plan == stats.sample_size(baseline=0.05, mde=0.01, looks=days)
    # less traffic: a longer experiment, looked at more often, needs a little fewer customers in all
    slower, slower_days = stats.plan_experiment(baseline=0.05, mde=0.01, daily_traffic=500)
    assert slower_days > days
    assert slower.total <= plan.total


def test_an_arm_without_data_gives_no_verdict_rather_than_a_false_one():
    empty = stats.summarize(np.array([0, 0, 0]), np.array([1.0, 0.0, 1.0]), n_variants=2)
    c = stats.compare(empty[0], empty[1], tau=TAU)
    assert math.isnan(c.fixed_p) and math.isnan(c.always_valid_p)
    assert not c.significant and not c.fixed_significant
    no_impressions = stats.summarize(np.array([0, 0, 1, 1]), np.zeros(4), denominator=np.zeros(4))
    assert all(math.isnan(e.value) for e in no_impressions)
