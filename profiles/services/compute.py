"""
Computing customers' profiles from their events (the pipeline's `profiles` step).

The numbers are `profiles.features`' (pure pandas/numpy, definitions in its docstring and in
docs/profiles.md); this module reads the events for it, chunk by chunk of customers, and writes
the profiles back in one transaction.
"""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, FloatField, When
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Extract
from django.utils import timezone

from common.bulk import bulk_insert, bulk_upsert, id_subquery, read_frame
from pipeline.models import PipelineStep, RunStatus

from .. import predictions
from ..affinity import AffinityBuilder
from ..features import PROFILE_FIELDS, catalogue_price_cuts, compute_features, score_rfm
from ..models import Customer, Event, Item, Profile

JSON_COLUMNS = ("interests", "top_categories", "affinity")  # written as JSON by the bulk writes


def profiles_compute(*, step=None, incremental: bool = False, now: datetime | None = None, progress=None) -> dict:
    """Compute every customer's profile from events (or, incrementally, those with new events).

    Events are read in chunks of customers (PROFILE_CHUNK_CUSTOMERS) so memory stays bounded; the
    RFM quintiles are then scored over the whole population and all profiles are written in one
    transaction, so readers see either the previous profiles or the new ones. A run whose start is
    older than an already stored newer run's does not overwrite it.
    """
    started = time.monotonic()
    now = now or timezone.now()
    progress = progress or (lambda fraction, message="": None)
    max_event_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    watermark = _watermark() if incremental else None
    incremental = watermark is not None  # without a previous run to build on, everyone is computed
    customer_ids = _customers_with_events_since(watermark, max_event_id) if incremental else _all_customer_ids()

    features, n_events, read_s, compute_s, affinity = _features_by_chunk(
        customer_ids, now=now, incremental=incremental, progress=progress
    )
    features = _score_population(features, incremental=incremental)
    features, predicted = _predict_repeat_buying(features, now=now, incremental=incremental)

    progress(0.85, "writing profiles")
    t2 = time.monotonic()
    written = _profiles_write(features, step=step, now=now, replace_all=not incremental) if len(features) else 0
    write_s = time.monotonic() - t2
    progress(1.0, f"{written:,} profiles written")
    lifecycle = features["lifecycle"].value_counts().to_dict() if len(features) else {}
    recent = {}
    if len(features) and not incremental:
        # Cheap figures for the dashboard, so it never counts the events table on page load.
        recent = {
            "events_30d": int(features["events_30d"].sum()),
            "customers_active_30d": int((features["events_30d"] > 0).sum()),
        }
    return {
        **recent,
        "customers": len(customer_ids),
        "profiles_written": int(written),
        "events_read": int(n_events),
        "incremental": incremental,
        "watermark": watermark,
        "max_event_id": int(max_event_id),
        "lifecycle": {str(k): int(v) for k, v in lifecycle.items()},
        "predictions": predicted,
        "affinity": affinity,
        "seconds": {
            "read": round(read_s, 2),
            "compute": round(compute_s, 2),
            "write": round(write_s, 2),
            "total": round(time.monotonic() - started, 2),
        },
    }


# --- whom to compute -----------------------------------------------------------------------------


def _watermark() -> int | None:
    """The last event id the latest successful profiles step had seen; None if there is none."""
    previous = (
        PipelineStep.objects.filter(name="profiles", status=RunStatus.SUCCEEDED, counts__has_key="max_event_id")
        .order_by("-finished_at")
        .first()
    )
    return None if previous is None else int(previous.counts["max_event_id"])


def _customers_with_events_since(watermark: int, max_event_id: int) -> np.ndarray:
    """The ids of customers with events after the watermark (up to max_event_id), and of those without
    a profile yet, sorted."""
    changed = (
        Event.objects.filter(id__gt=watermark, id__lte=max_event_id)
        .order_by()
        .values_list("customer_id", flat=True)
        .distinct()
    )
    customer_ids = np.unique(np.fromiter(changed.iterator(chunk_size=50_000), dtype=np.int64))
    unprofiled = Customer.objects.filter(profile__isnull=True).values_list("id", flat=True)
    return np.union1d(customer_ids, np.fromiter(unprofiled.iterator(chunk_size=50_000), dtype=np.int64))


