"""The statistics of experiments: assignment, per-variant estimates, the sequential test, SRM, planning.

Pure numpy/scipy, no Django: the experiments app (planned) feeds it per-customer arrays and stores
what it returns. docs/experiments.md gives the method with the figures measured by simulation
(tests/experiments/test_stats.py).

Assignment
----------
``assign`` hashes each customer id with a 64-bit key made from the experiment's salt (splitmix64
integer mixing on uint64, vectorised) and maps the hash to ``[0, 1)``; the cumulative traffic shares
cut that interval into variants. The same id and salt always give the same variant (sticky, in any
process), and two salts give independent assignments. The holdout is decided by a second hash with
its own salt (``holdout_salt``, the same for every experiment), so the customers held out of one
experiment are held out of all of them.

Estimates
---------
A metric is summarised per variant from its sufficient statistics (``Estimate``): for a mean or a
proportion the per-customer values (conversion within N days: 0/1 per customer; revenue per
customer: a skewed value with many zeros); for a ratio metric (clicks / impressions) a numerator and
a denominator per customer, estimated as the ratio of the means with the delta-method variance
``(s_x² - 2 R s_xy + R² s_y²) / (n ȳ²)`` (the customer is the unit of randomisation, so the
impressions of one customer are not independent and the naive binomial variance would be too small).

The sequential test: mixture SPRT
---------------------------------
An operator looks at the results every day. A fixed-horizon test looked at daily and stopped at the
first p < 0.05 rejects a true null far more often than 5% (about a quarter of A/A tests over 30
days, see the tests). The procedure here is the mixture sequential probability ratio test (mSPRT)
with a normal mixture on the difference, as in Johari, Pekelis & Walsh (2017), "Always valid
inference: continuous monitoring of A/B tests". With the difference ``d`` of the two estimates, its
variance ``V`` and a mixing distribution ``N(0, tau²)`` on the true difference, the mixture
likelihood ratio against "no difference" is::

    Λ = sqrt(V / (V + tau²)) · exp(d² tau² / (2 V (V + tau²)))

Under the null, Λ over time is a non-negative martingale with mean 1, so by Ville's inequality
P(Λ ever reaches 1/alpha) <= alpha, however often and whenever one looks and stops. Hence:

* the always-valid p-value ``p = min over looks of min(1, 1/Λ)``: P(p ever < alpha) <= alpha;
* the confidence sequence ``{θ: Λ(θ) < 1/alpha}`` (Λ computed with d - θ), i.e.
  ``d ± sqrt(V (V + tau²) / tau² · (2 log(1/alpha) + log((V + tau²) / V)))``, intersected over the
  looks: it holds the true difference at every look at once with probability >= 1 - alpha.

The p-value is below alpha exactly when the interval excludes 0 (both come from the same Λ), so the
verdict and the interval never disagree. Why this one and not a group-sequential design with an
alpha-spending function: group-sequential needs the number and timing of the looks planned in
advance and loses its guarantee when the operator looks more often or runs longer; the mSPRT needs
no plan, is valid at any stopping time, and its interval can be shown every day. Its price is a
larger sample for the same power (``sample_size(..., sequential=True)``). The guarantee is exact for
a known variance and a Gaussian estimate; here the variance is the plug-in estimate, valid in large
samples (the A/A simulations measure the real rate).

The mixture's width ``tau`` comes from the declared minimum detectable effect (``tau_for``): it is
chosen so that the confidence sequence is narrowest at the sample size where a fixed test would
detect the MDE with the declared power, ``V* = (mde / (z_{1-alpha/2} + z_power))²``. The half-width
at ``V`` with ``r = tau² / V`` is ``sqrt(V (1 + 1/r) (2 log(1/alpha) + log(1 + r)))``, smallest where
``r = 2 log(1/alpha) + log(1 + r)`` (r ≈ 8.2 at alpha = 0.05), so ``tau² = r · V*``; at alpha = 0.05
and power = 0.8 that is tau ≈ 1.02 × mde.

Several treatments are each compared with the control (variant 0) at alpha / (number of treatments)
(Bonferroni). A variant is called a winner only when its always-valid p-value is below that.

Sample-ratio mismatch (``srm``)
-------------------------------
A chi-square goodness-of-fit test of the counts per variant against the declared shares, flagged at
p < 0.001: a broken assignment (a variant that loses customers, a redirect that drops some) gives
huge chi-square values at experiment sizes, so a strict threshold loses little power, while the check
runs at every look of every experiment and a false alarm stops a good experiment (30 daily looks at
0.001 keep the false alarm rate of one experiment under 3%). Kohavi et al. and Fabijan et al. (2019,
"Diagnosing sample ratio mismatch") use thresholds of this order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import stats as sps

DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
SRM_THRESHOLD = 0.001

NO_DIFFERENCE_YET = "no difference yet"
B_BETTER = "B better"
A_BETTER = "A better"
GUARDRAIL_HARM = "stopped for harm on a guard-rail"
SAMPLE_RATIO_MISMATCH = "sample ratio mismatch: assignment is broken, results are not trustworthy"

METRIC_KINDS = ("proportion", "mean", "ratio")

# ---------------------------------------------------------------------------------------------
# Assignment
# ---------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (multiplication wraps modulo 2**64, as intended)."""
    x = x ^ (x >> _S30)
    x = x * _MIX1
    x = x ^ (x >> _S27)
    x = x * _MIX2
    return x ^ (x >> _S31)


