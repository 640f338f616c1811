"""
Computing customers' profiles on Apache Spark (the `profiles` step when PIPELINE_BACKEND = "spark";
docs/spark.md, "Profiles on Spark").

Data in: the events, items and customers are read over JDBC (`common.spark.jdbc_read`), the events
in parallel partitions by customer id range, up to the newest event id seen at the start (so the
partitions, each its own connection, agree on what they read). Compute: `profiles.spark_features`
(the local definitions as DataFrame expressions). Data out: Spark writes the rows over JDBC into an
unlogged staging table created for this run; the app then switches them into the profiles table in
ONE transaction (the local writer's delete and insert), so readers see the previous profiles or the
new ones, never half; a failed or killed Spark job leaves the previous profiles in service. The
staging table is dropped whatever happens.

A full run only: an incremental run asked of the Spark backend computes everyone (its counts say so).
The category affinity (profiles/affinity.py) is not fitted on Spark: each customer keeps the
affinity the profiles table holds (what a local full run last fitted).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.spark import jdbc_read, jdbc_url, jdbc_write, spark_jobs_tagged, spark_session
from pipeline.models import PipelineStep, RunStatus

from .. import spark_features
from ..features import catalogue_price_cuts
from ..models import Customer, Event, Item, Profile
from .compute import _fit_text, _profile_params

#: The staging table's columns and types (spark_features.OUTPUT_COLUMNS), and what the profiles
#: table's column is made of (SQL over the staging row `s`).
_STAGE_TYPES = {
    "customer_id": "bigint",
    "recency_days": "double precision",
    "frequency": "bigint",
    "monetary": "double precision",
    "avg_order_value": "double precision",
    "r_score": "integer",
    "f_score": "integer",
    "m_score": "integer",
    "rfm_code": "text",
    "interests": "text",
    "top_categories": "text",
    "top_category": "text",
    "median_price": "double precision",
    "price_band": "text",
    "active_days": "bigint",
    "first_seen_us": "bigint",
    "last_seen_us": "bigint",
    "events_30d": "bigint",
    "n_events": "bigint",
    "community_posts": "bigint",
    "community_comments": "bigint",
    "community_likes": "bigint",
    "orders_total": "bigint",
    "first_purchase_us": "bigint",
    "last_purchase_us": "bigint",
    "lifecycle": "text",
    "p_alive": "double precision",
    "predicted_orders": "double precision",
    "predicted_value": "double precision",
    "churn_risk": "double precision",
    "next_order_us": "double precision",
    "prediction_basis": "text",
    "prediction_horizon_days": "integer",
}


def _moment(column: str) -> str:
    """A staging column of epoch microseconds as a timestamptz (exact), NULL when missing."""
    value = f"NULLIF(s.{column}::double precision, 'NaN')"
    return (
        f"CASE WHEN {value} IS NULL OR abs({value}) > 1e16 THEN NULL"
        f" ELSE timestamptz 'epoch' + round({value})::bigint * interval '1 microsecond' END"
    )


def _number(column: str) -> str:
    return f"NULLIF(s.{column}, 'NaN')"


_PROFILE_SQL = {
    "customer_id": "s.customer_id",
    "recency_days": _number("recency_days"),
    "frequency": "s.frequency",
    "monetary": "s.monetary",
    "avg_order_value": _number("avg_order_value"),
    "r_score": "s.r_score",
    "f_score": "s.f_score",
    "m_score": "s.m_score",
    "rfm_code": "s.rfm_code",
    "interests": "s.interests::jsonb",
    "top_categories": "s.top_categories::jsonb",
    "top_category": "s.top_category",
    "median_price": _number("median_price"),
    "price_band": "COALESCE(s.price_band, '')",
    "active_days": "s.active_days",
    "first_seen": _moment("first_seen_us"),
    "last_seen": _moment("last_seen_us"),
    "events_30d": "s.events_30d",
    "n_events": "s.n_events",
    "community_posts": "s.community_posts",
    "community_comments": "s.community_comments",
    "community_likes": "s.community_likes",
    "orders_total": "s.orders_total",
    "first_purchase_at": _moment("first_purchase_us"),
    "last_purchase_at": _moment("last_purchase_us"),
    "lifecycle": "s.lifecycle",
    "p_alive": _number("p_alive"),
    "predicted_orders": _number("predicted_orders"),
    "predicted_value": _number("predicted_value"),
    "churn_risk": _number("churn_risk"),
    "next_order_at": _moment("next_order_us"),
    "prediction_basis": "COALESCE(s.prediction_basis, '')",
    "prediction_horizon_days": "s.prediction_horizon_days",
    "affinity": "s.affinity",
}


def spark_job_tag(step) -> str:
    """The tag of a step's Spark jobs: `common.spark.spark_jobs_cancel(spark, tag)` kills them (the run
    then fails and the previous profiles stay in service)."""
    return f"profiles-step-{step.pk}" if step is not None else "profiles-step"


def profiles_compute_spark(*, step=None, incremental: bool = False, now: datetime | None = None, progress=None) -> dict:
    """Compute every customer's profile on Spark and switch them in (module docstring). Returns the
    counts the local step records, with `"backend": "spark"`."""
    started = time.monotonic()
    jdbc_url()  # SparkUnavailable on SQLite, before a JVM is started
    now = now or timezone.now()
    progress = progress or (lambda fraction, message="": None)
    progress(0.0, "starting Spark")
    spark = spark_session()  # the process keeps it: only a worker's first run starts a JVM
    start_s = time.monotonic() - started
    stage = f"profiles_stage_{step.pk if step is not None else 'x'}_{uuid.uuid4().hex[:8]}"
    try:
        with spark_jobs_tagged(spark, spark_job_tag(step)):
            return _compute(
                spark,
                stage=stage,
                step=step,
                incremental=incremental,
                now=now,
                progress=progress,
                t0=started,
                start_s=start_s,
            )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {stage}")


def _compute(spark, *, stage: str, step, incremental: bool, now: datetime, progress, t0: float, start_s: float) -> dict:
    from pyspark.sql import functions as F

    max_event_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    first = Customer.objects.order_by("id").values_list("id", flat=True).first() or 0
    last = Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0
    partitions = settings.SPARK_JDBC_PARTITIONS
    progress(0.05, f"reading events over JDBC in {partitions} partitions by customer id")
    t_read = time.monotonic()
    events = jdbc_read(
        spark,
        f"(SELECT e.customer_id, e.type, e.value, e.amount::double precision AS amount,"
        f" (extract(epoch FROM e.occurred_at) * 1000000)::bigint AS t_us,"
        f" CASE WHEN e.type = 'purchase' THEN e.context->>'order_id' END AS order_id, e.item_id"
        f" FROM {Event._meta.db_table} e"
        # a delivered message is something the shop did, not the customer: it is no activity
        f" WHERE e.id <= {int(max_event_id)} AND e.type <> 'message_delivered') AS ev",
        partition_column="customer_id",
        lower=first,
        upper=last,
        partitions=partitions,
    ).cache()
    items = jdbc_read(
        spark, f"(SELECT id, category, price::double precision AS price FROM {Item._meta.db_table}) AS it"
    )
    customers = jdbc_read(
        spark,
        f"(SELECT id FROM {Customer._meta.db_table}) AS c",
        partition_column="id",
        lower=first,
        upper=last,
        partitions=partitions,
    )
    n_events = events.count()
    read_s = time.monotonic() - t_read
    progress(0.3, f"{n_events:,} events read; computing features")

    t1 = time.monotonic()
    prices = Item.objects.filter(kind="product", price__isnull=False).values_list("price", flat=True)
    cuts = catalogue_price_cuts(np.array([float(p) for p in prices], dtype=float)) if prices.exists() else None
    local = _profile_params()
    params = spark_features.ProfileParams(
        now_us=_epoch_us(now),
        window_days=local["window_days"],
        weights=local["weights"],
        half_life_days=local["half_life_days"],
        new_days=local["new_days"],
        active_days=local["active_days"],
        at_risk_days=local["at_risk_days"],
        recent_days=local["recent_days"],
        price_cuts=cuts,
    )
    horizon = int(settings.PREDICTION_HORIZON_DAYS)
    out, prepared, info = spark_features.profile_frame(events, items, customers, params, horizon_days=horizon)
    out = out.cache()
    # one pass for the figures: customers by lifecycle and prediction basis
    groups = (
        out.groupBy("lifecycle", "prediction_basis")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum("events_30d").alias("events_30d"),
            F.count(F.when(F.col("events_30d") > 0, 1)).alias("active_30d"),
        )
        .toPandas()
    )
    n_customers = int(groups["customers"].sum())
    lifecycle = {str(k): int(v) for k, v in groups.groupby("lifecycle")["customers"].sum().items()}
    by_basis = groups.assign(basis=groups["prediction_basis"].replace("", "none")).groupby("basis")["customers"].sum()
    basis = {str(k): int(v) for k, v in by_basis.items()}
    compute_s = time.monotonic() - t1
    progress(0.7, f"{n_customers:,} profiles computed; writing them to a staging table")

    t2 = time.monotonic()
    _stage_create(stage)
    jdbc_write(out, stage)
    progress(0.9, "switching the new profiles in")
    written = _switch(stage, step=step, now=now)
    write_s = time.monotonic() - t2
    for frame in (out, prepared, events):
        frame.unpersist()
    progress(1.0, f"{written:,} profiles written")

    predicted = {"fit": _fit_text(info), **info, "basis": basis, "horizon_days": horizon}
    counts = {
        "events_30d": int(groups["events_30d"].fillna(0).sum()),
        "customers_active_30d": int(groups["active_30d"].sum()),
        "customers": int(n_customers),
        "profiles_written": int(written),
        "events_read": int(n_events),
        "incremental": False,
        "watermark": None,
        "max_event_id": int(max_event_id),
        "lifecycle": lifecycle,
        "predictions": predicted,
        "affinity": {
            "model": "kept",
            "reason": "the Spark backend does not fit the category affinity; each customer keeps the stored one",
            "customers_with_affinity": _with_affinity(),
        },
        "backend": "spark",
        "seconds": {
            "start": round(start_s, 2),
            "read": round(read_s, 2),
            "compute": round(compute_s, 2),
            "write": round(write_s, 2),
            "total": round(time.monotonic() - t0, 2),
        },
    }
    if incremental:
        counts["incremental_requested"] = True
        counts["note"] = "the Spark backend computes every customer: the incremental run ran as a full run"
    return counts


def _epoch_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds


def _with_affinity() -> int:
    return Profile.objects.exclude(affinity={}).count()


# --- writing: the staging table and the switch ---------------------------------------------------


def _stage_create(stage: str) -> None:
    """An unlogged table for this run's rows (no WAL: it is thrown away after the switch)."""
    columns = ", ".join(f"{name} {kind}" for name, kind in _STAGE_TYPES.items())
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE UNLOGGED TABLE {stage} ({columns}, affinity jsonb NOT NULL DEFAULT '{{}}'::jsonb)")


def _switch(stage: str, *, step, now: datetime) -> int:
    """Replace every profile with the staging table's rows in one transaction (readers see the old
    rows until the commit); each customer keeps their stored affinity. 0 when a later run already
    wrote fresher profiles."""
    table = Profile._meta.db_table
    customers = Customer._meta.db_table
    columns = ["run_id", "computed_at", *_PROFILE_SQL]
    select = ", ".join(["%s", "%s", *_PROFILE_SQL.values()])
    with transaction.atomic(), connection.cursor() as cursor:
        if step is not None:
            newer = PipelineStep.objects.filter(
                name="profiles", status=RunStatus.SUCCEEDED, started_at__gt=step.started_at
            ).exists()
            if newer:
                return 0
        cursor.execute(f"UPDATE {stage} s SET affinity = p.affinity FROM {table} p WHERE p.customer_id = s.customer_id")
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM {stage} s"
            # a customer erased while Spark ran has no row to come back to
            f" WHERE EXISTS (SELECT 1 FROM {customers} c WHERE c.id = s.customer_id)",
            [step.pk if step is not None else None, now],
        )
        return cursor.rowcount