def _all_customer_ids() -> np.ndarray:
    ids = Customer.objects.order_by("id").values_list("id", flat=True)
    return np.fromiter(ids.iterator(chunk_size=50_000), dtype=np.int64)


# --- the features --------------------------------------------------------------------------------


def _profile_params() -> dict:
    weights = {**settings.EVENT_WEIGHTS, "rating": "explicit"}
    return {
        "window_days": settings.PROFILE_WINDOW_DAYS,
        "weights": weights,
        "half_life_days": settings.EVENT_DECAY_HALF_LIFE_DAYS,
        "new_days": settings.LIFECYCLE_NEW_DAYS,
        "active_days": settings.LIFECYCLE_ACTIVE_DAYS,
        "at_risk_days": settings.LIFECYCLE_AT_RISK_DAYS,
        "recent_days": settings.PROFILE_RECENT_DAYS,
    }


def _features_by_chunk(
    customer_ids: np.ndarray, *, now: datetime, incremental: bool, progress
) -> tuple[pd.DataFrame, int, float, float, dict]:
    """The features of these customers, computed chunk by chunk of customers (their events read at
    once); also the events read, the seconds spent reading and computing, and the category affinity's
    counts: a full run fits its model once on rows gathered from every chunk (profiles/affinity.py);
    an incremental run keeps each customer's stored affinity, since its few, just-active customers
    are too small and too skewed a sample to learn from and the co-purchase table needs everyone."""
    prices = Item.objects.filter(kind="product", price__isnull=False).values_list("price", flat=True)
    cuts = catalogue_price_cuts(np.array([float(p) for p in prices], dtype=float)) if prices.exists() else None
    params = _profile_params()
    items = _items_frame()
    affinity = (
        None
        if incremental
        else AffinityBuilder(
            categories=items["category"].cat.categories,
            now=now,
            horizon_days=settings.PREDICTION_HORIZON_DAYS,
            weights=params["weights"],
            half_life_days=params["half_life_days"],
            window_days=params["window_days"],
            n_customers=len(customer_ids),
        )
    )
    chunk = settings.PROFILE_CHUNK_CUSTOMERS
    parts: list[pd.DataFrame] = []
    kept: list[pd.Series] = []
    n_events = 0
    read_s = compute_s = 0.0
    for start in range(0, len(customer_ids), chunk):
        ids = customer_ids[start : start + chunk]
        t0 = time.monotonic()
        # A range keeps the query small and uses the (customer, time) index; the ids in the range
        # that are not asked for (incremental runs) are dropped after reading. Ids spread thinly over
        # their range (an incremental run's few changed customers among a million) are read by id
        # instead, so the run reads their events and not the whole range's (PostgreSQL: SQLite caps a
        # statement's parameters, and its shops are small).
        sparse = connection.vendor == "postgresql" and len(ids) * 2 < int(ids[-1]) - int(ids[0]) + 1
        frame = _events_frame_range(int(ids[0]), int(ids[-1]), items=items, only=ids if sparse else None)
        if incremental:
            frame = frame[frame["customer_id"].isin(ids)]
        t1 = time.monotonic()
        feats = compute_features(frame, now=now, price_cuts=cuts, customer_ids=ids, **params)
        if affinity is not None:
            affinity.add(frame, customer_ids=ids)
        else:
            kept.append(_stored_affinity(int(ids[0]), int(ids[-1]), only=ids if sparse else None))
        compute_s += time.monotonic() - t1
        read_s += t1 - t0
        n_events += len(frame)
        parts.append(feats)
        progress(
            (start + len(ids)) / max(len(customer_ids), 1) * 0.8,
            f"{start + len(ids):,} of {len(customer_ids):,} customers",
        )
    features = pd.concat(parts) if parts else pd.DataFrame(columns=PROFILE_FIELDS)
    if affinity is not None:
        probabilities, affinity_counts = affinity.finish()
    else:
        probabilities = pd.concat(kept) if kept else pd.Series(dtype=object)
    features["affinity"] = probabilities.reindex(features.index).map(lambda d: d if isinstance(d, dict) else {})
    if affinity is None:
        affinity_counts = {"model": "kept", "customers_with_affinity": int((features["affinity"].map(len) > 0).sum())}
    return features, n_events, read_s, compute_s, affinity_counts


