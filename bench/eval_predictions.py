#!/usr/bin/env python
"""How well the profiles' predictions foresee repeat buying (issue #16): docs/profiles.md, "Predictions".

On UCI Online Retail, the profiles' features are computed as of a cut date (``CUT``, 2011-09-10) from the
invoices up to it, and the models predict each customer's orders and spend in the ``HORIZON`` (90) days
after it; what the customers did in those days (the data end on 2011-12-09) is the truth. Side by side on
the same summary (orders = distinct invoices, as the profiles count them):

- ``ours``: ``profiles.predictions`` (BG/NBD and Gamma-Gamma);
- ``lifetimes``: the reference library's BetaGeoFitter and GammaGammaFitter (lifetimes 0.11.3, dev only);
- ``naive``: each customer's rate so far, orders / days since the first order × horizon (spend: that times
  the customer's average order value).

Figures per model: mean absolute error per customer, Pearson correlation, and predicted vs actual total,
for orders and for spend; the fitted parameters of both implementations and their largest relative
difference; and ``speed``: fitting and predicting on a simulated population of a million customers.

Run as ``python bench/eval_predictions.py [--quick]`` (results in ``bench/results/predictions.json``); ``make
bench`` runs it after ``bench/run.py``. The dataset is read from ``DATASETS_DIR`` (default
``<repo>/../shared/datasets``). Invoice times are UK local time; they are read as UTC throughout, which
shifts nothing but the day boundaries by an hour.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from profiles import predictions  # noqa: E402
from profiles.features import compute_features  # noqa: E402

CUT = pd.Timestamp("2011-09-10", tz="UTC")
HORIZON = 90
RESULTS = HERE / "results"


def retail_path() -> Path:
    base = Path(os.environ.get("DATASETS_DIR", HERE.parent.parent / "shared" / "datasets"))
    return base / "online-retail" / "online_retail.csv.gz"


def retail_events(path: Path | None = None) -> pd.DataFrame:
    """Every invoice line with a customer as a purchase (cancellations as returns), the invoice as the order."""
    path = path or retail_path()
    if not path.exists():
        raise FileNotFoundError(f"UCI Online Retail not found at {path} (set DATASETS_DIR)")
    df = pd.read_csv(
        path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"}, parse_dates=["InvoiceDate"]
    )
    df = df[df["CustomerID"].notna()]
    cancelled = df["InvoiceNo"].str.startswith("C")
    return pd.DataFrame(
        {
            "customer_id": df["CustomerID"].astype("int64"),
            "type": np.where(cancelled, "return", "purchase"),
            "value": df["Quantity"].abs().astype(float),
            "amount": (df["Quantity"].abs() * df["UnitPrice"]).astype(float),
            "occurred_at": df["InvoiceDate"].dt.tz_localize("UTC"),
            "category": None,
            "item_price": df["UnitPrice"].astype(float),
            "order_id": df["InvoiceNo"],
        }
    )


def split(events: pd.DataFrame, *, cut: pd.Timestamp = CUT, horizon: int = HORIZON) -> pd.DataFrame:
    """Per customer who bought by ``cut``: the model's inputs as of ``cut`` (x, t_x, T, n, m) and what they
    did in the ``horizon`` days after it (``actual_orders``, ``actual_spend``, net of returns)."""
    before = compute_features(events, now=cut, window_days=100_000)
    before = before[before["orders_total"] > 0]
    end = cut + pd.Timedelta(days=horizon)
    after = compute_features(events, now=end, window_days=horizon, customer_ids=before.index)
    x, t_x, T = predictions.summarise(
        before["orders_total"], before["first_purchase_at"], before["last_purchase_at"], now=cut
    )
    return pd.DataFrame(
        {
            "x": x,
            "t_x": t_x,
            "T": T,
            "n": before["frequency"].to_numpy(float),
            "m": before["avg_order_value"].to_numpy(float),
            "actual_orders": (after.loc[before.index, "orders_total"] - before["orders_total"]).to_numpy(float),
            "actual_spend": after.loc[before.index, "monetary"].to_numpy(float),
        },
        index=before.index,
    )


def _scores(predicted: np.ndarray, actual: np.ndarray) -> dict:
    return {
        "mae": round(float(np.mean(np.abs(predicted - actual))), 4),
        "correlation": round(float(np.corrcoef(predicted, actual)[0, 1]), 4),
        "predicted_total": round(float(predicted.sum()), 1),
        "actual_total": round(float(actual.sum()), 1),
    }


def _lifetimes(s: pd.DataFrame, horizon: int) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """The reference library fitted on the same summary: its parameters, predicted orders and spend."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BetaGeoFitter(penalizer_coef=0.0).fit(s["x"], s["t_x"], s["T"])
        orders = np.asarray(bg.conditional_expected_number_of_purchases_up_to_time(horizon, s["x"], s["t_x"], s["T"]))
        usable = (s["n"] >= 2) & (s["m"] > 0)
        gg = GammaGammaFitter(penalizer_coef=0.0).fit(s.loc[usable, "n"], s.loc[usable, "m"])
        own = (s["n"] >= 1) & (s["m"] > 0)
        value = np.full(len(s), gg.conditional_expected_average_profit().mean())
        value[own.to_numpy()] = np.asarray(gg.conditional_expected_average_profit(s.loc[own, "n"], s.loc[own, "m"]))
    return dict(bg.params_), dict(gg.params_), orders, orders * value


