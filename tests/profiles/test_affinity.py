"""Category affinity (profiles/affinity.py, issue #16): no look into the future, better than the
past-share baseline, calibrated probabilities, filled by the profiles step, sane on degenerate data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from profiles.affinity import (
    AffinityBuilder,
    affinity,
    co_purchases,
    cut_features,
    expected_calibration_error,
    purchase_labels,
    reliability_table,
)

WEIGHTS = {"view": 1.0, "click": 1.5, "add_to_cart": 3.0, "purchase": 5.0, "favorite": 3.0, "rating": "explicit"}
START = pd.Timestamp("2024-01-01", tz="UTC")
CATS = [f"Cat{j:02d}" for j in range(10)]
PLANTED = "Garden"


def simulate(*, n: int = 3000, days: int = 720, planted_share: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A stationary shop: each customer has category tastes (a Dirichlet draw) and a purchase rate;
    purchases arrive uniformly in time, each with three views of the same tastes a few days before.
    A planted group (``planted_share`` of customers) mostly browses ``PLANTED`` and buys it now and
    then, so their interest shows it more than their past purchases do. ``planted(events)`` names them."""
    rng = np.random.default_rng(seed)
    cats = np.array([*CATS, PLANTED])
    m = len(cats)
    taste = rng.dirichlet(np.full(m - 1, 0.3), size=n)
    taste = np.column_stack([taste, np.zeros(n)])
    planted = rng.random(n) < planted_share
    view_taste = taste.copy()
    taste[planted] = 0.5 * taste[planted] + 0.5 * np.eye(m)[m - 1]
    view_taste[planted] = 0.1 * view_taste[planted] + 0.9 * np.eye(m)[m - 1]
    rate = rng.gamma(2.0, 0.01, size=n)

    def draw(tastes: np.ndarray, who: np.ndarray) -> np.ndarray:
        cum = np.cumsum(tastes[who], axis=1)
        return (rng.random(len(who))[:, None] > cum).sum(axis=1).clip(0, m - 1)

    who = np.repeat(np.arange(n), rng.poisson(rate * days))
    t = rng.uniform(0, days, size=len(who))
    bought = pd.DataFrame(
        {
            "customer_id": who + 1,
            "type": "purchase",
            "value": 1.0,
            "amount": 20.0,
            "occurred_at": START + pd.to_timedelta(t, unit="D"),
            "category": cats[draw(taste, who)],
            "order_id": [f"o{i}" for i in range(len(who))],
        }
    )
    vwho = np.repeat(who, 3)
    vt = np.clip(np.repeat(t, 3) - rng.exponential(3.0, size=len(vwho)), 0, None)
    viewed = pd.DataFrame(
        {
            "customer_id": vwho + 1,
            "type": "view",
            "value": np.nan,
            "amount": np.nan,
            "occurred_at": START + pd.to_timedelta(vt, unit="D"),
            "category": cats[draw(view_taste, vwho)],
            "order_id": None,
        }
    )
    events = pd.concat([bought, viewed], ignore_index=True)
    events["item_price"] = 20.0
    events["item_kind"] = "product"
    _PLANTED[id(events)] = np.flatnonzero(planted) + 1
    return events


_PLANTED: dict[int, np.ndarray] = {}


def planted(events: pd.DataFrame) -> np.ndarray:
    return _PLANTED[id(events)]


def _outcome(events: pd.DataFrame, probabilities: pd.Series, now: pd.Timestamp, days: int = 90) -> pd.DataFrame:
    """Each predicted (customer, category) with whether it was bought in (now, now + days]."""
    rows = pd.DataFrame(
        [(c, cat, p) for c, d in probabilities.items() for cat, p in d.items()], columns=["c", "cat", "p"]
    )
    later = events[
        (events["occurred_at"] > now)
        & (events["occurred_at"] <= now + pd.Timedelta(days=days))
        & (events["type"] == "purchase")
    ]
    bought = set(zip(later["customer_id"], later["category"], strict=True))
    rows["bought"] = [(c, cat) in bought for c, cat in zip(rows["c"], rows["cat"], strict=True)]
    return rows


