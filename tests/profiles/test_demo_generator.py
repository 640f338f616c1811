"""The demo shop generator: deterministic, well-formed, and with personas that really differ."""

from __future__ import annotations

import pandas as pd
import pytest

from profiles.demo import EVENT_TYPES, generate_shop

NOW = pd.Timestamp("2025-06-01 12:00", tz="UTC")


@pytest.fixture(scope="module")
def shop():
    return generate_shop(seed=7, n_customers=1000, n_events=60_000, now=NOW, chunk_size=25_000)


@pytest.fixture(scope="module")
def events(shop):
    return shop.events()


@pytest.fixture(scope="module")
def by_persona(shop, events):
    persona = shop.customers.set_index("external_id")["persona"]
    return events.assign(persona=events["customer"].map(persona))


def test_same_seed_gives_identical_frames():
    a = generate_shop(seed=3, n_customers=300, n_events=9_000, now=NOW, chunk_size=4_000)
    b = generate_shop(seed=3, n_customers=300, n_events=9_000, now=NOW, chunk_size=4_000)
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.events(), b.events())


def test_other_seed_gives_other_shop():
    a = generate_shop(seed=3, n_customers=300, n_events=9_000, now=NOW)
    b = generate_shop(seed=4, n_customers=300, n_events=9_000, now=NOW)
    assert not a.customers["persona"].equals(b.customers["persona"])
    assert not a.events()["item"].equals(b.events()["item"])


def test_counts_and_exact_event_total(shop, events):
    assert len(shop.customers) == 1000
    assert (shop.items["kind"] == "product").sum() == 400
    assert (shop.items["kind"] == "activity").sum() == 10
    assert (shop.items["kind"] == "post").sum() == 200
    assert shop.items["category"][shop.items["kind"] == "product"].nunique() == 12
    assert len(events) == 60_000


def test_chunks_are_bounded_and_ids_unique():
    shop = generate_shop(seed=5, n_customers=500, n_events=20_000, now=NOW, chunk_size=3_000)
    sizes = [len(c) for c in shop.iter_events()]
    assert max(sizes) <= 3_000
    assert sum(sizes) == 20_000
    ids = pd.concat(c["external_id"] for c in shop.iter_events())
    assert ids.is_unique


def test_customer_columns(shop):
    c = shop.customers
    assert c["external_id"].is_unique and c["external_id"].str.fullmatch(r"c\d{6}").all()
    assert c["email"].is_unique and c["email"].str.contains("@").all()
    assert str(c["created_at"].dtype) == "datetime64[ns, UTC]"
    for col in ("consent_in_app", "consent_email", "consent_push"):
        assert c[col].dtype == bool
    assert 0.6 < c["consent_email"].mean() < 0.8
    assert 0.3 < c["consent_push"].mean() < 0.55
    assert c["time_zone"].nunique() >= 8
    assert all(a["persona"] == p for a, p in zip(c["attributes"], c["persona"], strict=False))
    assert c["persona"].nunique() == len(shop.personas) == 5


def test_item_columns(shop):
    items = shop.items
    assert items["external_id"].is_unique
    products = items[items["kind"] == "product"]
    assert products["price"].gt(0).all()
    assert items.loc[items["kind"] != "product", "price"].isna().all()
    assert items["category"].notna().all()
    assert 0 < (~products["active"]).sum() < 0.1 * len(products)
    medians = products.groupby("category")["price"].median()
    assert medians["Electronics"] > 4 * medians["Grocery"]
    assert products["title"].str.contains(r"#\d+").all()


def test_event_columns_and_types(shop, events):
    assert list(events.columns) == [
        "external_id",
        "customer",
        "item_kind",
        "item",
        "type",
        "value",
        "amount",
        "occurred_at",
        "context",
    ]
    assert str(events["occurred_at"].dtype) == "datetime64[ns, UTC]"
    assert set(events["type"]) <= set(EVENT_TYPES)
    assert set(events["customer"]) <= set(shop.customers["external_id"])
    search = events["type"] == "search"
    assert events.loc[search, "item"].isna().all()
    assert set(events.loc[~search, "item"]) <= set(shop.items["external_id"])
    money = events["type"].isin(["purchase", "return"])
    assert events.loc[money, "amount"].gt(0).all() and events.loc[~money, "amount"].isna().all()
    ratings = events.loc[events["type"] == "rating", "value"]
    assert ratings.between(1, 5).all()
    qty = events.loc[events["type"].isin(["purchase", "add_to_cart", "return"]), "value"]
    assert qty.ge(1).all()
    purchases = events[events["type"] == "purchase"]
    assert all("order_id" in ctx for ctx in purchases["context"])


