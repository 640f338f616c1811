"""Reads of the active run's suggestions, shared by the API, the admin and campaigns."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable

import pandas as pd
from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string

from common.bulk import read_frame
from profiles.models import Customer, Item
from segments.models import Membership, SegmentKind

from .models import PopularItem, Reason, Recommendation, RecommenderConfig, RecommenderRun, SimilarItem

log = logging.getLogger(__name__)

TOP_ITEMS_COLUMNS = ["customer_id", "item_id", "rank", "score", "reason", "reason_text"]


def active_run(channel: str = "") -> RecommenderRun | None:
    """The run in service on `channel` (the shop's own suggestions when empty)."""
    return RecommenderRun.objects.filter(is_active=True, channel=channel).first()


def channel_for(external_id: str) -> str:
    """The suggestions' channel a customer is routed to: `settings.RECOMMENDATIONS_ROUTER` (a dotted
    path to a function of the customer's external id, set by an upper app such as experiments) or the
    shop's own channel, "". A router that fails serves the shop's own suggestions (logged)."""
    router = _router()
    if router is None:
        return ""
    try:
        return router(external_id) or ""
    except Exception:
        log.exception("the recommendations router failed; serving the shop's own suggestions")
        return ""


_routers: dict[str, object] = {}


def _router():
    path = settings.RECOMMENDATIONS_ROUTER
    if not path:
        return None
    if path not in _routers:
        _routers[path] = import_string(path)
    return _routers[path]


def recommendations_for(customer: Customer, *, kind: str = "product", limit: int = 10) -> list[Recommendation]:
    """The customer's suggestions of `kind` in the active run, best first (item and reason item loaded)."""
    return list(
        Recommendation.objects.filter(run__is_active=True, run__channel="", customer=customer, kind=kind)
        .select_related("item", "reason_item")
        .order_by("rank")[:limit]
    )


# The API's hot path as one statement. Written out rather than built by the ORM: compiling the
# ORM query and building thirty model instances cost several times more CPU than the indexed
# lookup itself, at hundreds of requests a second (docs/benchmarks.md, "Load").
_ROWS_SQL = f"""
SELECT r.run_id, r.rank, r.score, r.reason, r.reason_text,
       i.external_id, i.kind, i.title, i.category, i.price, ri.external_id
FROM {Recommendation._meta.db_table} r
JOIN {RecommenderRun._meta.db_table} run ON run.id = r.run_id
JOIN {Customer._meta.db_table} c ON c.id = r.customer_id
JOIN {Item._meta.db_table} i ON i.id = r.item_id
LEFT JOIN {Item._meta.db_table} ri ON ri.id = r.reason_item_id
WHERE run.is_active AND c.external_id = {{0}} AND r.kind = {{1}} AND run.channel = {{3}}
ORDER BY r.rank
LIMIT {{2}}
"""
ROW_FIELDS = (
    "run",
    "rank",
    "score",
    "reason",
    "reason_text",
    "item_external_id",
    "item_kind",
    "item_title",
    "item_category",
    "item_price",
    "reason_item",
)
# On PostgreSQL, planning this five-table join costs several times its execution (~0.8 vs
# ~0.2 ms), so each connection prepares it once (a session-level prepared statement, which
# survives rollbacks) and then only executes it. Connections that have it, by their driver object.
_PREPARED_NAME = "reco_rows_by_customer_v2"
_prepared_on: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def recommendation_rows_for_external_id(
    external_id: str, *, kind: str = "product", limit: int = 10, channel: str = ""
) -> list[tuple]:
    """The customer's suggestions of `kind` in the active run of `channel`, best first, as tuples in the
    order of ROW_FIELDS (item_price as the database gives it); one statement, no model instances."""
    params = [external_id, kind, int(limit), channel]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and settings.RECOMMENDATIONS_PREPARED_STATEMENTS:
            raw = connection.connection
            if raw not in _prepared_on:
                cursor.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", [_PREPARED_NAME])
                if cursor.fetchone() is None:
                    cursor.execute(
                        f"PREPARE {_PREPARED_NAME} (text, text, integer, text) AS "
                        + _ROWS_SQL.format("$1", "$2", "$3", "$4")
                    )
                _prepared_on[raw] = True
            cursor.execute(f"EXECUTE {_PREPARED_NAME} (%s, %s, %s, %s)", params)
        else:
            # "%s" placeholders take the parameters in the text's order: external id, kind, channel, limit
            cursor.execute(_ROWS_SQL.format("%s", "%s", "%s", "%s"), [external_id, kind, channel, int(limit)])
        return cursor.fetchall()


def fallback_for(
    customer: Customer, *, kind: str = "product", limit: int = 10, channel: str = ""
) -> list[Recommendation]:
    """For a customer the active run (of `channel`) did not know (created since): the popular list of
    their clustering segment, else the overall one, as unsaved Recommendation objects."""
    run = active_run(channel)
    if run is None:
        return []
    segment_ids = list(
        Membership.objects.filter(
            customer=customer, segment__kind=SegmentKind.CLUSTER, segment__active=True
        ).values_list("segment_id", flat=True)[:1]
    )
    rows = []
    if segment_ids:
        rows = list(
            PopularItem.objects.filter(run=run, kind=kind, segment_id=segment_ids[0])
            .select_related("item")
            .order_by("rank")[:limit]
        )
    if not rows:
        rows = list(
            PopularItem.objects.filter(run=run, kind=kind, segment__isnull=True)
            .select_related("item")
            .order_by("rank")[:limit]
        )
    out = []
    for row in rows:
        reason = Reason.SEGMENT_POPULAR if row.segment_id and row.score > 0 else Reason.POPULAR
        text = "popular in your segment" if reason == Reason.SEGMENT_POPULAR else "popular right now"
        out.append(
            Recommendation(
                run=run,
                customer=customer,
                item=row.item,
                kind=kind,
                rank=row.rank,
                score=row.score,
                reason=reason,
                reason_text=text,
            )
        )
    return out


def top_items_for(customer_ids: Iterable[int], *, kind: str, limit: int, channel: str = "") -> pd.DataFrame:
    """Suggestions of many customers at once (for campaigns personalising messages in bulk).

    Returns a DataFrame with columns customer_id, item_id, rank, score, reason, reason_text,
    ordered by customer then rank, at most `limit` rows per customer; empty without an active run.
    `channel`: a side channel's suggestions (an experiment variant's) instead of the shop's own.
    """
    ids = list(customer_ids)
    if not ids:
        return pd.DataFrame(columns=TOP_ITEMS_COLUMNS)
    frames = []
    for start in range(0, len(ids), 20_000):  # keeps the IN list within the databases' limits
        qs = Recommendation.objects.filter(
            run__is_active=True,
            run__channel=channel,
            kind=kind,
            rank__lte=limit,
            customer_id__in=ids[start : start + 20_000],
        ).order_by("customer_id", "rank")
        frames.append(read_frame(qs, TOP_ITEMS_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def similar_items_for_external_id(external_id: str, *, kind: str = "product", limit: int = 10) -> list[SimilarItem]:
    """An item's neighbours within its kind in the active run, best first, in one query."""
    return list(
        SimilarItem.objects.filter(run__is_active=True, run__channel="", item__external_id=external_id, item__kind=kind)
        .select_related("similar")
        .order_by("rank")[:limit]
    )


def item_ids_by_external_id(external_ids: list[str], *, kind: str) -> dict[str, int]:
    """Row ids of the items of `kind` among `external_ids` (unknown ones are absent)."""
    return dict(Item.objects.filter(kind=kind, external_id__in=external_ids).values_list("external_id", "pk"))


def item_by_external_id(external_id: str, *, kind: str) -> Item | None:
    return Item.objects.filter(kind=kind, external_id=external_id).first()


def config_choices() -> list[tuple[str, str]]:
    """The recommender configurations a run may name: (name, label), the default first."""
    return [
        (name, f"{name} (default)" if is_default else name)
        for name, is_default in RecommenderConfig.objects.values_list("name", "is_default")
    ]