def _past_share(events: pd.DataFrame, rows: pd.DataFrame, now: pd.Timestamp) -> np.ndarray:
    past = events[(events["occurred_at"] <= now) & (events["type"] == "purchase")]
    share = past.groupby(["customer_id", "category"]).size() / past.groupby("customer_id").size()
    return share.reindex(pd.MultiIndex.from_arrays([rows["c"], rows["cat"]])).fillna(0.0).to_numpy()


@pytest.fixture(scope="module")
def shop():
    events = simulate(planted_share=0.15)
    now = START + pd.Timedelta(days=630)  # 90 days of outcomes after it
    probabilities, counts = affinity(events[events["occurred_at"] <= now], now=now, weights=WEIGHTS)
    return events, now, probabilities, counts


# --- no leakage ------------------------------------------------------------------------------------


def test_features_ignore_events_after_the_moment():
    # given: a shop, and the same shop with a burst of later purchases in a new category
    events = simulate(n=300, seed=3)
    at = START + pd.Timedelta(days=400)
    later = events[events["occurred_at"] > at].copy()
    later["category"] = PLANTED
    later["type"] = "purchase"
    more = pd.concat([events, later], ignore_index=True)
    categories = pd.Index(sorted([*CATS, PLANTED]))
    args = {"at": at, "categories": categories, "weights": WEIGHTS, "half_life_days": 60.0}
    # when: the features as of `at` are computed from both
    a, b = cut_features(events, **args), cut_features(more, **args)
    # then: nothing differs, the co-purchase table included
    assert np.array_equal(a.ids, b.ids)
    for name in ("interest", "days", "purchases"):
        assert (getattr(a, name) != getattr(b, name)).nnz == 0, name
    for name in ("orders", "days_since_purchase", "days_since_event"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert (co_purchases(a)[0] != co_purchases(b)[0]).nnz == 0
    assert a.purchases[:, categories.get_loc(PLANTED)].nnz == 0


def test_a_model_fitted_as_of_now_does_not_see_purchases_after_now():
    events = simulate(n=800, seed=4)
    now = START + pd.Timedelta(days=500)
    later = events[events["occurred_at"] > now].copy()
    later["category"] = PLANTED
    first, _ = affinity(events, now=now, weights=WEIGHTS, categories=[*CATS, PLANTED])
    second, _ = affinity(
        pd.concat([events, later], ignore_index=True), now=now, weights=WEIGHTS, categories=[*CATS, PLANTED]
    )
    assert first.equals(second)


def test_labels_are_purchases_in_the_window_only():
    events = simulate(n=200, seed=5)
    start, end = START + pd.Timedelta(days=300), START + pd.Timedelta(days=390)
    categories = pd.Index(sorted([*CATS, PLANTED]))
    ids = np.unique(events["customer_id"])
    labels = purchase_labels(events, start=start, end=end, categories=categories, customer_ids=ids)
    inside = events[(events["occurred_at"] > start) & (events["occurred_at"] <= end) & (events["type"] == "purchase")]
    expected = {(int(c), cat) for c, cat in zip(inside["customer_id"], inside["category"], strict=True)}
    rows, cols = labels.nonzero()
    assert {(int(ids[r]), categories[c]) for r, c in zip(rows, cols, strict=True)} == expected


# --- better than the baseline, calibrated -----------------------------------------------------------


def test_the_planted_group_has_a_higher_affinity_for_their_category(shop):
    events, now, probabilities, counts = shop
    group = set(planted(events).tolist())
    garden = probabilities.map(lambda d: d.get(PLANTED, 0.0))
    in_group = garden[garden.index.isin(group)]
    others = garden[~garden.index.isin(group)]
    assert in_group.mean() > 0.3
    assert in_group.mean() > 5 * others.mean()
    # and they did buy it more afterwards
    outcome = _outcome(events, probabilities, now)
    garden_rows = outcome[outcome["cat"] == PLANTED]
    assert garden_rows.loc[garden_rows["c"].isin(group), "bought"].mean() > 0.3


def test_affinity_ranks_next_purchases_better_than_the_past_share(shop):
    events, now, probabilities, counts = shop
    outcome = _outcome(events, probabilities, now)
    assert len(outcome) > 10_000 and 0.05 < outcome["bought"].mean() < 0.5
    auc = roc_auc_score(outcome["bought"], outcome["p"])
    auc_past = roc_auc_score(outcome["bought"], _past_share(events, outcome, now))
    assert auc > auc_past + 0.03, (auc, auc_past)
    # the step's own held-out figures tell the same story
    held = counts["held_out"]
    assert held["auc"] > held["auc_past_share"]


def test_probabilities_are_calibrated_out_of_time(shop):
    events, now, probabilities, counts = shop
    outcome = _outcome(events, probabilities, now)
    y, p = outcome["bought"].to_numpy(), outcome["p"].to_numpy()
    assert expected_calibration_error(y, p) < 0.03
    for b in reliability_table(y, p, by="decile"):
        assert b["rows"] > 1000
        assert abs(b["predicted"] - b["observed"]) < 0.05, b
    assert abs(p.mean() - y.mean()) < 0.02


def test_each_customer_gets_at_most_ten_candidates_with_probabilities(shop):
    events, now, probabilities, counts = shop
    sizes = probabilities.map(len)
    assert sizes.max() <= counts["candidates_per_customer"] == 10
    assert (sizes > 0).sum() == counts["customers_with_affinity"]
    values = np.array([p for d in probabilities for p in d.values()])
    assert ((values >= 0) & (values <= 1)).all()
    assert np.array_equal(values, np.round(values, 4))
    # most likely first
    assert all(list(d.values()) == sorted(d.values(), reverse=True) for d in probabilities.head(200))


def test_chunks_of_customers_give_the_same_affinity(shop):
    events, now, whole, _ = shop
    past = events[events["occurred_at"] <= now]
    builder = AffinityBuilder(
        categories=[*CATS, PLANTED],
        now=now,
        horizon_days=90,
        weights=WEIGHTS,
        half_life_days=60.0,
        n_customers=past["customer_id"].nunique(),
    )
    for part in range(3):
        builder.add(past[past["customer_id"] % 3 == part])
    parts, _ = builder.finish()
    assert parts.sort_index().equals(whole.sort_index())


# --- degenerate data ---------------------------------------------------------------------------------


def test_no_purchases_in_the_training_window_means_no_model_and_says_why():
    events = simulate(n=500, seed=6)
    now = START + pd.Timedelta(days=500)
    quiet = events[(events["occurred_at"] <= now - pd.Timedelta(days=90)) | (events["type"] != "purchase")]
    quiet = quiet[quiet["occurred_at"] <= now]
    probabilities, counts = affinity(quiet, now=now, weights=WEIGHTS)
    assert counts["model"] == "none"
    assert "too little training data: 0 purchases" in counts["reason"]
    assert probabilities.map(len).sum() == 0
    assert len(probabilities) == quiet["customer_id"].nunique()


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame(
            {
                "customer_id": pd.Series([], dtype="int64"),
                "type": [],
                "value": [],
                "amount": [],
                "occurred_at": pd.Series([], dtype="datetime64[ns, UTC]"),
                "category": [],
                "item_price": [],
                "item_kind": [],
                "order_id": [],
            }
        ),
        simulate(n=50, seed=7).assign(category=None),
        simulate(n=50, seed=8).iloc[:3],
    ],
    ids=["no events", "no categories", "three events"],
)
def test_degenerate_data_gives_empty_dicts(frame):
    probabilities, counts = affinity(frame, now=START + pd.Timedelta(days=720), weights=WEIGHTS)
    assert counts["model"] == "none" and counts["customers_with_affinity"] == 0
    assert probabilities.map(len).sum() == 0


