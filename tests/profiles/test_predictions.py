"""The repeat-buying models (profiles.predictions): parameters recovered from simulated BG/NBD and Gamma-Gamma
populations, forecasts that match what the simulated customers then do, the prior for the never-bought, the
guards of the fit, and agreement with the reference library (lifetimes) on UCI Online Retail."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from profiles import predictions as P

H = 90.0
TRUE = P.BGNBD(r=0.5, alpha=20.0, a=0.8, b=2.5)


def simulate(n: int, model: P.BGNBD = TRUE, *, horizon: float = H, seed: int = 1, slots: int = 200):
    """``n`` BG/NBD customers: history (x, t_x, T) in days, and their orders in the ``horizon`` after T.

    While alive a customer orders at rate lambda ~ Gamma(r, alpha); right after each repeat order they stop
    with probability p ~ Beta(a, b)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(model.r, 1 / model.alpha, n)
    p = rng.beta(model.a, model.b, n)
    T = rng.integers(30, 400, n).astype(float)
    times = np.cumsum(rng.exponential(1.0, (n, slots)) / lam[:, None], axis=1)
    last_allowed = rng.geometric(p)  # the repeat order after which the customer stops
    allowed = np.arange(1, slots + 1)[None, :] <= last_allowed[:, None]
    assert (~allowed[:, -1] | (times[:, -1] > T + horizon)).all(), "too few slots simulated"
    x = ((times <= T[:, None]) & allowed).sum(axis=1)
    t_x = np.where(x > 0, np.take_along_axis(times, np.maximum(x - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    future = ((times > T[:, None]) & (times <= (T + horizon)[:, None]) & allowed).sum(axis=1)
    return x.astype(float), t_x, T, future.astype(float)


@pytest.fixture(scope="module")
def population():
    return simulate(30_000)


def test_bgnbd_recovers_the_parameters_of_a_simulated_population(population):
    x, t_x, T, _ = population
    fitted = P.fit_bgnbd(x, t_x, T)
    assert fitted.buyers == 30_000
    for name, tolerance in (("r", 0.1), ("alpha", 0.1), ("a", 0.25), ("b", 0.25)):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE, name), rel=tolerance), name
    # the fitted model is at least as likely as the true one (a maximum)
    assert P.bgnbd_log_likelihood(fitted, x, t_x, T).sum() >= P.bgnbd_log_likelihood(TRUE, x, t_x, T).sum()


def test_forecasts_match_what_simulated_customers_then_do(population):
    x, t_x, T, future = population
    fitted = P.fit_bgnbd(x, t_x, T)
    expected = P.expected_orders(fitted, x, t_x, T, H)
    assert expected.sum() == pytest.approx(future.sum(), rel=0.05)
    # by how much they bought so far, the groups' forecasts follow what they do next
    for group in (x == 0, (x >= 1) & (x < 4), x >= 4):
        assert expected[group].mean() == pytest.approx(future[group].mean(), rel=0.12)
    # churn risk is the chance of no order: it matches the share of customers who order nothing
    churn = P.no_order_probability(fitted, x, t_x, T, H)
    assert churn.mean() == pytest.approx((future == 0).mean(), abs=0.02)
    # a customer long silent after many orders has likely stopped; the same customer who just ordered has not
    silent, recent = P.p_alive(fitted, [8, 8], [100, 390], [400, 400])
    assert silent < 0.3 < 0.9 < recent


def test_next_order_date_is_when_the_chance_of_ordering_reaches_one_half():
    model = P.BGNBD(r=0.5, alpha=20.0, a=0.8, b=2.5)
    x, t_x, T = np.array([5.0, 5.0, 0.0]), np.array([95.0, 10.0, 0.0]), np.array([100.0, 100.0, 50.0])
    alive = P.p_alive(model, x, t_x, T)
    days = P.next_order_days(model, x, t_x, T)
    assert np.isnan(days[1]) and alive[1] <= 0.5  # probably gone: no date
    for i in (0, 2):
        chance = alive[i] * (1 - P.no_order_probability(model, x[i], t_x[i], T[i], days[i], alive=1.0))
        assert chance == pytest.approx(0.5)


def test_the_gradients_are_exact(population):
    x, t_x, T, _ = population
    d = P._distinct(x[:3000], t_x[:3000], T[:3000])
    theta = np.log([0.4, 15.0, 0.9, 3.0])
    value = lambda th: P._bgnbd_ll_and_grad(th, d, d.counts)[0] @ d.counts  # noqa: E731
    gradient = lambda th: P._bgnbd_ll_and_grad(th, d, d.counts)[1]  # noqa: E731
    assert check_grad(value, gradient, theta) < 1e-5 * np.abs(gradient(theta)).max() + 1e-4
    means = P._Means(np.array([1.0, 2, 3, 5, 8]), np.array([20.0, 35, 12, 50, 41]))
    theta = np.log([3.0, 4.0, 20.0])
    value = lambda th: P._gg_ll_and_grad(th, means)[0].sum()  # noqa: E731
    gradient = lambda th: P._gg_ll_and_grad(th, means)[1]  # noqa: E731
    assert check_grad(value, gradient, theta) < 1e-5


def test_gamma_gamma_recovers_the_parameters_and_shrinks_towards_the_population():
    rng = np.random.default_rng(3)
    p, q, v = 4.0, 3.0, 60.0
    nu = rng.gamma(q, 1 / v, 100_000)
    n = rng.integers(2, 12, 100_000).astype(float)
    m = rng.gamma(p * n, 1 / (nu * n))  # the mean of n order values, each Gamma(p, nu)
    fitted = P.fit_gamma_gamma(n, m)
    assert (fitted.p, fitted.q, fitted.v) == pytest.approx((p, q, v), rel=0.1)
    assert fitted.mean_order_value == pytest.approx(p * v / (q - 1), rel=0.05)
    value = P.expected_order_value(fitted, [1, 50, 0], [500.0, 500.0, np.nan])
    # one big order is mostly luck, fifty are the customer; no orders: the population's mean
    assert fitted.mean_order_value < value[0] < value[1] < 500 and value[2] == fitted.mean_order_value


def test_summaries_are_counted_in_whole_days_as_of_now():
    now = pd.Timestamp("2025-03-10 15:00", tz="UTC")
    first = pd.to_datetime(["2025-01-01 23:00", "2025-03-01 08:00", None], utc=True)
    last = pd.to_datetime(["2025-02-01 01:00", "2025-03-01 09:00", None], utc=True)
    x, t_x, T = P.summarise([3, 1, 0], first, last, now=now)
    assert x.tolist() == [2, 0, -1]
    assert t_x.tolist() == [31.0, 0.0, 0.0] and T.tolist() == [68.0, 9.0, 0.0]
    with pytest.raises(ValueError, match="timezone-aware"):
        P.summarise([1], first[:1].tz_localize(None), last[:1].tz_localize(None), now=now)
    with pytest.raises(ValueError, match="first <= last <= now"):
        P.summarise([2], last[:1], first[:1], now=now)


def test_the_never_bought_get_the_prior_and_say_so(population):
    x, t_x, T, _ = population
    x = np.concatenate([x[:2000], [-1] * 400])
    t_x, T = np.concatenate([t_x[:2000], [0] * 400]), np.concatenate([T[:2000], [0] * 400])
    n = np.maximum(x + 1, 0)
    m = np.where(n > 0, np.random.default_rng(2).gamma(3.0, 10.0, len(n)), np.nan)
    result = P.predict(x, t_x, T, n, m, horizon_days=H)
    out, info = result.frame, result.info
    prior = out.iloc[-400:]
    assert (prior["prediction_basis"] == "prior").all() and (out["prediction_basis"].iloc[:-400] == "model").all()
    assert prior["p_alive"].isna().all() and prior["next_order_days"].isna().all()
    # the prior is what the not-yet-buyers did in the last horizon: those whose first order fell in it
    # (T <= H) against them and the 400 who never bought, computed here by hand
    first = (x >= 0) & (T <= H)
    at_risk = first.sum() + 400
    assert first.sum() > 0
    assert prior["predicted_orders"].tolist() == pytest.approx([(x[first] + 1).sum() / at_risk] * 400)
    assert prior["churn_risk"].tolist() == pytest.approx([1 - first.sum() / at_risk] * 400)
    value = (n[first] * m[first]).sum() / n[first].sum()
    assert prior["predicted_value"].tolist() == pytest.approx((prior["predicted_orders"] * value).tolist())
    assert info["prior"]["first_buyers"] == first.sum() and info["prior"]["at_risk"] == at_risk
    # what operators rely on: a browser is not predicted to be worth more than the typical buyer
    buyers_value = out["predicted_value"].iloc[:-400]
    assert prior["predicted_value"].iloc[0] < buyers_value.quantile(0.9)
    assert info["basis"] == {"model": 2000, "prior": 400}
    # an incremental run passes the full run's prior and gets it back unchanged
    again = P.predict(
        x[-10:],
        t_x[-10:],
        T[-10:],
        n[-10:],
        m[-10:],
        horizon_days=H,
        model=P.BGNBD.from_dict(info["bgnbd"]),
        spend=P.GammaGamma.from_dict(info["gamma_gamma"]),
        prior=info["prior"],
    )
    assert again.frame["predicted_orders"].tolist() == pytest.approx([info["prior"]["orders"]] * 10)


def test_a_population_too_small_or_without_repeat_buyers_gets_no_model():
    few = P.predict([1, 0, 2], [5, 0, 9], [10, 4, 20], [2, 1, 3], [10.0, 10.0, 10.0], horizon_days=H)
    assert few.info["reason_code"] == "too_few_buyers" and "3 buyers" in few.info["reason"]
    assert (few.frame["prediction_basis"] == "").all() and few.frame["predicted_orders"].isna().all()
    once = P.predict(np.zeros(50), np.zeros(50), np.arange(50.0), np.ones(50), np.full(50, 9.0), horizon_days=H)
    assert once.info["reason_code"] == "too_few_repeat_buyers" and once.info["basis"] == {"none": 50}
    with pytest.raises(ValueError, match="t_x <= T"):
        P.fit_bgnbd([1, 2], [5, 30], [10, 20])


# ---------------------------------------------------------------- against the reference library
@pytest.mark.datasets
def test_parameters_agree_with_lifetimes_on_online_retail(datasets_dir):
    lifetimes = pytest.importorskip("lifetimes", reason="lifetimes (requirements-dev.txt) is the reference")
    path = datasets_dir / "online-retail" / "online_retail.csv.gz"
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from eval_predictions import retail_events, split

    s = split(retail_events(path))
    assert len(s) > 3000 and (s["x"] > 0).sum() > 1500

    ours = P.fit_bgnbd(s["x"], s["t_x"], s["T"])
    theirs = lifetimes.BetaGeoFitter(penalizer_coef=0.0).fit(s["x"], s["t_x"], s["T"])
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(theirs.params_[name], rel=1e-3), name
    expected = P.expected_orders(ours, s["x"], s["t_x"], s["T"], H)
    reference = theirs.conditional_expected_number_of_purchases_up_to_time(H, s["x"], s["t_x"], s["T"])
    assert expected == pytest.approx(np.asarray(reference), rel=1e-3, abs=1e-6)

    usable = (s["n"] >= 2) & (s["m"] > 0)
    spend = P.fit_gamma_gamma(s.loc[usable, "n"], s.loc[usable, "m"])
    gg = lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(s.loc[usable, "n"], s.loc[usable, "m"])
    for name in ("p", "q", "v"):
        assert getattr(spend, name) == pytest.approx(gg.params_[name], rel=1e-3), name


def test_customers_who_all_drop_out_alike_still_get_a_model():
    # every buyer has four orders: no spread in the chance of dropping out, so a and b run to infinity
    # (a / (a + b) staying finite); the products over j < x keep the likelihood exact there
    first = np.arange(40) * 37 % 300 + 60
    x, t_x, T = np.full(40, 3.0), np.where(np.arange(40) % 8 == 0, first - 10, 60.0), first.astype(float)
    fitted = P.fit_bgnbd(x, t_x, T)
    assert fitted.a > 1e3 and fitted.b > 1e3
    result = P.predict(x, t_x, T, x + 1, np.full(40, 20.0), horizon_days=H)
    assert result.info["basis"] == {"model": 40}
    assert np.isfinite(result.frame["predicted_orders"]).all() and result.frame["p_alive"].between(0, 1).all()