def _salt_key(salt: str) -> np.uint64:
    """A 64-bit key from the salt: one blake2b per salt (not per id), stable across processes and versions."""
    if not isinstance(salt, str) or not salt:
        raise ValueError("salt must be a non-empty string (the experiment's own key)")
    return np.uint64(int.from_bytes(hashlib.blake2b(salt.encode("utf-8"), digest_size=8).digest(), "little"))


def _as_uint64_ids(customer_ids) -> np.ndarray:
    ids = np.asarray(customer_ids)
    if ids.ndim != 1:
        raise ValueError(f"customer_ids must be a one-dimensional array, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"customer_ids must be integers, got dtype {ids.dtype}")
    if ids.dtype == np.uint64:
        return ids
    # Two's complement view: a negative id still gets its own hash, identically on every platform.
    return np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64)


def unit_hash(customer_ids, *, salt: str) -> np.ndarray:
    """Each id's position in [0, 1) under ``salt``: deterministic, uniform, independent across salts.

    splitmix64(splitmix64(id + golden) xor key(salt)), its top 53 bits as a double.
    """
    ids = _as_uint64_ids(customer_ids)
    with np.errstate(over="ignore"):
        h = _splitmix64(_splitmix64(ids + _GOLDEN) ^ _salt_key(salt))
    return (h >> _S11).astype(np.float64) * (2.0**-53)