def test_bad_input_is_named():
    events = simulate(n=20, seed=9)
    with pytest.raises(ValueError, match="timezone-aware"):
        affinity(events, now=pd.Timestamp("2025-01-01"), weights=WEIGHTS)
    with pytest.raises(ValueError, match=r"lack column.*category"):
        affinity(events.drop(columns="category"), now=START, weights=WEIGHTS, categories=CATS)
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        affinity(events, now=START, weights=WEIGHTS, horizon_days=0)


# --- the profiles step --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_profiles_step_fills_affinity_for_every_customer_with_candidates(settings):
    from django.utils import timezone

    from pipeline import services as pipeline
    from profiles.models import Profile
    from tests.factories import EventRow, ItemFactory, ingest

    settings.PROFILE_CHUNK_CUSTOMERS = 150  # several chunks, one model
    now = timezone.now()
    events = simulate(n=400, days=540, planted_share=0.2, seed=10)
    group = planted(events)
    events = events.copy()
    events["occurred_at"] = events["occurred_at"] + (now - (START + pd.Timedelta(days=540)))
    events = events[events["occurred_at"] <= now]
    for cat in [*CATS, PLANTED]:
        ItemFactory(external_id=f"{cat}-1", category=cat)
    ingest(
        events=[
            EventRow(
                external_id=f"e{i}",
                customer=f"c{c}",
                item=f"{cat}-1",
                type=t,
                occurred_at=at.floor("us").to_pydatetime(),
                **({"amount": 20.0, "context": {"order_id": o}} if t == "purchase" else {}),
            )
            for i, (c, cat, t, at, o) in enumerate(
                zip(
                    events["customer_id"],
                    events["category"],
                    events["type"],
                    events["occurred_at"],
                    events["order_id"],
                    strict=True,
                )
            )
        ]
    )
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles"]))
    assert run.status == "succeeded", run.error
    figures = run.step_runs.get().counts["affinity"]
    assert figures["model"] == "logistic regression"
    assert figures["held_out"]["auc"] > figures["held_out"]["auc_past_share"]
    assert figures["customers_with_affinity"] == events["customer_id"].nunique()
    profiles = {p.customer.external_id: p.affinity for p in Profile.objects.select_related("customer")}
    assert all(profiles[f"c{c}"] for c in events["customer_id"].unique())
    assert set().union(*profiles.values()) <= {*CATS, PLANTED}
    group = [f"c{c}" for c in group if f"c{c}" in profiles]
    assert np.mean([profiles[c].get(PLANTED, 0.0) for c in group]) > 0.3

    # an incremental run keeps the stored affinity of the customers it recomputes
    # (two customers far apart, so the stored rows read between them hold others too)
    late = [group[0], group[-1]]
    ingest(events=[EventRow(external_id=f"late{c}", customer=c, item="Cat01-1", purchase=True) for c in late])
    run = pipeline.pipeline_execute(
        run=pipeline.pipeline_create(steps=["profiles"]), step_params={"profiles": {"incremental": True}}
    )
    counts = run.step_runs.get().counts
    assert counts["customers"] == 2 and counts["affinity"] == {"model": "kept", "customers_with_affinity": 2}
    for customer in late:
        assert Profile.objects.get(customer__external_id=customer).affinity == profiles[customer]