def _stored_affinity(lo: int, hi: int, *, only: np.ndarray | None = None) -> pd.Series:
    """The stored affinity of customers lo..hi (or of the customers `only`, spread thinly over that
    range: an incremental run's), by customer id."""
    rows = Profile.objects.filter(customer_id__gte=lo, customer_id__lte=hi)
    if only is not None:
        rows = rows.filter(customer_id__in=id_subquery(only))
    rows = rows.values_list("customer_id", "affinity")
    stored = dict(rows.iterator(chunk_size=50_000))
    return pd.Series(list(stored.values()), index=list(stored.keys()), dtype=object)


def _score_population(features: pd.DataFrame, *, incremental: bool) -> pd.DataFrame:
    """RFM scores by quintile over the whole population: an incremental run scores its customers
    together with the others' stored figures."""
    if not len(features):
        return features
    if not incremental:
        return score_rfm(features)
    others = read_frame(Profile.objects.order_by(), ["customer_id", "recency_days", "frequency", "monetary"])
    others = others.set_index("customer_id")
    others = others.drop(index=features.index, errors="ignore")
    scored = score_rfm(pd.concat([features[["recency_days", "frequency", "monetary"]], others]))
    for col in ("r_score", "f_score", "m_score", "rfm_code"):
        features[col] = scored.loc[features.index, col]
    return features


def _predict_repeat_buying(features: pd.DataFrame, *, now: datetime, incremental: bool) -> tuple[pd.DataFrame, dict]:
    """Add the prediction columns (docs/profiles.md, "Predictions") over PREDICTION_HORIZON_DAYS after
    ``now``: a full run fits BG/NBD and Gamma-Gamma over the whole population; an incremental run
    predicts for its customers with the parameters the last full run recorded. Also what the run's
    counts record: the parameters, customers by basis, seconds, or why there is no model."""
    horizon = int(settings.PREDICTION_HORIZON_DAYS)
    for col in ("p_alive", "predicted_orders", "predicted_value", "churn_risk"):
        features[col] = np.nan
    features["next_order_at"] = pd.NaT
    features["prediction_basis"] = ""
    features["prediction_horizon_days"] = pd.array([None] * len(features), dtype="Int64")
    if not len(features):
        return features, {"horizon_days": horizon, "basis": {}, "reason": "no customers"}
    x, t_x, T = predictions.summarise(
        features["orders_total"].fillna(0), features["first_purchase_at"], features["last_purchase_at"], now=now
    )
    n, m = features["frequency"].fillna(0).to_numpy(), features["avg_order_value"].to_numpy(dtype=float)
    model = spend = prior = None
    if incremental:
        model, spend, prior, reason = _last_full_run_parameters()
        if model is None:
            return features, {
                "horizon_days": horizon,
                "fitted": False,
                "basis": {"none": len(features)},
                "reason": reason,
            }
    result = predictions.predict(x, t_x, T, n, m, horizon_days=horizon, model=model, spend=spend, prior=prior)
    out = result.frame
    for col in ("p_alive", "predicted_orders", "predicted_value", "churn_risk", "prediction_basis"):
        features[col] = out[col].to_numpy()
    at = pd.Timestamp(now).tz_convert("UTC")
    features["next_order_at"] = at + pd.to_timedelta(out["next_order_days"].to_numpy(), unit="D")
    has = out["prediction_basis"].to_numpy() != ""
    features["prediction_horizon_days"] = pd.array(np.where(has, horizon, None), dtype="Int64")
    return features, {"fit": _fit_text(result.info), **result.info, "horizon_days": horizon}


