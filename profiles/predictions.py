"""Predictions of repeat buying: BG/NBD for orders, Gamma-Gamma for spend.

Pure numpy/scipy/pandas, no Django. The models are the standard ones for buying without a contract
(a customer may stop at any time without saying so):

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way")
    While alive, a customer orders as a Poisson process of rate lambda ~ Gamma(r, alpha); after each
    order they drop out with probability p ~ Beta(a, b). A customer's history is summarised by
    ``x`` (repeat orders: orders - 1), ``t_x`` (days from the first to the last order) and ``T``
    (days from the first order to now). The four parameters are fitted by maximum likelihood on
    the whole population.
Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV")
    A customer's order values scatter around their own mean, itself drawn from the population;
    fitted on the mean order value ``m`` of the customers with at least two orders (``n`` orders
    behind that mean), it shrinks each customer's mean towards the population's.

``predict(summary, horizon_days=...)`` gives, per customer, the chance they are still a buyer
(``p_alive``), the expected orders and spend in the horizon, the chance of no order in the horizon
(``churn_risk``) and the days until the chance of having ordered again reaches one half.

Times are whole UTC days (``summarise``), so identical histories collapse into one weighted row and
a million customers fit in seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

__all__ = [
    "BGNBD",
    "MIN_BUYERS",
    "MIN_REPEAT_BUYERS",
    "NEXT_ORDER_MAX_DAYS",
    "GammaGamma",
    "NoModel",
    "Predictions",
    "bgnbd_log_likelihood",
    "expected_order_value",
    "expected_orders",
    "fit",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "next_order_days",
    "no_order_probability",
    "p_alive",
    "predict",
    "summarise",
]

#: Fewer buyers than this (or fewer repeat buyers than MIN_REPEAT_BUYERS) give no model: the fit
#: would say more about chance than about the shop.
MIN_BUYERS = 20
MIN_REPEAT_BUYERS = 5
#: A next order date further away than this is not given (the model only says "not soon").
NEXT_ORDER_MAX_DAYS = 3650
_NS_PER_DAY = 86_400 * 10**9


class NoModel(Exception):
    """The population cannot be fitted; ``reason`` says why in words, ``code`` as a key."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters (``alpha`` in days); ``buyers`` is how many customers they were fitted on."""

    r: float
    alpha: float
    a: float
    b: float
    buyers: int = 0

    def as_dict(self) -> dict:
        # 9 significant digits, not decimals: a run-off population has a, b near 1e-8, which must not become 0
        return {k: (float(f"{v:.9g}") if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> BGNBD:
        try:
            model = cls(float(data["r"]), float(data["alpha"]), float(data["a"]), float(data["b"]), int(data["buyers"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"BG/NBD parameters need r, alpha, a, b and buyers: {exc}") from exc
        if not all(np.isfinite(v) and v > 0 for v in (model.r, model.alpha, model.a, model.b)):
            raise ValueError(f"BG/NBD parameters must be positive numbers, got {data}")
        return model


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters; ``buyers`` is how many repeat buyers they were fitted on."""

    p: float
    q: float
    v: float
    buyers: int = 0

    @property
    def mean_order_value(self) -> float:
        """The population's expected order value, ``p v / (q - 1)``; NaN when ``q <= 1`` (no finite mean)."""
        return self.p * self.v / (self.q - 1) if self.q > 1 else float("nan")

    def as_dict(self) -> dict:
        # 9 significant digits, not decimals: a run-off population has a, b near 1e-8, which must not become 0
        return {k: (float(f"{v:.9g}") if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> GammaGamma:
        try:
            return cls(float(data["p"]), float(data["q"]), float(data["v"]), int(data["buyers"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Gamma-Gamma parameters need p, q, v and buyers: {exc}") from exc


# ------------------------------------------------------------------------------ the summary


def summarise(
    orders: np.ndarray | pd.Series,
    first_purchase: pd.Series | pd.DatetimeIndex,
    last_purchase: pd.Series | pd.DatetimeIndex,
    *,
    now,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, T)`` in whole UTC days from orders and first and last purchase times (tz-aware).

    ``x`` is the repeat orders (orders - 1), ``t_x`` the days from the first order's day to the last
    one's, ``T`` from the first order's day to ``now``'s. Customers without an order get ``x = -1``
    (and zero times): they have no history for the model.
    """
    now_ts = pd.Timestamp(now)
    if now_ts.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    orders = np.asarray(orders, dtype=np.int64)
    first = _day(first_purchase)
    last = _day(last_purchase)
    if not (len(orders) == len(first) == len(last)):
        raise ValueError("orders, first_purchase and last_purchase must have the same length")
    today = now_ts.tz_convert("UTC").value // _NS_PER_DAY
    bought = orders > 0
    if (bought & ((first < 0) | (last < 0))).any():
        raise ValueError("a customer with orders lacks a first or last purchase time")
    if (bought & ((last < first) | (first > today))).any():
        raise ValueError("purchase times must satisfy first <= last <= now")
    x = np.where(bought, orders - 1, -1)
    t_x = np.where(bought, last - first, 0).astype(float)
    T = np.where(bought, today - first, 0).astype(float)
    return x.astype(np.int64), t_x, T


def _day(moments) -> np.ndarray:
    """UTC day numbers of tz-aware moments; -1 where missing."""
    idx = pd.DatetimeIndex(moments)
    if len(idx) and idx.tz is None:
        raise ValueError("purchase times must be timezone-aware")
    ns = idx.tz_convert("UTC").as_unit("ns").asi8 if len(idx) else np.empty(0, dtype=np.int64)
    return np.where(idx.isna(), -1, ns // _NS_PER_DAY)


@dataclass
class _Distinct:
    """The distinct rows of some columns: each column's distinct values (``levels``), each distinct row's
    position in them (``codes``), how often each distinct row occurs (``counts``), and each input row's
    distinct row (``inverse``). A likelihood then evaluates what depends on one column once per value."""

    levels: list[np.ndarray]
    codes: list[np.ndarray]
    counts: np.ndarray
    inverse: np.ndarray

    def column(self, i: int) -> np.ndarray:
        return self.levels[i][self.codes[i]]


def _distinct(*columns) -> _Distinct:
    levels, codes = [], []
    for column in columns:
        level, code = np.unique(np.asarray(column, dtype=float), return_inverse=True)
        levels.append(level)
        codes.append(code.ravel().astype(np.int64))
    sizes = [len(level) for level in levels]
    if float(np.prod([float(n) for n in sizes])) < 2.0**62:
        key = np.zeros(len(codes[0]) if codes else 0, dtype=np.int64)
        for code, size in zip(codes, sizes, strict=True):
            key = key * size + code
        unique, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        rows = []
        for size in reversed(sizes):
            rows.append(unique % size)
            unique = unique // size
        row_codes = rows[::-1]
    else:  # too many combinations for one integer key
        stacked = np.column_stack(codes)
        unique, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
        row_codes = [unique[:, i] for i in range(unique.shape[1])]
    return _Distinct(levels, row_codes, counts.astype(float), inverse.ravel())


def _compress(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The distinct rows of these columns, how often each occurs, and each input row's distinct row."""
    d = _distinct(*columns)
    return [d.column(i) for i in range(len(columns))], d.counts, d.inverse


# ------------------------------------------------------------------------------ BG/NBD


def bgnbd_log_likelihood(model: BGNBD | tuple, x, t_x, T) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (FHL 2005, eq. 6)."""
    d = _distinct(x, t_x, T)
    ll = _bgnbd_ll_and_grad(np.log(_params(model)), d, d.counts, grad=False)[0]
    return ll[d.inverse]


def _running(terms: np.ndarray) -> np.ndarray:
    """``out[k] = terms[0] + ... + terms[k - 1]`` (``out[0] = 0``): a sum over ``j < x`` read at ``out[x]``."""
    return np.concatenate([[0.0], np.cumsum(terms)])


def _bgnbd_ll_and_grad(theta: np.ndarray, d: _Distinct, w: np.ndarray, *, grad: bool = True):
    """The log-likelihood of each distinct row of ``(x, t_x, T)`` and the ``w``-weighted sum of its gradient
    with respect to the log-parameters.

    What depends on one column only is computed once per value, and the gamma and beta function ratios of
    whole ``x`` are products over ``j < x`` (``Gamma(r + x) / Gamma(r) = prod(r + j)``, ``B(a, b + x) / B(a, b) =
    prod((b + j) / (a + b + j))``): exact even where ``a`` and ``b`` grow large, as they do when every
    customer drops out alike."""
    r, alpha, a, b = np.exp(theta)
    (ux, ut, uT), (ix, it, iT) = d.levels, d.codes
    j = np.arange(int(ux.max()) if len(ux) else 0, dtype=float)
    k = ux.astype(np.int64)
    x = ux[ix]
    repeat_u = ux > 0
    with np.errstate(divide="ignore"):
        log_b1 = np.where(repeat_u, np.log(np.where(repeat_u, b + ux - 1, 1.0)), np.inf)
    per_x = (_running(np.log(r + j)) + _running(-np.log1p(a / (b + j))))[k]
    # r log(alpha) - (r + x) log(alpha + t), without the cancellation of large r and alpha
    log_T, log_t = np.log(alpha + uT), np.log(alpha + ut)
    rel_T, rel_t = np.log1p(uT / alpha), np.log1p(ut / alpha)
    a3 = -r * rel_T[iT] - x * log_T[iT]
    a4 = np.log(a) - log_b1[ix] - r * rel_t[it] - x * log_t[it]  # -inf without repeat orders
    top = np.maximum(a3, a4)
    e = np.exp(-np.abs(a3 - a4))  # the smaller term over the larger, in (0, 1]
    ll = per_x[ix] + top + np.log1p(e)
    if not grad:
        return ll, None
    s4 = np.where(a4 > a3, 1.0, e) / (1.0 + e)  # the repeat term's share of the likelihood
    s3 = 1.0 - s4
    d_r = _running(1 / (r + j))[k][ix] - s3 * rel_T[iT] - s4 * rel_t[it]
    slope_T = r * uT / (alpha * (alpha + uT))
    slope_t = r * ut / (alpha * (alpha + ut))
    d_alpha = s3 * (slope_T[iT] - x / (alpha + uT)[iT]) + s4 * (slope_t[it] - x / (alpha + ut)[it])
    inv_b1 = np.where(repeat_u, 1.0 / np.where(repeat_u, b + ux - 1, 1.0), 0.0)
    d_a = -_running(1 / (a + b + j))[k][ix] + s4 / a
    d_b = _running(a / ((b + j) * (a + b + j)))[k][ix] - s4 * inv_b1[ix]
    return ll, np.array([w @ d_r * r, w @ d_alpha * alpha, w @ d_a * a, w @ d_b * b])


def fit_bgnbd(x, t_x, T, *, weights=None, initial=(1.0, 1.0, 1.0, 1.0)) -> BGNBD:
    """BG/NBD parameters by maximum likelihood over these customers (``x >= 0``; times in days).

    Identical rows are compressed into weighted ones, times are scaled so the largest ``T`` is 10
    (``alpha`` is scaled back), and the log-parameters are optimised with L-BFGS-B on the exact
    gradient. Raises ``NoModel`` when the population is too small or degenerate or the fit fails.
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    if not (len(x) == len(t_x) == len(T) == len(w)):
        raise ValueError("x, t_x, T and weights must have the same length")
    if (x < 0).any() or (x != np.floor(x)).any() or (t_x < 0).any() or (t_x > T).any():
        raise ValueError("BG/NBD needs whole x >= 0 and 0 <= t_x <= T for every customer")
    buyers = round(float(w.sum()))
    repeat = round(float(w[x > 0].sum()))
    if buyers < MIN_BUYERS:
        raise NoModel("too_few_buyers", f"{buyers} buyers, at least {MIN_BUYERS} are needed to fit BG/NBD")
    if repeat < MIN_REPEAT_BUYERS:
        raise NoModel(
            "too_few_repeat_buyers",
            f"{repeat} repeat buyers, at least {MIN_REPEAT_BUYERS} are needed to fit BG/NBD",
        )
    d = _distinct(x, t_x, T)
    wsum = np.bincount(d.inverse, weights=w)
    scale = 10.0 / max(float(d.levels[2].max()), 1.0)
    d.levels[1] = d.levels[1] * scale
    d.levels[2] = d.levels[2] * scale
    total = wsum.sum()

    def objective(theta):
        ll, g = _bgnbd_ll_and_grad(theta, d, wsum)
        return -(wsum @ ll) / total, -g / total

    theta0 = np.log(np.asarray(initial, dtype=float) * [1.0, scale, 1.0, 1.0])
    with np.errstate(over="ignore", invalid="ignore"):
        res = optimize.minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            # a population whose customers all drop out alike sends a and b to infinity (a / (a + b) finite):
            # the formulas stay exact there, so the bounds are wide
            bounds=[(-30.0, 30.0)] * 4,
            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
        )
    r, alpha_s, a, b = np.exp(res.x)
    if not _converged(res, bound=30.0):
        raise NoModel("no_convergence", f"the BG/NBD fit did not converge ({res.message})")
    return BGNBD(float(r), float(alpha_s / scale), float(a), float(b), buyers)


def _converged(res, *, bound: float) -> bool:
    """The optimiser stopped at a finite optimum: it says so, or its gradient there is flat anyway (L-BFGS-B's
    line search may give up a hair from the optimum, or on a ridge to a bound where a parameter's optimum is
    infinite: there the gradient pushing past the bound does not count)."""
    if not (np.isfinite(res.fun) and np.all(np.isfinite(res.x))):
        return False
    pushing = ((res.x >= bound - 1e-6) & (res.jac < 0)) | ((res.x <= -bound + 1e-6) & (res.jac > 0))
    return bool(res.success or np.max(np.abs(np.where(pushing, 0.0, res.jac))) < 1e-4)


def _params(model) -> tuple[float, float, float, float]:
    if isinstance(model, BGNBD):
        return model.r, model.alpha, model.a, model.b
    r, alpha, a, b = model
    return float(r), float(alpha), float(a), float(b)


def _log_odds_dead(model, x, t_x, T) -> np.ndarray:
    """log(P(dead) / P(alive)) given the history; -inf for customers without repeat orders."""
    r, alpha, a, b = _params(model)
    repeat = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = (
            np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
        )
    return np.where(repeat, odds, -np.inf)


def p_alive(model, x, t_x, T) -> np.ndarray:
    """The probability the customer is still alive (a buyer) at ``T``: 1 for customers without repeat orders."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    return special.expit(-_log_odds_dead(model, x, t_x, T))


def expected_orders(model, x, t_x, T, horizon: float) -> np.ndarray:
    """Expected orders in the ``horizon`` days after ``T`` (FHL 2005, eq. 10)."""
    r, alpha, a, b = _params(model)
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    h = float(horizon)
    z = h / (alpha + T + h)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    decay = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + h)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = (a + b + x - 1) / (a - 1) * (1 - decay * hyp) * p_alive(model, x, t_x, T)
    return out


def no_order_probability(model, x, t_x, T, horizon: float, alive: np.ndarray | None = None) -> np.ndarray:
    """The probability of no order in the ``horizon`` days after ``T``: dead, or alive and silent
    (a customer can only drop out right after an order, so silence keeps an alive one alive)."""
    r, alpha, _, _ = _params(model)
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    alive = p_alive(model, x, t_x, T) if alive is None else alive
    silent = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + float(horizon))))
    return (1 - alive) + alive * silent


def next_order_days(model, x, t_x, T, alive: np.ndarray | None = None) -> np.ndarray:
    """Days after ``T`` by which the chance of having ordered again reaches 1/2; NaN where it never
    does (``p_alive <= 1/2``) or only after ``NEXT_ORDER_MAX_DAYS``."""
    r, alpha, _, _ = _params(model)
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    alive = p_alive(model, x, t_x, T) if alive is None else alive
    reaches = alive > 0.5
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = -np.log1p(-0.5 / np.where(reaches, alive, 1.0)) / (r + x)
        days = (alpha + T) * np.expm1(log_ratio)
    return np.where(reaches & (days <= NEXT_ORDER_MAX_DAYS), days, np.nan)


# ------------------------------------------------------------------------------ Gamma-Gamma


def gamma_gamma_log_likelihood(model: GammaGamma | tuple, n, m) -> np.ndarray:
    """Each customer's Gamma-Gamma log-likelihood of a mean order value ``m`` over ``n`` orders."""
    p, q, v = (model.p, model.q, model.v) if isinstance(model, GammaGamma) else model
    return _gg_ll_and_grad(np.log([p, q, v]), _Means(n, m), grad=False)[0]


class _Means:
    """Gamma-Gamma's data with what does not depend on the parameters computed once."""

    def __init__(self, n, m):
        self.n, self.m = np.asarray(n, dtype=float), np.asarray(m, dtype=float)
        self.levels, codes = np.unique(self.n, return_inverse=True)
        self.codes = codes.ravel()
        self.log_m, self.log_n, self.nm = np.log(self.m), np.log(self.n), self.n * self.m


def _gg_ll_and_grad(theta, data: _Means, *, grad: bool = True):
    """Each customer's log-likelihood and the sum of its gradient with respect to the log-parameters."""
    p, q, v = np.exp(theta)
    n, i = data.n, data.codes
    pn_u = p * data.levels
    pn = pn_u[i]
    log_nmv = np.log(data.nm + v)
    ll = (
        (special.gammaln(pn_u + q) - special.gammaln(pn_u))[i]
        - special.gammaln(q)
        + q * np.log(v)
        + (pn - 1) * data.log_m
        + pn * data.log_n
        - (pn + q) * log_nmv
    )
    if not grad:
        return ll, None
    dg = special.digamma
    dg_pnq = dg(pn_u + q)
    d_p = n @ ((dg_pnq - dg(pn_u))[i] + data.log_m + data.log_n - log_nmv)
    d_q = dg_pnq[i].sum() + len(n) * (np.log(v) - dg(q)) - log_nmv.sum()
    d_v = len(n) * q / v - ((pn + q) / (data.nm + v)).sum()
    return ll, np.array([d_p * p, d_q * q, d_v * v])


def fit_gamma_gamma(n, m, *, initial=(1.0, 1.0, 1.0)) -> GammaGamma:
    """Gamma-Gamma parameters by maximum likelihood over customers with ``n >= 1`` orders of mean value
    ``m > 0`` (pass the repeat buyers). Raises ``NoModel`` when there are too few or the fit fails."""
    n, m = np.asarray(n, dtype=float), np.asarray(m, dtype=float)
    if len(n) != len(m):
        raise ValueError("n and m must have the same length")
    if (n < 1).any() or ~np.isfinite(m).all() or (m <= 0).any():
        raise ValueError("Gamma-Gamma needs n >= 1 orders and a positive mean order value for every customer")
    if len(n) < MIN_REPEAT_BUYERS:
        raise NoModel(
            "too_few_repeat_buyers",
            f"{len(n)} repeat buyers with a positive spend, at least {MIN_REPEAT_BUYERS} are needed for Gamma-Gamma",
        )
    scale = 10.0 / float(np.median(m))  # v is in money: scaled so the optimiser sees numbers near one
    data = _Means(n, m * scale)

    def objective(theta):
        ll, g = _gg_ll_and_grad(theta, data)
        return -ll.mean(), -g / len(n)

    with np.errstate(over="ignore", invalid="ignore"):
        res = optimize.minimize(
            objective,
            np.log(np.asarray(initial, dtype=float)),  # in the scaled units
            jac=True,
            method="L-BFGS-B",
            # order values that hardly vary within a customer send p to infinity (and v to zero, p v
            # finite): the shrinkage then keeps each customer's own mean, which is the right answer
            bounds=[(-30.0, 30.0)] * 3,
            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
        )
    p, q, v_s = np.exp(res.x)
    if not _converged(res, bound=30.0):
        raise NoModel("no_convergence", f"the Gamma-Gamma fit did not converge ({res.message})")
    return GammaGamma(float(p), float(q), float(v_s / scale), len(n))


def expected_order_value(model: GammaGamma, n, m) -> np.ndarray:
    """Each customer's expected order value: their mean ``m`` over ``n`` orders shrunk towards the
    population's (``n = 0`` or no positive mean: the population's mean)."""
    n, m = np.asarray(n, dtype=float), np.asarray(m, dtype=float)
    own = (n >= 1) & np.isfinite(m) & (m > 0)
    p, q, v = model.p, model.q, model.v
    with np.errstate(divide="ignore", invalid="ignore"):
        shrunk = p * (v + n * np.where(own, m, 0.0)) / (p * n + q - 1)
    return np.where(own & (q > 1), shrunk, model.mean_order_value)


# ------------------------------------------------------------------------------ the step's entry


@dataclass
class Predictions:
    """The prediction columns (indexed like the input) and what the run should record."""

    frame: pd.DataFrame
    info: dict


def fit(x, t_x, T, n, m) -> tuple[BGNBD, GammaGamma | None, str]:
    """Both models over a population (``x = -1``: never bought, left out). Gamma-Gamma is fitted on the
    customers with at least two orders and a positive mean; without it, the third value says why."""
    buyers = np.asarray(x) >= 0
    model = fit_bgnbd(np.asarray(x)[buyers], np.asarray(t_x)[buyers], np.asarray(T)[buyers])
    n, m = np.asarray(n, dtype=float), np.asarray(m, dtype=float)
    usable = (n >= 2) & np.isfinite(m) & (m > 0)
    try:
        spend = fit_gamma_gamma(n[usable], m[usable])
    except NoModel as exc:
        return model, None, exc.reason
    if spend.q <= 1:
        return model, None, f"the Gamma-Gamma fit has q = {spend.q:.3g} <= 1: no finite mean order value"
    return model, spend, ""


def empirical_prior(x, T, n, m, *, horizon_days: float) -> dict | None:
    """What the shop's not-yet-buyers did in the last ``horizon_days``: the customers whose first order
    fell in that span (T <= h) against them plus those who still never bought. Their orders per
    customer at risk, the share who did not order, and their mean order value (all buyers' where the
    new ones spent nothing). None when nobody was at risk."""
    x, age = np.asarray(x), np.asarray(T, dtype=float)  # age: days since the first order
    n, m = np.asarray(n, dtype=float), np.asarray(m, dtype=float)
    buyers = x >= 0
    first = buyers & (age <= horizon_days)
    at_risk = int(first.sum() + (~buyers).sum())
    if not at_risk:
        return None
    spent = np.where(np.isfinite(m) & (m > 0), n * m, 0.0)
    counted = np.where(np.isfinite(m) & (m > 0), n, 0.0)
    group = first if counted[first].sum() > 0 else buyers
    order_value = float(spent[group].sum() / counted[group].sum()) if counted[group].sum() > 0 else float("nan")
    orders = float((x[first] + 1).sum() / at_risk)
    return {
        "orders": orders,
        "churn_risk": float(1 - first.sum() / at_risk),
        "order_value": order_value,
        "value": orders * order_value if np.isfinite(order_value) else float("nan"),
        "first_buyers": int(first.sum()),
        "at_risk": at_risk,
    }


def predict(
    x,
    t_x,
    T,
    n,
    m,
    *,
    horizon_days: float,
    model: BGNBD | None = None,
    spend: GammaGamma | None = None,
    prior: dict | None = None,
) -> Predictions:
    """Per customer, the predictions over ``horizon_days`` (see the module docstring).

    ``x, t_x, T`` come from ``summarise`` (``x = -1``: never bought); ``n, m`` are the orders and mean
    order value Gamma-Gamma reads. Without ``model`` both models are fitted here over these customers
    (the whole population on a full run); an incremental run passes the last full run's.

    Customers who never bought get the population's prior (``empirical_prior``: what the shop's
    not-yet-buyers did in the last horizon; an incremental run passes the last full run's ``prior``),
    not BG/NBD's formulas at ``x = t_x = T = 0``, which assume a first order now and would rank every
    browser above most buyers; their ``p_alive`` and next order stay empty (they were never buyers)
    and their basis is ``"prior"``.
    When no model can be fitted every column is empty and ``info["reason"]`` says why.
    """
    started = time.monotonic()
    x = np.asarray(x, dtype=np.int64)
    t_x, T = np.asarray(t_x, dtype=float), np.asarray(T, dtype=float)
    count = len(x)
    out = pd.DataFrame(
        {
            "p_alive": np.full(count, np.nan),
            "predicted_orders": np.full(count, np.nan),
            "predicted_value": np.full(count, np.nan),
            "churn_risk": np.full(count, np.nan),
            "next_order_days": np.full(count, np.nan),
            "prediction_basis": np.full(count, "", dtype=object),
        }
    )
    info: dict = {"horizon_days": float(horizon_days)}
    fitted = model is None
    spend_reason = ""
    if fitted:
        try:
            model, spend, spend_reason = fit(x, t_x, T, n, m)
        except NoModel as exc:
            info.update(reason=exc.reason, reason_code=exc.code, basis={"none": count})
            info["seconds"] = round(time.monotonic() - started, 3)
            return Predictions(out, info)
    info["fitted"] = fitted
    info["bgnbd"] = model.as_dict()
    info["gamma_gamma"] = spend.as_dict() if spend is not None else None
    if spend is None:
        info["spend_reason"] = spend_reason or "no Gamma-Gamma parameters"

    buyers = x >= 0
    if prior is None:
        prior = empirical_prior(x, T, n, m, horizon_days=horizon_days)
    info["prior"] = prior
    # the never-bought are evaluated here as if their relationship started now, then given the prior
    ex, et, eT = np.where(buyers, x, 0), np.where(buyers, t_x, 0.0), np.where(buyers, T, 0.0)
    (ux, ut, uT), _, inverse = _compress(ex, et, eT)
    alive_u = p_alive(model, ux, ut, uT)
    orders = expected_orders(model, ux, ut, uT, horizon_days)[inverse]
    alive = alive_u[inverse]
    churn = no_order_probability(model, ux, ut, uT, horizon_days, alive=alive_u)[inverse]
    nxt = next_order_days(model, ux, ut, uT, alive=alive_u)[inverse]
    ok = np.isfinite(orders) & np.isfinite(churn)
    out["p_alive"] = np.where(buyers & ok, alive, np.nan)
    out["predicted_orders"] = np.where(ok, np.clip(orders, 0, None), np.nan)
    out["churn_risk"] = np.where(ok, np.clip(churn, 0, 1), np.nan)
    out["next_order_days"] = np.where(buyers & ok, nxt, np.nan)
    if spend is not None:
        value = expected_order_value(spend, np.where(buyers, n, 0), np.where(buyers, m, np.nan))
        out["predicted_value"] = np.where(buyers, out["predicted_orders"].to_numpy() * value, np.nan)
    never = ~buyers
    if prior is not None:
        out.loc[never, "predicted_orders"] = prior["orders"]
        out.loc[never, "churn_risk"] = prior["churn_risk"]
        out.loc[never, "predicted_value"] = prior["value"] if spend is not None else np.nan
    else:
        ok &= buyers
    out["prediction_basis"] = np.where(ok, np.where(buyers, "model", "prior"), "")
    basis = out["prediction_basis"].replace("", "none").value_counts()
    info["basis"] = {str(k): int(v) for k, v in basis.items()}
    info["seconds"] = round(time.monotonic() - started, 3)
    return Predictions(out, info)
