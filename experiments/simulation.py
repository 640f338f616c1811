"""The demo shop's customers answering what they are shown, so an experiment in the demo can find the
better recommender (docs/experiments.md, "The demo").

Each simulated day some customers visit: each is served the list the API would serve them (their
experiment variant's, or the shop's own), the shop reports the impressions (with the variant's channel,
as the impressions endpoint records them), and the customer clicks and buys with the probabilities of
their planted persona (`profiles.demo.response_probabilities`: categories and price taste, never any
model's scores). Clicks and purchases become events through `events_ingest`, as a shop's would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.db import transaction

from common.bulk import read_frame
from profiles.demo import response_probabilities
from profiles.models import Customer, Item
from profiles.services import events_ingest
from recommendations.selectors import top_items_for
from recommendations.services import impressions_record

from .models import Assignment, Experiment, ExperimentStatus


def _channels(customer_ids: np.ndarray) -> np.ndarray:
    """Each customer's suggestions channel: their variant's in the running experiment, else ""."""
    channels = np.full(len(customer_ids), "", dtype=object)
    experiment = Experiment.objects.filter(status=ExperimentStatus.RUNNING).first()
    if experiment is None:
        return channels
    rows = read_frame(
        Assignment.objects.filter(experiment=experiment, customer_id__in=customer_ids.tolist()),
        ["customer_id", "variant_id"],
    )
    variant = pd.Series(customer_ids).map(pd.Series(rows["variant_id"].to_numpy(), index=rows["customer_id"]))
    routed = variant.notna().to_numpy()
    channels[routed] = (f"experiment-{experiment.pk}-" + variant[routed].astype(np.int64).astype(str)).to_numpy()
    return channels


def _served(customer_ids: np.ndarray, channels: np.ndarray, *, kind: str, limit: int) -> pd.DataFrame:
    frames = []
    for channel in pd.unique(channels):
        ids = customer_ids[channels == channel]
        top = top_items_for(ids.tolist(), kind=kind, limit=limit, channel=channel)
        frames.append(top.assign(channel=channel))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def simulate_day(
    *,
    day_start: datetime,
    visitors: int,
    rng: np.random.Generator,
    kind: str = "product",
    list_size: int = 10,
    spread_seconds: float = 20 * 3600,
    delays: tuple[timedelta, timedelta] = (timedelta(minutes=2), timedelta(minutes=25)),
) -> dict:
    """One day of visits (spread over `spread_seconds` from `day_start`): impressions recorded, clicks
    and purchases ingested `delays` after the visit (rounded up to the second). Returns the counts."""
    all_ids = np.fromiter(Customer.objects.values_list("pk", flat=True), dtype=np.int64)
    if not len(all_ids):
        return {"visitors": 0, "impressions": 0, "clicks": 0, "purchases": 0}
    ids = np.sort(rng.choice(all_ids, size=min(visitors, len(all_ids)), replace=False))
    channels = _channels(ids)
    served = _served(ids, channels, kind=kind, limit=list_size)
    if served.empty:
        return {"visitors": len(ids), "impressions": 0, "clicks": 0, "purchases": 0}
    # each visitor sees their list at one moment of the day
    visit_at = pd.Series(
        pd.Timestamp(day_start) + pd.to_timedelta(rng.uniform(0, spread_seconds, len(ids)), unit="s"), index=ids
    )
    served["shown_at"] = served["customer_id"].map(visit_at)
    with transaction.atomic():
        impressions_record(
            customer_ids=served["customer_id"].to_numpy(),
            item_ids=served["item_id"].to_numpy(),
            shown_at=pd.to_datetime(served["shown_at"], utc=True).to_numpy(),
            source="demo-simulation",
            channel=served["channel"].to_numpy(dtype=object),
        )
    # the planted truth of each (customer, item) pair shown
    people = pd.DataFrame(
        list(Customer.objects.filter(pk__in=ids.tolist()).values_list("pk", "external_id", "attributes")),
        columns=["customer_id", "customer", "attributes"],
    )
    people["persona"] = [(a or {}).get("persona", "") if isinstance(a, dict) else "" for a in people["attributes"]]
    items = pd.DataFrame(
        list(
            Item.objects.filter(pk__in=served["item_id"].unique().tolist()).values_list(
                "pk", "external_id", "category", "price"
            )
        ),
        columns=["item_id", "item", "category", "price"],
    )
    items["price"] = items["price"].astype(float)
    medians = pd.DataFrame(
        list(Item.objects.filter(kind=kind).values_list("category", "price")), columns=["category", "price"]
    ).astype({"price": float})
    items["price_ratio"] = items["price"] / items["category"].map(medians.groupby("category")["price"].median())
    pairs = served.merge(people[["customer_id", "customer", "persona"]], on="customer_id").merge(items, on="item_id")
    p_click, p_buy = response_probabilities(
        pairs["persona"].to_numpy(), pairs["category"].to_numpy(), pairs["price_ratio"].to_numpy()
    )
    clicked = rng.random(len(pairs)) < p_click
    bought = clicked & (rng.random(len(pairs)) < p_buy)
    stamp = day_start.strftime("%Y%m%d%H%M")
    seed_tag = int(rng.integers(1 << 40))  # a rerun of the same day adds new events, not duplicates
    rows = []
    for label, mask, delay in (("click", clicked, delays[0]), ("purchase", bought, delays[1])):
        sel = pairs[mask]
        if sel.empty:
            continue
        rows.append(
            pd.DataFrame(
                {
                    "external_id": f"sim-{stamp}-{label}-{seed_tag}-"
                    + pd.Series(np.arange(len(sel))).astype(str).to_numpy(),
                    "customer": sel["customer"].to_numpy(),
                    "item_kind": kind,
                    "item": sel["item"].to_numpy(),
                    "type": label,
                    "value": 1.0 if label == "purchase" else np.nan,
                    "amount": sel["price"].to_numpy() if label == "purchase" else np.nan,
                    "occurred_at": (pd.to_datetime(sel["shown_at"], utc=True) + pd.Timedelta(delay))
                    .dt.ceil("s")
                    .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_numpy(),
                    "context": [{"source": "demo-simulation"}] * len(sel),
                }
            )
        )
    if rows:
        events_ingest(rows=pd.concat(rows, ignore_index=True), create_unknown=False, all_or_nothing=False)
    return {
        "visitors": len(ids),
        "impressions": len(served),
        "clicks": int(clicked.sum()),
        "purchases": int(bought.sum()),
    }


def simulate(
    *,
    days: int,
    visitors: int,
    start: datetime,
    seed: int = 7,
    kind: str = "product",
    list_size: int = 10,
    on_day: Callable[[int, datetime, dict], None] | None = None,
) -> dict:
    """`days` days of visits from `start`; `on_day(day, day_start, counts)` after each (a look, progress)."""
    rng = np.random.default_rng(seed)
    totals = {"visitors": 0, "impressions": 0, "clicks": 0, "purchases": 0}
    for day in range(days):
        day_start = start + timedelta(days=day)
        counts = simulate_day(day_start=day_start, visitors=visitors, rng=rng, kind=kind, list_size=list_size)
        for key in totals:
            totals[key] += counts[key]
        if on_day is not None:
            on_day(day, day_start, counts)
    return totals