def _fit_text(info: dict) -> str:
    """The fit in words for the run page: "BG/NBD on 3,370 buyers and Gamma-Gamma on 2,006 repeat buyers"."""
    if "bgnbd" not in info:
        return "no model"
    text = f"BG/NBD on {info['bgnbd']['buyers']:,} buyers"
    spend = info.get("gamma_gamma")
    text += f" and Gamma-Gamma on {spend['buyers']:,} repeat buyers" if spend else " (no spend model)"
    return text if info.get("fitted") else f"the last full run's parameters ({text})"


def _last_full_run_parameters() -> tuple[predictions.BGNBD | None, predictions.GammaGamma | None, dict | None, str]:
    """What the latest successful full profiles run recorded for an incremental run to reuse: its BG/NBD
    and Gamma-Gamma parameters, its not-yet-buyers' prior (an incremental run's few customers are no
    sample of the population; None: computed from this run's customers), and why there is no model."""
    full = (
        PipelineStep.objects.filter(name="profiles", status=RunStatus.SUCCEEDED, counts__incremental=False)
        .order_by("-finished_at")
        .first()
    )
    recorded = ((full.counts or {}).get("predictions") or {}) if full is not None else {}
    prior = recorded.get("prior") or None
    if not recorded.get("bgnbd"):
        why = recorded.get("reason") or "it recorded no parameters"
        return (
            None,
            None,
            prior,
            f"the last full run fitted no model ({why})" if full else "no full run to take parameters from",
        )
    spend = recorded.get("gamma_gamma")
    return (
        predictions.BGNBD.from_dict(recorded["bgnbd"]),
        predictions.GammaGamma.from_dict(spend) if spend else None,
        prior,
        "",
    )


# --- reading events ------------------------------------------------------------------------------


def _items_frame() -> pd.DataFrame:
    """Category, price and kind of every item, indexed by id (the catalogue is small next to events)."""
    items = read_frame(
        Item.objects.order_by().annotate(price_f=Cast("price", FloatField())), ["id", "category", "price_f", "kind"]
    )
    items = items.set_index("id").rename(columns={"price_f": "item_price", "kind": "item_kind"})
    items["category"] = items["category"].astype("string").replace("", pd.NA).astype("category")
    items["item_kind"] = items["item_kind"].astype("category")
    return items


def events_query(lo: int, hi: int, only: np.ndarray | None = None) -> tuple:
    """The profiles step's read of the events of customers lo..hi (of those among ``only``): the
    queryset and its columns (also the floor that `make bench` reads the events with)."""
    epoch = connection.vendor == "postgresql"
    events = Event.objects.filter(customer_id__gte=lo, customer_id__lte=hi)
    if only is not None:
        events = events.filter(customer_id__in=[int(i) for i in only])
    qs = (
        # a delivered message is something the shop did, not the customer: it is no activity
        events.exclude(type="message_delivered")
        .order_by()
        .annotate(
            amount_f=Cast("amount", FloatField()),
            order_id=Case(When(type="purchase", then=KT("context__order_id")), default=None),
            **({"t": Extract("occurred_at", "epoch")} if epoch else {}),
        )
    )
    cols = ["customer_id", "type", "value", "amount_f", "t" if epoch else "occurred_at", "item_id", "order_id"]
    return qs, cols