# --- UCI Online Retail ---------------------------------------------------------------------------------


def _retail_path() -> Path:
    base = Path(os.environ.get("DATASETS_DIR", Path(__file__).resolve().parents[2].parent / "shared" / "datasets"))
    return base / "online-retail" / "online_retail.csv.gz"


@pytest.mark.datasets
def test_on_online_retail_affinity_beats_the_past_share():
    path = _retail_path()
    if not path.exists():
        if os.environ.get("REQUIRE_DATASETS") == "1":
            pytest.fail(f"REQUIRE_DATASETS=1 but {path} is missing")
        pytest.skip(f"UCI Online Retail not found at {path} (set DATASETS_DIR)")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "eval_affinity", Path(__file__).resolve().parents[2] / "bench" / "eval_affinity.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.evaluate(bench.retail_events(path), cut=bench.RETAIL_CUT)
    assert figures["customers_with_affinity"] > 3000
    assert figures["auc"] > figures["auc_past_share"] + 0.1
    assert figures["auc"] > figures["auc_interest"]
    assert figures["ece"] < 0.05


# --- the run page ---------------------------------------------------------------------------------------


def test_the_run_page_tells_the_affinity_figures_in_one_sentence(shop):
    from pipeline.figures import rows

    _, _, _, counts = shop
    (row,) = rows({"affinity": counts})
    held = counts["held_out"]
    assert row.label == "Category affinity"
    assert f"{counts['customers_with_affinity']:,} customers, up to 10 categories each" in row.value
    assert f"AUC of {held['auc']:.3f} (the share of past purchases: {held['auc_past_share']:.3f})" in row.value
    assert "within 90 days" in row.value and "{" not in row.value

    events = simulate(n=30, seed=11)
    _, none = affinity(events, now=START + pd.Timedelta(days=720), weights=WEIGHTS)
    (row,) = rows({"affinity": none})
    assert row.value.startswith("Not computed: too little training data")
    (row,) = rows({"affinity": {"model": "kept", "customers_with_affinity": 1}})
    assert row.value.startswith("Kept as the last full run computed it for 1 of these customers")
