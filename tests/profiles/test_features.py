"""Profile features: hand-worked cases, chunk invariance, and RFM against UCI Online Retail invoices."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiles.demo import generate_shop
from profiles.features import (
    FEATURE_COLUMNS,
    catalogue_price_cuts,
    compute_features,
    score_rfm,
)

NOW = pd.Timestamp("2025-06-01 00:00", tz="UTC")


def ev(
    customer_id,
    type_,
    days_ago,
    *,
    value=np.nan,
    amount=np.nan,
    category=None,
    price=np.nan,
    kind="product",
    order_id=None,
):
    return {
        "customer_id": customer_id,
        "type": type_,
        "value": value,
        "amount": amount,
        "occurred_at": NOW - pd.Timedelta(days=days_ago),
        "category": category,
        "item_price": price,
        "item_kind": kind,
        "order_id": order_id,
    }


def frame(rows):
    df = pd.DataFrame(rows)
    df["occurred_at"] = pd.to_datetime(df["occurred_at"], utc=True)
    return df


# ---------------------------------------------------------------- recency, frequency, monetary
def test_rfm_by_hand_with_same_day_orders_and_a_return():
    # given: two purchases on the same day (one order), one 10 days ago, a return, and a view
    rows = [
        ev(1, "view", 20.5, category="Books", price=10.0),
        ev(1, "purchase", 20.5, value=2, amount=20.0, category="Books", price=10.0),
        ev(1, "purchase", 20.4, value=1, amount=30.0, category="Garden", price=30.0),
        ev(1, "purchase", 10.25, value=1, amount=50.0, category="Garden", price=50.0),
        ev(1, "return", 5.0, value=1, amount=30.0, category="Garden", price=30.0),
    ]
    f = compute_features(frame(rows), now=NOW)
    row = f.loc[1]
    assert row["recency_days"] == pytest.approx(10.25)
    assert row["frequency"] == 2  # same calendar day = one order
    assert row["monetary"] == pytest.approx(20 + 30 + 50 - 30)
    assert row["avg_order_value"] == pytest.approx(70 / 2)
    assert row["orders_total"] == 2
    assert row["lifecycle"] == "active"


def test_order_ids_win_over_calendar_days():
    rows = [
        ev(1, "purchase", 3.1, amount=10.0, order_id="A"),
        ev(1, "purchase", 3.0, amount=10.0, order_id="B"),  # same day, other order
        ev(1, "purchase", 1.0, amount=5.0, order_id="B"),  # a later line of order B
    ]
    f = compute_features(frame(rows), now=NOW)
    assert f.loc[1, "frequency"] == 2


def test_window_limits_frequency_and_money_but_not_recency_or_lifecycle():
    rows = [
        ev(1, "purchase", 400, amount=100.0),
        ev(1, "purchase", 200, amount=40.0),
    ]
    f = compute_features(frame(rows), now=NOW, window_days=365)
    assert f.loc[1, "frequency"] == 1
    assert f.loc[1, "monetary"] == pytest.approx(40.0)
    assert f.loc[1, "orders_total"] == 2
    assert f.loc[1, "recency_days"] == pytest.approx(200)
    assert f.loc[1, "lifecycle"] == "lapsed"


def test_events_after_now_are_ignored():
    rows = [ev(1, "purchase", 2, amount=10.0), ev(1, "purchase", -1, amount=99.0)]
    f = compute_features(frame(rows), now=NOW)
    assert f.loc[1, "monetary"] == pytest.approx(10.0)
    assert f.loc[1, "last_seen"] == NOW - pd.Timedelta(days=2)


def test_amount_missing_falls_back_to_quantity_times_price():
    rows = [ev(1, "purchase", 1, value=3, price=2.5)]
    assert compute_features(frame(rows), now=NOW).loc[1, "monetary"] == pytest.approx(7.5)


def test_never_bought_customer():
    rows = [ev(2, "view", 1, category="Books", price=12.0)]
    row = compute_features(frame(rows), now=NOW).loc[2]
    assert np.isnan(row["recency_days"]) and np.isnan(row["avg_order_value"])
    assert row["frequency"] == 0 and row["monetary"] == 0
    assert row["lifecycle"] == "never-bought"
    assert pd.isna(row["first_purchase_at"])


# ---------------------------------------------------------------- lifecycle
@pytest.mark.parametrize(
    ("purchases_days_ago", "expected"),
    [
        ([10], "new"),  # one order, first purchase within 30 days
        ([40], "active"),  # one order but older than new_days
        ([10, 20], "active"),  # two orders: not new any more
        ([120], "at-risk"),
        ([181], "lapsed"),
        ([], "never-bought"),
    ],
)
def test_lifecycle(purchases_days_ago, expected):
    rows = [ev(1, "view", 300)] + [ev(1, "purchase", d, amount=5.0) for d in purchases_days_ago]
    f = compute_features(frame(rows), now=NOW, new_days=30, active_days=90, at_risk_days=180)
    assert f.loc[1, "lifecycle"] == expected


# ---------------------------------------------------------------- interests and price band
def test_interests_weighted_decayed_and_normalised():
    # view of Books now: 1 x 1; purchase of Garden 60 days ago (one half-life): 5 x 0.5 = 2.5;
    # a search (weight 0) and an uncategorised event do not count; a rating counts its value.
    rows = [
        ev(1, "view", 0, category="Books"),
        ev(1, "purchase", 60, category="Garden", amount=1.0),
        ev(1, "search", 0, category="Toys", kind=None),
        ev(1, "like", 0, category=None, kind="post"),
        ev(1, "rating", 0, value=4.0, category="Fashion"),
    ]
    f = compute_features(frame(rows), now=NOW, half_life_days=60)
    interests = f.loc[1, "interests"]
    total = 1 + 2.5 + 4
    assert interests == pytest.approx({"Books": 1 / total, "Garden": 2.5 / total, "Fashion": 4 / total}, abs=1e-6)
    assert sum(interests.values()) == pytest.approx(1.0, abs=1e-5)
    assert f.loc[1, "top_categories"] == ["Fashion", "Garden", "Books"]


def test_custom_weights_and_tie_break_by_name():
    rows = [ev(1, "view", 0, category=c) for c in ("Zoo", "Apple", "Mango", "Kiwi")]
    f = compute_features(frame(rows), now=NOW, weights={"view": 2.0})
    assert f.loc[1, "top_categories"] == ["Apple", "Kiwi", "Mango"]
    assert f.loc[1, "interests"]["Zoo"] == pytest.approx(0.25)
    f0 = compute_features(frame(rows), now=NOW, weights={"view": 0.0})
    assert f0.loc[1, "interests"] == {} and f0.loc[1, "top_categories"] == []


def test_price_band_from_median_viewed_or_bought_price():
    rows = [
        ev(1, "view", 1, price=5.0),
        ev(1, "purchase", 1, price=7.0, amount=7.0),
        ev(1, "view", 1, price=100.0),
        ev(2, "view", 1, price=50.0),
        ev(3, "click", 1, price=300.0),
        ev(3, "favorite", 1, price=1.0),  # favourites don't count
        ev(4, "search", 1, kind=None),
    ]
    f = compute_features(frame(rows), now=NOW, price_cuts=(10.0, 100.0))
    assert f.loc[1, "median_price"] == pytest.approx(7.0)
    assert list(f["price_band"].iloc[:3]) == ["low", "mid", "high"]
    assert f.loc[4, "price_band"] is None


def test_catalogue_price_cuts_are_terciles():
    low, high = catalogue_price_cuts([1, 2, 3, 4, 5, 6, 7, np.nan])
    assert low == pytest.approx(3.0) and high == pytest.approx(5.0)


# ---------------------------------------------------------------- activity counters
def test_activity_counters():
    rows = [
        ev(1, "view", 0.5),
        ev(1, "view", 0.6),
        ev(1, "post", 2, kind="post"),
        ev(1, "comment", 40, kind="post"),
        ev(1, "like", 39.9, kind="post"),
        ev(1, "like", 400, kind="post"),
    ]
    f = compute_features(frame(rows), now=NOW)
    row = f.loc[1]
    assert row["events_30d"] == 3
    assert row["n_events"] == 5  # the 400-day-old like is outside the window
    assert row["active_days"] == 3  # today, 2 days ago, 40 days ago (two events)
    assert (row["community_posts"], row["community_comments"], row["community_likes"]) == (1, 1, 1)
    assert row["last_seen"] == NOW - pd.Timedelta(days=0.5)
    assert row["first_seen"] == NOW - pd.Timedelta(days=400)


def test_customers_without_events_get_rows():
    f = compute_features(frame([ev(1, "view", 1)]), now=NOW, customer_ids=[1, 5])
    assert list(f.index) == [1, 5]
    assert f.loc[5, "lifecycle"] == "never-bought" and f.loc[5, "n_events"] == 0
    assert pd.isna(f.loc[5, "last_seen"]) and f.loc[5, "interests"] == {}


def test_input_validation():
    with pytest.raises(ValueError, match="item_price"):
        compute_features(frame([ev(1, "view", 1)]).drop(columns="item_price"), now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_features(frame([ev(1, "view", 1)]), now=pd.Timestamp("2025-01-01"))
    naive = frame([ev(1, "view", 1)])
    naive["occurred_at"] = naive["occurred_at"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_features(naive, now=NOW)


# ---------------------------------------------------------------- chunks = whole population
def demo_events(shop):
    """Demo shop events joined to items, with integer customer ids (as the Django service does)."""
    items = shop.items.set_index("external_id")
    cid = pd.Series(np.arange(1, len(shop.customers) + 1), index=shop.customers["external_id"])
    events = shop.events()
    return pd.DataFrame(
        {
            "customer_id": events["customer"].map(cid).to_numpy(),
            "type": events["type"],
            "value": events["value"],
            "amount": events["amount"],
            "occurred_at": events["occurred_at"],
            "category": events["item"].map(items["category"]),
            "item_price": events["item"].map(items["price"]),
            "item_kind": events["item_kind"],
            "order_id": [c.get("order_id") if c else None for c in events["context"]],
        }
    )


def test_chunks_of_customers_give_the_same_features():
    shop = generate_shop(seed=11, n_customers=400, n_events=20_000, now=NOW)
    events = demo_events(shop)
    cuts = catalogue_price_cuts(shop.items["price"])
    whole = compute_features(events, now=NOW, price_cuts=cuts)
    parts = [compute_features(events[events["customer_id"] % 3 == r], now=NOW, price_cuts=cuts) for r in range(3)]
    pd.testing.assert_frame_equal(whole, pd.concat(parts).sort_index())
    assert list(whole.columns) == list(FEATURE_COLUMNS)
    assert len(whole) == 400


# ---------------------------------------------------------------- RFM scores
def test_rfm_quintiles_by_hand():
    f = pd.DataFrame(
        {
            "recency_days": [1.0, 2.0, 3.0, 4.0, 5.0, np.nan],
            "frequency": [5, 4, 3, 2, 1, 0],
            "monetary": [10.0, 50.0, 40.0, 30.0, 20.0, 0.0],
        },
        index=pd.Index([10, 11, 12, 13, 14, 15], name="customer_id"),
    )
    s = score_rfm(f)
    assert list(s["r_score"]) == [5, 4, 3, 2, 1, 0]
    assert list(s["f_score"]) == [5, 4, 3, 2, 1, 0]
    assert list(s["m_score"]) == [1, 5, 4, 3, 2, 0]
    assert list(s["rfm_code"]) == ["551", "445", "334", "223", "112", "000"]


def test_rfm_ties_share_a_score_and_row_order_does_not_matter():
    f = pd.DataFrame(
        {
            "recency_days": [10.0] * 6 + [1.0] * 4,
            "frequency": [1] * 6 + [3, 3, 4, 9],
            "monetary": np.arange(10, dtype=float),
        },
        index=pd.Index(range(10), name="customer_id"),
    )
    s = score_rfm(f)
    assert s["r_score"].iloc[:6].nunique() == 1 and s["r_score"].iloc[6:].nunique() == 1
    assert s["r_score"].iloc[0] == 1 and s["r_score"].iloc[6] == 4
    assert list(s["f_score"]) == [1] * 6 + [4, 4, 5, 5]
    shuffled = score_rfm(f.sample(frac=1, random_state=3)).sort_index()
    pd.testing.assert_frame_equal(s, shuffled)


def test_rfm_on_demo_shop_is_roughly_quintiles():
    shop = generate_shop(seed=2, n_customers=500, n_events=25_000, now=NOW)
    s = score_rfm(compute_features(demo_events(shop), now=NOW))
    bought = s[s["recency_days"].notna()]
    shares = bought["r_score"].value_counts(normalize=True)
    assert set(shares.index) == {1, 2, 3, 4, 5}
    assert shares.between(0.15, 0.25).all()
    assert (s.loc[s["recency_days"].isna(), "rfm_code"] == "000").all()


# ---------------------------------------------------------------- UCI Online Retail
def _retail_path() -> Path:
    base = Path(os.environ.get("DATASETS_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "datasets"))
    return base / "online-retail" / "online_retail.csv.gz"


@pytest.fixture(scope="module")
def retail():
    path = _retail_path()
    if not path.exists():
        if os.environ.get("REQUIRE_DATASETS") == "1":
            pytest.fail(f"REQUIRE_DATASETS=1 but {path} is missing")
        pytest.skip(f"UCI Online Retail not found at {path} (set DATASETS_DIR)")
    df = pd.read_csv(
        path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"}, parse_dates=["InvoiceDate"]
    )
    df = df[df["CustomerID"].notna()].copy()
    # UK local time in the source; both computations below read it as UTC, consistently.
    df["InvoiceDate"] = df["InvoiceDate"].dt.tz_localize("UTC")
    return df


RETAIL_NOW = pd.Timestamp("2011-12-10 00:00", tz="UTC")
RETAIL_CUSTOMERS = [12346, 12347, 12748, 13047, 14911, 15311, 16029, 17850, 18102]


@pytest.mark.datasets
def test_rfm_matches_uci_online_retail_invoices(retail):
    # given: every invoice line as an event (cancellation lines as returns), the invoice as order_id
    lines = retail
    events = pd.DataFrame(
        {
            "customer_id": lines["CustomerID"].astype("int64"),
            "type": np.where(lines["Quantity"] < 0, "return", "purchase"),
            "value": lines["Quantity"].abs().astype(float),
            "amount": (lines["Quantity"].abs() * lines["UnitPrice"]).astype(float),
            "occurred_at": lines["InvoiceDate"],
            "category": None,
            "item_price": lines["UnitPrice"].astype(float),
            "item_kind": "product",
            "order_id": lines["InvoiceNo"],
        }
    )
    f = compute_features(events, now=RETAIL_NOW, window_days=365)

    # then: it agrees with a plain computation from each customer's invoices
    start = RETAIL_NOW - pd.Timedelta(days=365)
    for cust in RETAIL_CUSTOMERS:
        mine = lines[lines["CustomerID"] == cust]
        in_window = mine[mine["InvoiceDate"] > start]
        sales = in_window[~in_window["InvoiceNo"].str.startswith("C")]
        expected_frequency = sales["InvoiceNo"].nunique()
        expected_monetary = (in_window["Quantity"] * in_window["UnitPrice"]).sum()
        last = mine.loc[~mine["InvoiceNo"].str.startswith("C"), "InvoiceDate"].max()
        expected_recency = (RETAIL_NOW - last) / pd.Timedelta(days=1)
        row = f.loc[cust]
        assert row["frequency"] == expected_frequency, cust
        assert row["monetary"] == pytest.approx(expected_monetary, abs=0.01), cust
        assert row["recency_days"] == pytest.approx(expected_recency), cust
        assert row["orders_total"] == mine.loc[~mine["InvoiceNo"].str.startswith("C"), "InvoiceNo"].nunique()
    assert f.loc[12346, "monetary"] == pytest.approx(0.0)  # the 74,215-unit order was cancelled
    assert f.loc[17850, "frequency"] < f.loc[17850, "orders_total"]  # early-December invoices fall outside

    scored = score_rfm(f)
    assert scored.loc[12748, "rfm_code"] == "555"  # the shop's most frequent recent customer
    assert len(f) == lines["CustomerID"].nunique() == 4372