def _check_shares(shares: Sequence[float]) -> np.ndarray:
    s = np.asarray(shares, dtype=np.float64)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(f"shares must list at least two variants, got {shares!r}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"every share must be a positive number, got {shares!r}")
    if abs(s.sum() - 1.0) > 1e-9:
        raise ValueError(f"shares must add up to 1, they add up to {s.sum():g}")
    return s


def assign(
    customer_ids: np.ndarray,
    *,
    salt: str,
    shares: Sequence[float],
    holdout: float = 0.0,
    holdout_salt: str = "holdout",
) -> np.ndarray:
    """The variant index of each customer (0 = control), -1 for the holdout kept out of all experiments.

    Parameters
    ----------
    customer_ids : int array, shape (n,)
    salt : the experiment's key; another salt gives an independent assignment.
    shares : traffic share of each variant, positive, adding up to 1 (of the customers not held out).
    holdout : share of all customers kept out of every experiment, in [0, 1).
    holdout_salt : the holdout's own key, the same for all experiments so they share one holdout.

    Returns
    -------
    int64 array, shape (n,)
    """
    s = _check_shares(shares)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be a share in [0, 1), got {holdout!r}")
    if holdout > 0 and holdout_salt == salt:
        raise ValueError("holdout_salt must differ from the experiment's salt")
    u = unit_hash(customer_ids, salt=salt)
    edges = np.cumsum(s)[:-1]
    variant = np.searchsorted(edges, u, side="right").astype(np.int64)
    if holdout > 0:
        variant[unit_hash(customer_ids, salt=holdout_salt) < holdout] = -1
    return variant


# ---------------------------------------------------------------------------------------------
# Estimates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One variant's metric: its value and the variance of that value (squared standard error).

    Fields may be floats or numpy arrays of one shape (many simulated experiments at once).
    """

    n: np.ndarray | float
    value: np.ndarray | float
    variance: np.ndarray | float

    @property
    def se(self):
        return np.sqrt(self.variance)

    def ci(self, alpha: float = DEFAULT_ALPHA):
        """The fixed-sample normal interval of the value, as (low, high)."""
        h = sps.norm.isf(alpha / 2) * self.se
        return self.value - h, self.value + h


def mean_estimate(n, total, total_sq) -> Estimate:
    """A mean (or proportion) from n, Σx and Σx² (arrays broadcast); sample variance with n - 1."""
    n = np.asarray(n, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    total_sq = np.asarray(total_sq, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        var = np.maximum(total_sq - total * mean, 0.0) / (n - 1)
        var = np.where(n >= 2, var, np.nan)
        return Estimate(n=_scalar(n), value=_scalar(mean), variance=_scalar(var / n))


def ratio_estimate(n, x_total, y_total, xx_total, yy_total, xy_total) -> Estimate:
    """A ratio of means Σx / Σy (clicks / impressions) with its delta-method variance.

    Var(x̄/ȳ) ≈ (s_x² - 2 R s_xy + R² s_y²) / (n ȳ²), R = x̄/ȳ, from n, Σx, Σy, Σx², Σy², Σxy per customer.
    NaN where Σy = 0 (no impressions) or n < 2.
    """
    n, sx, sy, sxx, syy, sxy = (
        np.asarray(a, dtype=np.float64) for a in (n, x_total, y_total, xx_total, yy_total, xy_total)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        ratio = sx / sy
        vx = (sxx - sx * mx) / (n - 1)
        vy = (syy - sy * my) / (n - 1)
        cxy = (sxy - sx * my) / (n - 1)
        var = np.maximum(vx - 2 * ratio * cxy + ratio**2 * vy, 0.0) / (n * my**2)
        ok = (n >= 2) & (sy > 0)
        return Estimate(
            n=_scalar(n), value=_scalar(np.where(ok, ratio, np.nan)), variance=_scalar(np.where(ok, var, np.nan))
        )


def _values(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one value per customer (a 1-D array), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds a missing or infinite value")
    return a


def summarize(
    variants: np.ndarray, values: np.ndarray, *, denominator: np.ndarray | None = None, n_variants: int | None = None
) -> list[Estimate]:
    """Per-customer data in, one ``Estimate`` per variant out (vectorised with bincount).

    ``variants`` is ``assign``'s output (customers at -1, the holdout, are left out). Without
    ``denominator`` the metric is the mean of ``values`` (a proportion for 0/1 values); with it,
    the ratio Σvalues / Σdenominator with the delta-method variance.
    """
    v = np.asarray(variants)
    if v.ndim != 1 or (v.size and not np.issubdtype(v.dtype, np.integer)):
        raise ValueError("variants must be a 1-D integer array of variant indexes (assign's output)")
    x = _values("values", values)
    if x.shape != v.shape:
        raise ValueError(f"values has {x.size} entries for {v.size} customers")
    k = n_variants if n_variants is not None else int(v.max(initial=-1)) + 1
    keep = v >= 0
    if np.any(v[keep] >= k):
        raise ValueError(f"a variant index is >= n_variants ({k})")
    v, x = v[keep], x[keep]
    n = np.bincount(v, minlength=k)
    sx = np.bincount(v, weights=x, minlength=k)
    sxx = np.bincount(v, weights=x * x, minlength=k)
    if denominator is None:
        e = mean_estimate(n, sx, sxx)
    else:
        y = _values("denominator", denominator)
        if y.shape != keep.shape:
            raise ValueError(f"denominator has {y.size} entries for {keep.size} customers")
        if np.any(y < 0):
            raise ValueError("denominator must not be negative")
        y = y[keep]
        sy = np.bincount(v, weights=y, minlength=k)
        e = ratio_estimate(
            n, sx, sy, sxx, np.bincount(v, weights=y * y, minlength=k), np.bincount(v, weights=x * y, minlength=k)
        )
    return [Estimate(n=int(n[i]), value=float(e.value[i]), variance=float(e.variance[i])) for i in range(k)]


def _scalar(a: np.ndarray):
    return float(a) if np.ndim(a) == 0 else a


# ---------------------------------------------------------------------------------------------
# The comparison: fixed-horizon for reference, mSPRT for decisions
# ---------------------------------------------------------------------------------------------


def _optimal_r(alpha: float) -> float:
    """The ratio tau²/V where the mixture's confidence sequence is narrowest: r = 2 log(1/alpha) + log(1 + r)."""
    r = 2 * math.log(1 / alpha)
    for _ in range(100):
        r_next = 2 * math.log(1 / alpha) + math.log1p(r)
        if abs(r_next - r) < 1e-12:
            break
        r = r_next
    return r


def tau_for(mde: float, *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER) -> float:
    """The mixture's standard deviation from the minimum detectable effect (module docstring).

    tau² = r · (mde / (z_{1-alpha/2} + z_power))², r solving r = 2 log(1/alpha) + log(1 + r).
    """
    _check_level(alpha, power)
    if not _positive(mde):
        raise ValueError(f"mde (the smallest difference worth detecting) must be a positive number, got {mde!r}")
    z = sps.norm.isf(alpha / 2) + sps.norm.ppf(power)
    return float(math.sqrt(_optimal_r(alpha)) * mde / z)


def _positive(x) -> bool:
    try:
        return math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False


def _check_level(alpha: float, power: float | None = None) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if power is not None and not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")


def msprt(diff, variance, *, tau: float, alpha: float = DEFAULT_ALPHA):
    """The mSPRT at one look: (p-value, interval low, interval high), arrays broadcast.

    p = min(1, 1/Λ), interval d ± sqrt(V (V + tau²)/tau² · (2 log(1/alpha) + log((V + tau²)/V))).
    """
    d = np.asarray(diff, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = tau * tau
    with np.errstate(invalid="ignore", divide="ignore"):
        log_lr = 0.5 * np.log(v / (v + t2)) + d * d * t2 / (2 * v * (v + t2))
        p = np.exp(-np.maximum(log_lr, 0.0))
        half = np.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + np.log((v + t2) / v)))
    return p, d - half, d + half


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control on one metric (fields are floats, or arrays in simulations).

    ``fixed_*``: the fixed-horizon Welch z interval and p-value, for reference only: valid once, at the
    planned sample size, not when looked at daily. ``always_valid_*``: the mSPRT's, valid at every look;
    decisions rest on them. ``significant``: always-valid p < alpha (the interval then excludes 0).
    """

    control: Estimate
    treatment: Estimate
    difference: np.ndarray | float
    variance: np.ndarray | float
    fixed_ci: tuple
    fixed_p: np.ndarray | float
    always_valid_ci: tuple
    always_valid_p: np.ndarray | float
    alpha: float
    tau: float

    @property
    def significant(self):
        return self.always_valid_p < self.alpha

    @property
    def fixed_significant(self):
        return self.fixed_p < self.alpha


def compare(
    control: Estimate,
    treatment: Estimate,
    *,
    tau: float,
    alpha: float = DEFAULT_ALPHA,
    previous: Comparison | None = None,
) -> Comparison:
    """Treatment minus control, with both tests. ``previous`` (the last look's comparison) carries the
    running minimum of the always-valid p-value and the running intersection of its interval."""
    _check_level(alpha)
    if not _positive(tau):
        raise ValueError(f"tau must be a positive number, got {tau!r}")
    d = np.asarray(treatment.value, dtype=np.float64) - np.asarray(control.value, dtype=np.float64)
    var = np.asarray(treatment.variance, dtype=np.float64) + np.asarray(control.variance, dtype=np.float64)
    se = np.sqrt(var)
    z = sps.norm.isf(alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a zero variance (every customer alike in both arms) makes the interval the point d; an
        # undefined one (an empty arm, a ratio without impressions) leaves the p-value undefined
        fixed_p = np.where(se > 0, 2 * sps.norm.sf(np.abs(d) / se), np.where(d == 0, 1.0, 0.0))
        fixed_p = np.where(np.isnan(d) | np.isnan(se), np.nan, fixed_p)
    p, lo, hi = msprt(d, var, tau=tau, alpha=alpha)
    if previous is not None:
        p = np.fmin(p, previous.always_valid_p)
        lo = np.fmax(lo, previous.always_valid_ci[0])
        hi = np.fmin(hi, previous.always_valid_ci[1])
    return Comparison(
        control=control,
        treatment=treatment,
        difference=_scalar(d),
        variance=_scalar(var),
        fixed_ci=(_scalar(d - z * se), _scalar(d + z * se)),
        fixed_p=_scalar(fixed_p),
        always_valid_ci=(_scalar(lo), _scalar(hi)),
        always_valid_p=_scalar(p),
        alpha=alpha,
        tau=tau,
    )


def excludes_zero(ci) -> np.ndarray | bool:
    """True where the interval (low, high) does not hold 0 (an empty running intersection holds nothing)."""
    lo, hi = (np.asarray(c) for c in ci)
    return ~((lo <= 0) & (hi >= 0))


@dataclass(frozen=True)
class GuardRail:
    """A metric that must not get worse: its estimates per variant, the harm worth catching (its own
    mde, in the metric's units) and its direction."""

    estimates: Sequence[Estimate]
    mde: float
    higher_is_better: bool = True


@dataclass(frozen=True)
class Analysis:
    """One look at an experiment: the comparisons, the SRM check and the verdict."""

    primary: list[Comparison]
    guardrails: dict[str, list[Comparison]]
    srm: dict | None
    verdict: str
    winner: int | None
    reasons: list[str] = field(default_factory=list)


def analyze(
    primary: Sequence[Estimate],
    *,
    mde: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    higher_is_better: bool = True,
    guardrails: Mapping[str, GuardRail] | None = None,
    shares: Sequence[float] | None = None,
    previous: Analysis | None = None,
) -> Analysis:
    """Compare every treatment (variants 1..k-1) with the control (variant 0) and decide.

    Verdicts, first that applies: ``SAMPLE_RATIO_MISMATCH`` (when ``shares`` are given and the counts
    do not fit them; no winner), ``A_BETTER`` (every treatment is significantly worse on the primary
    metric; ``winner`` = 0; guard-rail harms are listed in the reasons), ``GUARDRAIL_HARM`` (a treatment
    is significantly worse on a guard-rail), ``B_BETTER`` (a treatment is significantly better;
    ``winner`` is its index, the largest difference among those that are), else ``NO_DIFFERENCE_YET``.
    Each comparison is made at alpha / (k - 1).
    """
    k = len(primary)
    if k < 2:
        raise ValueError("an experiment needs at least two variants (a control and a treatment)")
    a = alpha / (k - 1)
    tau = tau_for(mde, alpha=a, power=power)
    prev = previous.primary if previous is not None else [None] * (k - 1)
    comps = [compare(primary[0], primary[i], tau=tau, alpha=a, previous=prev[i - 1]) for i in range(1, k)]
    guards: dict[str, list[Comparison]] = {}
    reasons: list[str] = []
    for name, g in (guardrails or {}).items():
        if len(g.estimates) != k:
            raise ValueError(f"guard-rail {name!r} has {len(g.estimates)} variants, the primary metric {k}")
        g_tau = tau_for(g.mde, alpha=a, power=power)
        g_prev = previous.guardrails.get(name) if previous is not None else None
        guards[name] = [
            compare(g.estimates[0], g.estimates[i], tau=g_tau, alpha=a, previous=g_prev[i - 1] if g_prev else None)
            for i in range(1, k)
        ]
        for i, c in enumerate(guards[name], start=1):
            worse = c.difference < 0 if g.higher_is_better else c.difference > 0
            if c.significant and worse:
                reasons.append(f"variant {i} is worse on {name}")
    srm_result = srm([e.n for e in primary], shares) if shares is not None else None
    if srm_result is not None and srm_result["mismatch"]:
        return Analysis(comps, guards, srm_result, SAMPLE_RATIO_MISMATCH, None, [srm_result["message"]])
    sign = 1.0 if higher_is_better else -1.0
    if all(c.significant and sign * c.difference < 0 for c in comps):
        # every treatment loses on the primary metric: a harm on a guard-rail changes nothing to that
        return Analysis(
            comps, guards, srm_result, A_BETTER, 0, ["the control is better than every treatment", *reasons]
        )
    if reasons:
        return Analysis(comps, guards, srm_result, GUARDRAIL_HARM, None, reasons)
    better = [
        (sign * c.difference, i) for i, c in enumerate(comps, start=1) if c.significant and sign * c.difference > 0
    ]
    if better:
        winner = max(better)[1]
        return Analysis(comps, guards, srm_result, B_BETTER, winner, [f"variant {winner} is better than the control"])
    return Analysis(comps, guards, srm_result, NO_DIFFERENCE_YET, None, [])


# ---------------------------------------------------------------------------------------------
# Sample-ratio mismatch
# ---------------------------------------------------------------------------------------------


def srm(counts, shares: Sequence[float], *, threshold: float = SRM_THRESHOLD) -> dict:
    """Chi-square goodness of fit of the customers per variant against the declared shares.

    ``counts`` has the variants on its last axis (shape (k,) or (..., k) for many experiments at once).
    Returns chi2, p_value, mismatch (p < threshold) and a message.
    """
    s = _check_shares(shares)
    c = np.asarray(counts, dtype=np.float64)
    if c.shape[-1:] != s.shape:
        raise ValueError(f"counts has {c.shape[-1] if c.ndim else 0} variants, shares {s.size}")
    if np.any(c < 0):
        raise ValueError("counts must not be negative")
    total = c.sum(axis=-1, keepdims=True)
    expected = total * s
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.where(total[..., 0] > 0, ((c - expected) ** 2 / expected).sum(axis=-1), 0.0)
    p = sps.chi2.sf(chi2, df=s.size - 1)
    mismatch = p < threshold
    if np.ndim(p) == 0:
        msg = f"The split {'does not fit' if mismatch else 'fits'} the declared shares (chi-square p = {float(p):.2g})"
        return {"chi2": float(chi2), "p_value": float(p), "mismatch": bool(mismatch), "message": msg}
    return {"chi2": chi2, "p_value": p, "mismatch": mismatch, "message": None}


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The customers an experiment needs: in total and per variant; ``multiplier`` is the sequential
    test's sample relative to the fixed test's (1 for the fixed test)."""

    total: int
    per_variant: tuple[int, ...]
    sequential: bool
    multiplier: float


_CALIBRATION_PATHS = 20_000
_CALIBRATION_SEED = 20170917  # fixed: the same inputs always give the same plan


@lru_cache(maxsize=256)
def sequential_multiplier(alpha: float, power: float, looks: int) -> float:
    """How many times the fixed test's sample the mSPRT needs to reach ``power`` at the MDE.

    The problem is scale-free once tau follows ``tau_for``: in units where the fixed test's variance
    of the difference is 1, the true difference is z_{1-alpha/2} + z_power and the estimate after a
    share t of the sample is Brownian motion. Simulated with ``looks`` equally spaced looks (daily
    looks at steady traffic), the multiplier m is found by bisection so that the share of paths that
    reject in the right direction by the end equals ``power``; 20,000 paths, fixed seed (Monte Carlo
    error of the power about ±0.3 points).
    """
    _check_level(alpha, power)
    if not isinstance(looks, int) or looks < 1:
        raise ValueError(f"looks must be a positive whole number, got {looks!r}")
    looks = min(looks, 365)  # beyond a year of daily looks the multiplier hardly moves
    theta = sps.norm.isf(alpha / 2) + sps.norm.ppf(power)
    tau2 = _optimal_r(alpha)
    rng = np.random.default_rng(_CALIBRATION_SEED)
    t = np.arange(1, looks + 1) / looks
    w = np.cumsum(rng.standard_normal((_CALIBRATION_PATHS, looks)) * np.sqrt(1.0 / looks), axis=1)
    bound = 2 * math.log(1 / alpha)

    def power_at(m: float) -> float:
        info = m * t  # 1 / V at each look
        v = 1.0 / info
        threshold = (bound + np.log((v + tau2) / v)) * v * (v + tau2) / tau2  # d² must reach it
        hits = 0
        for chunk in range(0, _CALIBRATION_PATHS, 2_000):  # bounded memory for a year of looks
            d = (theta * info + math.sqrt(m) * w[chunk : chunk + 2_000]) * v
            hits += int(((d * d >= threshold) & (d > 0)).any(axis=1).sum())
        return hits / _CALIBRATION_PATHS

    lo, hi = 0.5, 1.0
    while power_at(hi) < power:
        lo, hi = hi, hi * 2
        if hi > 64:
            raise ValueError("the sequential test cannot reach this power")
    for _ in range(40):
        mid = (lo + hi) / 2
        if power_at(mid) >= power:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3:
            break
    return hi


def sample_size(
    *,
    baseline: float,
    mde: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    shares: Sequence[float] = (0.5, 0.5),
    kind: str = "proportion",
    variance: float | None = None,
    sequential: bool = True,
    looks: int = 30,
) -> Plan:
    """Customers needed to detect an absolute difference ``mde`` with ``power``.

    Fixed test: N = (z_{1-a/2} + z_power)² (σ0²/s0 + σ1²/s_i)/mde², the largest over the treatments i,
    with a = alpha / (number of treatments). ``kind`` "proportion": σ0² = b(1-b), σ1² = (b+mde)(1-b-mde)
    from the baseline rate b; "mean" and "ratio": ``variance`` is the per-customer variance (for a ratio,
    the delta-method one, (s_x² - 2 R s_xy + R² s_y²)/ȳ²), the same in every variant. Sequential
    (mSPRT, what ``analyze`` decides with): N times ``sequential_multiplier(a, power, looks)``.
    """
    s = _check_shares(shares)
    _check_level(alpha, power)
    if kind not in METRIC_KINDS:
        raise ValueError(f"kind must be one of {', '.join(METRIC_KINDS)}, got {kind!r}")
    if not _positive(mde):
        raise ValueError(f"mde must be a positive difference in the metric's units, got {mde!r}")
    if kind == "proportion":
        if not 0 < baseline < 1:
            raise ValueError(f"baseline must be a rate in (0, 1) for a proportion, got {baseline!r}")
        if baseline + mde >= 1:
            raise ValueError(f"baseline + mde must stay below 1, got {baseline + mde:g}")
        v0, v1 = baseline * (1 - baseline), (baseline + mde) * (1 - baseline - mde)
    else:
        if not _positive(variance):
            raise ValueError(f"variance (per customer) must be a positive number for a {kind} metric, got {variance!r}")
        v0 = v1 = float(variance)
    a = alpha / (s.size - 1)
    z = sps.norm.isf(a / 2) + sps.norm.ppf(power)
    n_fixed = max(z * z * (v0 / s[0] + v1 / s[i]) / (mde * mde) for i in range(1, s.size))
    m = sequential_multiplier(float(a), float(power), int(looks)) if sequential else 1.0
    per = tuple(math.ceil(n_fixed * m * share) for share in s)
    return Plan(total=int(sum(per)), per_variant=per, sequential=sequential, multiplier=m)


def expected_days(n_needed: int, daily_traffic: float) -> int:
    """Days until ``n_needed`` customers have entered, at ``daily_traffic`` new eligible customers a day."""
    if not (_positive(n_needed) or n_needed == 0):
        raise ValueError(f"n_needed must not be negative, got {n_needed!r}")
    if not _positive(daily_traffic):
        raise ValueError(f"daily_traffic must be a positive number of customers a day, got {daily_traffic!r}")
    return math.ceil(n_needed / daily_traffic)


def plan_experiment(*, daily_traffic: float, **kwargs) -> tuple[Plan, int]:
    """The plan and its duration in days at ``daily_traffic`` eligible customers a day, with a daily look.

    ``kwargs`` are ``sample_size``'s. For the sequential test the number of looks is the number of
    days, which depends on the sample: iterated until they agree (more looks need fewer customers, so
    it settles in a few rounds).
    """
    if not kwargs.get("sequential", True):
        plan = sample_size(**kwargs)
        return plan, expected_days(plan.total, daily_traffic)
    kwargs.pop("looks", None)
    looks = 30
    for _ in range(10):
        plan = sample_size(looks=looks, **kwargs)
        days = max(expected_days(plan.total, daily_traffic), 1)
        if days == looks or (days > 365 and looks == 365):
            break
        looks = min(days, 365)
    return plan, days


# ---------------------------------------------------------------------------------------------
# The campaign report's two-proportion test, on the same method
# ---------------------------------------------------------------------------------------------

Z95 = 1.959963984540054


def two_proportion(x_t: int, n_t: int, x_c: int, n_c: int, *, z: float = Z95) -> dict:
    """Treated vs control conversion, in the dict shape of ``campaigns.stats.two_proportion``.

    The absolute uplift's interval and its p-value come from the same unpooled (Welch) z statistic,
    so ``p_value < alpha`` exactly when the interval excludes 0, alpha = 2 (1 - Φ(z)) (0.05 for the
    default z). The relative uplift keeps the log risk-ratio interval. Figures are None where
    undefined (an empty group; no conversions for the ratio).
    """
    for name, val in (("x_t", x_t), ("n_t", n_t), ("x_c", x_c), ("n_c", n_c)):
        if not isinstance(val, int | np.integer) or val < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {val!r}")
    if x_t > n_t or x_c > n_c:
        raise ValueError("conversions cannot exceed the group's size")
    out = {
        "treated_n": n_t,
        "treated_conversions": x_t,
        "control_n": n_c,
        "control_conversions": x_c,
        "treated_rate": None,
        "control_rate": None,
        "uplift_abs": None,
        "uplift_abs_ci": None,
        "uplift_rel": None,
        "uplift_rel_ci": None,
        "z": None,
        "p_value": None,
        "significant": None,
    }
    if n_t <= 0 or n_c <= 0:
        return out
    p_t, p_c = x_t / n_t, x_c / n_c
    diff = p_t - p_c
    out.update(treated_rate=p_t, control_rate=p_c, uplift_abs=diff)
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    out["uplift_abs_ci"] = [diff - z * se, diff + z * se]
    if se > 0:
        out["z"] = diff / se
        out["p_value"] = math.erfc(abs(out["z"]) / math.sqrt(2.0))
    else:
        # Both rates at 0 or 1: the interval is the single point diff; the p-value follows it.
        out["z"] = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        out["p_value"] = 1.0 if diff == 0 else 0.0
    out["significant"] = out["p_value"] < math.erfc(z / math.sqrt(2.0))
    if p_c > 0:
        out["uplift_rel"] = diff / p_c
        if x_t > 0:
            se_log = math.sqrt(max((1 - p_t) / x_t + (1 - p_c) / x_c, 0.0))
            log_rr = math.log(p_t / p_c)
            out["uplift_rel_ci"] = [math.exp(log_rr - z * se_log) - 1, math.exp(log_rr + z * se_log) - 1]
    return out
