"""Category affinity, validated out of time (issue #16; docs/profiles.md, "Category affinity").

On UCI Online Retail (DATASETS_DIR/online-retail/online_retail.csv.gz; categories from the last
word of descriptions, as the importer makes them): affinity is computed as of a cut date with 90
days of data after it (the model trains on its own time split before the cut: features as of
cut - 90 days, labels in the 90 days up to the cut), then every (customer, candidate category)
probability is compared with whether the customer bought from that category in the 90 days after
the cut. Figures: AUC of the probabilities, of the past-share baseline ("share of the customer's
past purchases in that category") and of the interest share alone, on the same rows; calibration
(reliability by decile of the probability, Brier score, expected calibration error over ten
equal-width bins). The same on the demo shop (profiles.demo), a quick second check.

Pure pandas, no database: `python bench/eval_affinity.py` writes bench/results/affinity.json;
`make bench` runs it too (bench/run.py runs every bench_*.py and eval_*.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from profiles.affinity import (  # noqa: E402
    FEATURES,
    affinity,
    cut_features,
    expected_calibration_error,
    reliability_table,
)

HORIZON_DAYS = 90
RETAIL_CUT = pd.Timestamp("2011-09-10 00:00", tz="UTC")  # the data ends 2011-12-09
# The profiles' default weights and half-life (config/settings.py EVENT_WEIGHTS, EVENT_DECAY_HALF_LIFE_DAYS).
WEIGHTS = {"view": 1.0, "click": 1.5, "add_to_cart": 3.0, "purchase": 5.0, "favorite": 3.0, "rating": "explicit"}
HALF_LIFE_DAYS = 60.0


def _datasets() -> Path:
    return Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets"))


def retail_events(path: Path) -> pd.DataFrame:
    """Invoice lines as the profiles step reads them: purchases (cancellations as returns), the
    invoice as order id, the category from the description (profiles.importers' rule)."""
    df = pd.read_csv(
        path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"}, parse_dates=["InvoiceDate"]
    )
    df = df[df["CustomerID"].notna()]
    last = df["Description"].fillna("").str.strip().str.split().str[-1].fillna("")
    category = last.str.title().where(last.str.len() > 0, "Other")
    return pd.DataFrame(
        {
            "customer_id": df["CustomerID"].astype("int64").to_numpy(),
            "type": np.where(df["InvoiceNo"].str.upper().str.startswith("C"), "return", "purchase"),
            "value": df["Quantity"].abs().astype(float).to_numpy(),
            "amount": (df["Quantity"].abs() * df["UnitPrice"]).astype(float).to_numpy(),
            "occurred_at": df["InvoiceDate"].dt.tz_localize("Europe/London").dt.tz_convert("UTC").to_numpy(),
            "category": category.to_numpy(),
            "item_price": df["UnitPrice"].astype(float).to_numpy(),
            "item_kind": "product",
            "order_id": df["InvoiceNo"].to_numpy(),
        }
    ).assign(occurred_at=lambda f: pd.to_datetime(f["occurred_at"], utc=True))


def evaluate(events: pd.DataFrame, *, cut: pd.Timestamp, horizon_days: float = HORIZON_DAYS) -> dict:
    """Affinity as of ``cut`` against purchases in (cut, cut + horizon]."""
    started = time.monotonic()
    past = events[events["occurred_at"] <= cut]
    probabilities, counts = affinity(
        past, now=cut, horizon_days=horizon_days, weights=WEIGHTS, half_life_days=HALF_LIFE_DAYS
    )
    seconds = time.monotonic() - started
    rows = pd.DataFrame(
        [(c, cat, p) for c, d in probabilities.items() for cat, p in d.items()], columns=["c", "cat", "p"]
    )
    if rows.empty:
        return {"counts": counts, "error": "no probabilities (see counts)"}
    end = cut + pd.Timedelta(days=horizon_days)
    future = events[(events["occurred_at"] > cut) & (events["occurred_at"] <= end) & (events["type"] == "purchase")]
    bought = set(zip(future["customer_id"].to_numpy(), future["category"].astype(str).to_numpy(), strict=True))
    y = np.array([(c, cat) in bought for c, cat in zip(rows["c"], rows["cat"], strict=True)], dtype=int)
    p = rows["p"].to_numpy(dtype=float)
    # the baselines on the same rows, as of the cut
    known = cut_features(
        past,
        at=cut,
        categories=pd.Index(sorted(past["category"].dropna().astype(str).unique())),
        weights=WEIGHTS,
        half_life_days=HALF_LIFE_DAYS,
    )
    r = np.searchsorted(known.ids, rows["c"].to_numpy())
    col = pd.Index(sorted(past["category"].dropna().astype(str).unique())).get_indexer(rows["cat"])
    purchases = np.asarray(known.purchases[r, col]).ravel()
    total = np.asarray(known.purchases.sum(axis=1)).ravel()[r]
    past_share = np.divide(purchases, total, out=np.zeros(len(r)), where=total > 0)
    interest = np.asarray(known.interest[r, col]).ravel()

    from sklearn.metrics import brier_score_loss, roc_auc_score

    return {
        "cut": str(cut.date()),
        "horizon_days": horizon_days,
        "customers_with_affinity": int(rows["c"].nunique()),
        "rows": len(rows),
        "bought_rate": round(float(y.mean()), 4),
        "auc": round(float(roc_auc_score(y, p)), 4),
        "auc_past_share": round(float(roc_auc_score(y, past_share)), 4),
        "auc_interest": round(float(roc_auc_score(y, interest)), 4),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "brier_past_share": round(float(brier_score_loss(y, past_share)), 4),
        "ece": round(expected_calibration_error(y, p), 4),
        "mean_predicted": round(float(p.mean()), 4),
        "reliability_by_decile": reliability_table(y, p, by="decile"),
        "model": counts,
        "features": list(FEATURES),
        "seconds": round(seconds, 2),
    }


def demo_events(n_customers: int, n_events: int) -> tuple[pd.DataFrame, pd.Timestamp]:
    from profiles.demo import generate_shop

    now = pd.Timestamp("2026-06-01", tz="UTC")
    shop = generate_shop(seed=7, n_customers=n_customers, n_events=n_events, now=now, months=12)
    items = shop.items.set_index("external_id")
    cid = pd.Series(np.arange(1, len(shop.customers) + 1), index=shop.customers["external_id"])
    ev = shop.events()
    frame = pd.DataFrame(
        {
            "customer_id": ev["customer"].map(cid).to_numpy(),
            "type": ev["type"].to_numpy(),
            "value": ev["value"].to_numpy(dtype=float),
            "amount": ev["amount"].to_numpy(dtype=float),
            "occurred_at": ev["occurred_at"].to_numpy(),
            "category": ev["item"].map(items["category"]).to_numpy(),
            "item_price": ev["item"].map(items["price"]).to_numpy(dtype=float),
            "item_kind": ev["item_kind"].to_numpy(),
            "order_id": [c.get("order_id") if c else None for c in ev["context"]],
        }
    )
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame, now


def run(quick: bool = False) -> dict:
    out: dict = {}
    path = _datasets() / "online-retail" / "online_retail.csv.gz"
    if path.exists():
        out["online_retail"] = evaluate(retail_events(path), cut=RETAIL_CUT)
    else:
        out["online_retail"] = {"skipped": f"{path} not found (set DATASETS_DIR)"}
    events, now = demo_events(5_000 if quick else 20_000, 200_000 if quick else 800_000)
    out["demo_shop"] = evaluate(events, cut=now - pd.Timedelta(days=HORIZON_DAYS))
    return out


if __name__ == "__main__":
    figures = run(quick="--quick" in sys.argv)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "affinity.json").write_text(json.dumps({"status": "ok", "figures": figures}, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))