def test_no_event_after_now_and_within_months(shop, events):
    assert events["occurred_at"].max() <= NOW
    assert events["occurred_at"].min() >= NOW - pd.DateOffset(months=6)
    created = events["customer"].map(shop.customers.set_index("external_id")["created_at"])
    assert (events["occurred_at"] >= created).all()


def test_purchases_follow_views_and_returns_are_rare(events):
    purchases = events[events["type"] == "purchase"]
    views = events.loc[events["type"] == "view", ["customer", "item", "occurred_at"]]
    seen = purchases.merge(views, on=["customer", "item"], suffixes=("", "_view"))
    preceded = seen[seen["occurred_at_view"] <= seen["occurred_at"]]["external_id"].nunique()
    assert preceded / len(purchases) > 0.95
    returns = (events["type"] == "return").sum()
    assert 0 < returns < 0.1 * len(purchases)


def _orders(by_persona):
    p = by_persona[by_persona["type"] == "purchase"]
    per_customer = p.groupby(["persona", "customer"]).agg(orders=("type", "size"), spend=("amount", "sum"))
    return per_customer.groupby("persona").mean()


def test_personas_differ_in_rhythm_and_spend(shop, by_persona):
    orders = _orders(by_persona)
    n = shop.customers["persona"].value_counts()
    buyers = by_persona[by_persona["type"] == "purchase"].groupby("persona")["customer"].nunique()
    assert orders.loc["loyal_big_spender", "orders"] > 1.5 * orders.loc["bargain_hunter", "orders"]
    assert orders.loc["bargain_hunter", "orders"] > 1.5 * orders.loc["lapsed", "orders"]
    assert orders.loc["loyal_big_spender", "spend"] > 5 * orders.loc["bargain_hunter", "spend"]
    assert buyers.get("new_visitor", 0) < 0.25 * n["new_visitor"]
    assert buyers["lapsed"] == n["lapsed"]
    last_purchase = by_persona[by_persona["type"] == "purchase"].groupby("persona")["occurred_at"].max()
    assert last_purchase["lapsed"] < NOW - pd.Timedelta(days=100)
    assert last_purchase["loyal_big_spender"] > NOW - pd.Timedelta(days=7)


def test_personas_differ_in_price_band_and_taste(shop, by_persona):
    price = shop.items.set_index("external_id")["price"]
    category = shop.items.set_index("external_id")["category"]
    p = by_persona[by_persona["type"] == "purchase"]
    median_price = p["item"].map(price).groupby(p["persona"]).median()
    assert median_price["loyal_big_spender"] > 3 * median_price["bargain_hunter"]
    for persona in shop.personas:
        views = by_persona[(by_persona["persona"] == persona.name) & (by_persona["item_kind"] == "product")]
        share = views["item"].map(category).isin(persona.categories).mean()
        assert share > 0.5, persona.name


def test_personas_differ_in_community_activity_and_signup(shop, by_persona):
    community = by_persona[by_persona["type"].isin(["post", "comment", "like"])]
    per_customer = community.groupby("persona").size() / shop.customers["persona"].value_counts()
    others = per_customer.drop("community_enthusiast")
    assert per_customer["community_enthusiast"] > 10 * others.max()
    joins = by_persona[(by_persona["item_kind"] == "activity") & (by_persona["type"] == "click")]
    assert joins["persona"].value_counts().idxmax() == "community_enthusiast"
    created = shop.customers.groupby("persona")["created_at"].min()
    assert created["new_visitor"] >= NOW - pd.Timedelta(days=31)
    assert shop.customers.groupby("persona")["created_at"].max().drop("new_visitor").max() < NOW - pd.Timedelta(days=90)
    recent = by_persona[by_persona["occurred_at"] > NOW - pd.Timedelta(days=30)]
    assert "lapsed" not in set(recent["persona"])


def test_default_now_is_current_hour():
    shop = generate_shop(n_customers=20, n_events=200)
    now = pd.Timestamp.now(tz="UTC")
    assert shop.now == shop.now.floor("h")
    assert now - pd.Timedelta(hours=1) <= shop.now <= now


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        generate_shop(n_customers=10, n_events=10, now=pd.Timestamp("2025-01-01"))


def test_generator_imports_no_django():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, profiles.demo; assert not any(m.startswith('django') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