def _events_frame_range(
    lo: int, hi: int, items: pd.DataFrame | None = None, only: np.ndarray | None = None
) -> pd.DataFrame:
    """The events of customers lo..hi (of those among ``only`` when given), with their item's
    category, price and kind.

    The read is kept lean because it is the largest part of the profiles step: item fields are
    joined in pandas from the small catalogue frame, the order id is extracted from the JSON
    context only for purchases, and on PostgreSQL the time travels as epoch seconds (a number
    parses far faster than a timestamp text).
    """
    items = _items_frame() if items is None else items
    epoch = connection.vendor == "postgresql"
    qs, cols = events_query(lo, hi, only)
    frame = read_frame(qs, cols, parse_dates=() if epoch else ("occurred_at",)).rename(columns={"amount_f": "amount"})
    if epoch:
        frame["occurred_at"] = pd.to_datetime(frame.pop("t").astype("float64"), unit="s", utc=True)
    frame["type"] = frame["type"].astype("category")
    frame["order_id"] = frame["order_id"].astype("string")
    item_id = frame.pop("item_id")  # float64 with NaN where an event has no item
    joined = items.reindex(item_id.to_numpy())
    frame["category"] = joined["category"].astype("string").to_numpy()
    frame["item_price"] = joined["item_price"].to_numpy()
    frame["item_kind"] = joined["item_kind"].astype("object").to_numpy()
    return frame


# --- writing profiles ----------------------------------------------------------------------------


def _profiles_write(features: pd.DataFrame, *, step, now: datetime, replace_all: bool = False) -> int:
    out = _profile_rows(features, step=step, now=now)
    with transaction.atomic():
        if step is not None:
            newer = PipelineStep.objects.filter(
                name="profiles", status=RunStatus.SUCCEEDED, started_at__gt=step.started_at
            ).exists()
            if newer:
                # A later run already wrote fresher profiles; this one's result is stale.
                return 0
        if not replace_all:
            return bulk_upsert(Profile, out, key=["customer_id"], json_columns=JSON_COLUMNS)
        # A full run rewrites every profile: deleting and inserting is about twice as fast as
        # an upsert, and readers keep seeing the old rows until the commit (MVCC).
        Profile.objects.all().delete()
        written = bulk_insert(Profile, out, json_columns=JSON_COLUMNS)
    if connection.vendor == "postgresql":
        # The next steps (rule segments, clustering) query the profiles at once: with the planner's
        # statistics of the previous (or an empty) table they choose per-customer nested loops
        # (issue #19). Autovacuum would analyse it a minute later; a sample costs well under a second.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(Profile._meta.db_table)}")
    return written


def _profile_rows(features: pd.DataFrame, *, step, now: datetime) -> pd.DataFrame:
    """The features as rows of the profiles table (its column names and types)."""
    frame = features.reset_index().rename(columns={"index": "customer_id"})
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype("int64")})
    out["run_id"] = step.pk if step is not None else None
    at = pd.Timestamp(now)
    out["computed_at"] = at.tz_convert("UTC") if at.tzinfo else pd.Timestamp(now, tz="UTC")
    for col in PROFILE_FIELDS:
        if col == "top_category":
            out[col] = frame["top_categories"].map(lambda cats: cats[0] if isinstance(cats, list) and cats else "")
        elif col in frame.columns:
            values = frame[col]
            # a time zone's times stay one array (to_numpy would box a million Timestamps, seconds each column)
            out[col] = values.array if isinstance(values.dtype, pd.DatetimeTZDtype) else values.to_numpy()
    out["interests"] = out["interests"].map(lambda d: d if isinstance(d, dict) else {})
    out["affinity"] = frame["affinity"].to_numpy() if "affinity" in frame.columns else [{}] * len(out)
    out["top_categories"] = out["top_categories"].map(
        lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else []
    )
    out["price_band"] = out["price_band"].fillna("")
    for col in (
        "frequency",
        "active_days",
        "events_30d",
        "n_events",
        "community_posts",
        "community_comments",
        "community_likes",
        "orders_total",
        "r_score",
        "f_score",
        "m_score",
    ):
        out[col] = out[col].fillna(0).astype("int64")
    out["monetary"] = out["monetary"].fillna(0.0).astype(float)
    out["prediction_basis"] = out["prediction_basis"].fillna("")
    out["prediction_horizon_days"] = out["prediction_horizon_days"].astype("Int64")
    for col in ("first_seen", "last_seen", "first_purchase_at", "last_purchase_at", "next_order_at"):
        out[col] = pd.to_datetime(out[col], utc=True)
    return out