def evaluate(s: pd.DataFrame, *, horizon: int = HORIZON) -> dict:
    """Ours, the library's and the naive rate side by side on one split (see the module docstring)."""
    started = time.monotonic()
    ours = predictions.predict(s["x"], s["t_x"], s["T"], s["n"], s["m"], horizon_days=horizon)
    fit_s = time.monotonic() - started
    info = ours.info
    actual_o, actual_v = s["actual_orders"].to_numpy(), s["actual_spend"].to_numpy()
    out = {
        "split": {
            "cut": CUT.date().isoformat(),
            "horizon_days": horizon,
            "customers": len(s),
            "repeat_buyers": int((s["x"] > 0).sum()),
            "customers_ordering_after_cut": int((actual_o > 0).sum()),
        },
        "ours": {
            "bgnbd": info["bgnbd"],
            "gamma_gamma": info["gamma_gamma"],
            "seconds": round(fit_s, 3),
            "orders": _scores(ours.frame["predicted_orders"].to_numpy(), actual_o),
            "spend": _scores(ours.frame["predicted_value"].to_numpy(), actual_v),
        },
    }
    n_orders = (s["x"] + 1).to_numpy(float)
    naive_o = n_orders / np.maximum(s["T"].to_numpy(), 1.0) * horizon
    aov = np.where(s["m"].to_numpy() > 0, s["m"].to_numpy(), np.nanmean(s["m"].where(s["m"] > 0)))
    out["naive"] = {"orders": _scores(naive_o, actual_o), "spend": _scores(naive_o * aov, actual_v)}
    try:
        bg, gg, lib_o, lib_v = _lifetimes(s, horizon)
    except ImportError:
        out["lifetimes"] = {"error": "lifetimes is not installed (pip install -r requirements-dev.txt)"}
        return out
    ours_bg, ours_gg = info["bgnbd"], info["gamma_gamma"]
    out["lifetimes"] = {
        "bgnbd": {k: round(float(v), 8) for k, v in bg.items()},
        "gamma_gamma": {k: round(float(v), 8) for k, v in gg.items()},
        "orders": _scores(lib_o, actual_o),
        "spend": _scores(lib_v, actual_v),
        "largest_relative_parameter_difference": float(
            max(
                *(abs(ours_bg[k] - bg[k]) / bg[k] for k in ("r", "alpha", "a", "b")),
                *(abs(ours_gg[k] - gg[k]) / gg[k] for k in ("p", "q", "v")),
            )
        ),
    }
    out["target_met"] = out["ours"]["orders"]["mae"] <= out["lifetimes"]["orders"]["mae"]
    return out


def simulated_population(n: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """A BG/NBD population of ``n`` customers over two years, in whole days (for the speed figure)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 730, n).astype(float)
    lam = rng.gamma(0.6, 1 / 30, n)
    x = np.minimum(rng.poisson(lam * T), rng.geometric(rng.beta(0.8, 3.0, n)) - 1)
    t_x = np.where(x > 0, np.floor(T * rng.beta(np.maximum(x, 1), 1.0)), 0.0)
    m = rng.gamma(3.0, 20.0, n)
    return {"x": x, "t_x": t_x, "T": T, "n": x + 1.0, "m": m}


def speed(n: int) -> dict:
    """Seconds to fit both models and predict for ``n`` simulated customers (the step's added time)."""
    pop = simulated_population(n)
    started = time.monotonic()
    result = predictions.predict(pop["x"], pop["t_x"], pop["T"], pop["n"], pop["m"], horizon_days=HORIZON)
    return {
        "customers": n,
        "distinct_histories": len(pd.DataFrame({k: pop[k] for k in ("x", "t_x", "T")}).drop_duplicates()),
        "seconds": round(time.monotonic() - started, 2),
        "basis": result.info["basis"],
    }


def run(quick: bool = False) -> dict:
    return {"online_retail": evaluate(split(retail_events())), "speed": speed(100_000 if quick else 1_000_000)}


if __name__ == "__main__":
    figures = run(quick="--quick" in sys.argv)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predictions.json").write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))
