"""The uplift statistics of the report: a two-proportion test, in plain math (no scipy.stats, no statsmodels)."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def two_proportion(x_t: int, n_t: int, x_c: int, n_c: int, *, z: float = Z95) -> dict:
    """Treated vs control conversion: rates, absolute uplift with a Wald CI, relative uplift with a
    log risk-ratio CI, and the pooled two-proportion z-test's two-sided p-value.

    Every figure is None where it is undefined (an empty group, no conversions for the ratio).
    """
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
    pooled = (x_t + x_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    if se0 > 0:
        out["z"] = diff / se0
        out["p_value"] = normal_two_sided_p(out["z"])
    else:
        out["z"], out["p_value"] = 0.0, 1.0
    out["significant"] = out["p_value"] < 0.05
    if p_c > 0:
        out["uplift_rel"] = diff / p_c
        if x_t > 0:
            se_log = math.sqrt(max((1 - p_t) / x_t + (1 - p_c) / x_c, 0.0))
            log_rr = math.log(p_t / p_c)
            out["uplift_rel_ci"] = [math.exp(log_rr - z * se_log) - 1, math.exp(log_rr + z * se_log) - 1]
    return out
