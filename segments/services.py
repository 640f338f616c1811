"""
The verbs that change segments: cluster the profiles into segments, refresh rule segments.

`segments_compute` is the pipeline's "segments" step. It clusters every profile
(segments/clustering.py, pure), matches the new clusters to the previous run's segments by
centroid so a segment keeps its identity, name and campaigns across runs, and swaps all cluster
memberships in one transaction. Then every rule segment is refreshed with one set-based SQL
statement each, referenced segments before the segments that refer to them.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min
from django.utils import timezone

from accounts.audit import audit_record
from common.bulk import bulk_insert, id_subquery, read_frame
from pipeline.models import PipelineStep, RunStatus
from profiles.models import Customer, Profile

from . import clustering
from .models import ClusteringRun, Membership, Segment, SegmentKind, SegmentsAuditAction, SegmentSize
from .predictive import TEMPLATES
from .rules import Changed

PROFILE_COLUMNS = [
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "median_price",
    "events_30d",
    "active_days",
    "n_events",
    "community_posts",
    "community_comments",
    "community_likes",
    "orders_total",
]


def _finite(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _profiles_frame(profiles=None) -> pd.DataFrame:
    profiles = Profile.objects.all() if profiles is None else profiles
    return read_frame(profiles.order_by("customer_id"), PROFILE_COLUMNS).set_index("customer_id")


def _previous_centroids(features: list[str]) -> pd.DataFrame:
    prev = Segment.objects.filter(kind=SegmentKind.CLUSTER, active=True, centroid__isnull=False)
    rows = {s.pk: s.centroid for s in prev if all(f in (s.centroid or {}) for f in features)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=features, dtype=float)


def _swap_cluster_memberships(labels: pd.Series, segment_of_label: dict[int, Segment], now: datetime) -> None:
    """Replace every clustering membership; customers who stay in a segment keep their `since`."""
    cluster_ids = list(Segment.objects.filter(kind=SegmentKind.CLUSTER).values_list("id", flat=True))
    old = read_frame(
        Membership.objects.filter(segment_id__in=cluster_ids).order_by(),
        ["segment_id", "customer_id", "since"],
        parse_dates=("since",),
    )
    new = pd.DataFrame(
        {
            "segment_id": labels.map({lab: seg.pk for lab, seg in segment_of_label.items()}).astype("int64").to_numpy(),
            "customer_id": labels.index.to_numpy(dtype="int64"),
        }
    )
    if len(old):
        new = new.merge(old, on=["segment_id", "customer_id"], how="left")
        new["since"] = new["since"].fillna(pd.Timestamp(now))
    else:
        new["since"] = pd.Timestamp(now)
    new["since"] = pd.to_datetime(new["since"], utc=True)
    Membership.objects.filter(segment_id__in=cluster_ids).delete()
    bulk_insert(Membership, new[["segment_id", "customer_id", "since"]])


def _run_start(*, step, k: int | None, method: str, now: datetime) -> ClusteringRun:
    return ClusteringRun.objects.create(
        step=step,
        method=method,
        k_min=settings.SEGMENT_K_MIN,
        k_max=settings.SEGMENT_K_MAX,
        k_pinned=k,
        started_at=now,
    )


def _too_few(run: ClusteringRun, n_profiles: int) -> dict | None:
    """The skipped step's counts when there are too few profiles to cluster (the run recorded as skipped)."""
    if n_profiles >= max(settings.SEGMENT_K_MIN, 2) * 2:
        return None
    run.status = RunStatus.SKIPPED
    run.error = f"Only {n_profiles} profiles: too few to cluster. Compute profiles first."
    run.finished_at = timezone.now()
    run.save()
    return {"_status": "skipped", "profiles": n_profiles, "reason": run.error}


def _run_failed(run: ClusteringRun, exc: BaseException) -> None:
    run.status = RunStatus.FAILED
    run.error = f"{type(exc).__name__}: {exc}"
    run.finished_at = timezone.now()
    run.save()


def _apply_clustering(
    *, run: ClusteringRun, result, n_customers: int, write_memberships, step, now: datetime, started: float, progress
) -> dict:
    """Name the clusters, match them to the previous run's segments and switch segments, memberships
    and history in one transaction. `result` is a `clustering.ClusteringResult` or a
    `spark_clustering.SparkClusteringResult` (the same small fields: centroids, sizes, curves);
    `write_memberships(segment_of_label)` replaces the clustering memberships inside the transaction."""
    names = result.names()
    prev = _previous_centroids(result.features)
    mapping = clustering.match_clusters(result.to_scaled(prev), result.centroids_scaled) if len(prev) else {}
    prev_ids = list(prev.index)
    matched: dict[int, int | None] = {int(lab): None for lab in result.centroids.index}
    matched.update({int(lab): prev_ids[p] for lab, p in mapping.items() if p is not None})
    centroids = result.centroids
    with transaction.atomic():
        newer = ClusteringRun.objects.filter(status=RunStatus.SUCCEEDED, started_at__gt=run.started_at).exists()
        if newer:
            run.status = RunStatus.STALE
            run.error = "A newer clustering run already finished; this result was not applied."
            run.finished_at = timezone.now()
            run.save()
            return {"_status": "skipped", "reason": run.error}
        segment_of_label: dict[int, Segment] = {}
        kept: set[int] = set()
        for lab in centroids.index:
            centroid = {f: _finite(float(v)) for f, v in centroids.loc[lab].items()}
            name, description = names.loc[lab, "name"], names.loc[lab, "description"]
            seg_id = matched.get(int(lab))
            seg = Segment.objects.filter(pk=seg_id).first() if seg_id is not None else None
            if seg is None:
                seg = Segment(kind=SegmentKind.CLUSTER, name=name, created_at=now)
            elif not seg.name_locked:
                seg.name = name
            seg.description = description
            seg.centroid = centroid
            seg.clustering_run = run
            seg.active = True
            seg.size = int(result.sizes[int(lab)])
            seg.members_version += 1
            seg.refreshed_at = now
            seg.save()
            kept.add(seg.pk)
            segment_of_label[int(lab)] = seg
        retired = Segment.objects.filter(kind=SegmentKind.CLUSTER, active=True).exclude(pk__in=kept)
        retired_n = retired.update(active=False, size=0, refreshed_at=now)
        progress(0.8, "writing memberships")
        write_memberships(segment_of_label)
        SegmentSize.objects.bulk_create(
            [SegmentSize(segment=seg, at=now, size=seg.size, step=step) for seg in segment_of_label.values()]
        )
        run.status = RunStatus.SUCCEEDED
        run.features = list(result.features)
        run.ks = sorted(int(x) for x in result.inertia)
        run.inertia = [float(result.inertia[x]) for x in run.ks]
        run.silhouette = [_finite(float(result.silhouette.get(x, float("nan")))) for x in run.ks]
        run.elbow_k = result.knee
        run.chosen_k = result.chosen_k
        run.choice_reason = result.rule[:300]
        best_sil = max(
            ((s, x) for x, s in zip(run.ks, run.silhouette, strict=False) if s is not None), default=(None, None)
        )
        run.silhouette_k = best_sil[1]
        run.sizes = [int(result.sizes[j]) for j in range(result.chosen_k)]
        run.centroids = [
            {
                "cluster": int(lab),
                "segment": segment_of_label[int(lab)].pk,
                "name": segment_of_label[int(lab)].name,
                "size": int(result.sizes[int(lab)]),
                "centroid": {f: _finite(float(v)) for f, v in centroids.loc[lab].items()},
            }
            for lab in centroids.index
        ]
        run.n_customers = n_customers
        run.assignment = clustering.assignment_model(result.matrix, result.centroids_scaled)
        run.finished_at = timezone.now()
        run.duration_s = round(time.monotonic() - started, 3)
        run.save()
    return {
        "clustering_run": run.pk,
        "customers": n_customers,
        "chosen_k": result.chosen_k,
        "elbow_k": result.knee,
        "rule": result.rule,
        "silhouette": _finite(float(result.silhouette_chosen)),
        "sizes": run.sizes,
        "matched_segments": sum(1 for v in matched.values() if v is not None),
        "new_segments": sum(1 for v in matched.values() if v is None),
        "retired_segments": retired_n,
        "seconds": run.duration_s,
    }


def _k_high(distinct: int) -> int:
    """The top of the k range: more clusters than distinct profiles would only split identical customers."""
    return max(settings.SEGMENT_K_MIN, min(settings.SEGMENT_K_MAX, distinct - 1))


def segments_cluster(
    *, step=None, progress=None, k: int | None = None, method: str | None = None, now: datetime | None = None
) -> dict:
    """Cluster the profiles into segments and swap the memberships (see the module docstring)."""
    progress = progress or (lambda fraction, message="": None)
    now = now or timezone.now()
    k = k if k is not None else settings.SEGMENT_K
    method = method or settings.SEGMENT_METHOD
    run = _run_start(step=step, k=k, method=method, now=now)
    started = time.monotonic()
    try:
        progress(0.05, "reading profiles")
        profiles = _profiles_frame()
        skipped = _too_few(run, len(profiles))
        if skipped:
            return skipped
        progress(0.15, f"clustering {len(profiles):,} profiles")
        result = clustering.cluster_profiles(
            profiles,
            method=method,
            k=k,
            k_range=(settings.SEGMENT_K_MIN, _k_high(len(profiles.drop_duplicates()))),
            random_state=settings.SEGMENT_RANDOM_STATE,
            window_days=settings.PROFILE_WINDOW_DAYS,
        )
        progress(0.7, f"k = {result.chosen_k}; matching segments")
        labels = pd.Series(result.labels, index=result.index)
        return _apply_clustering(
            run=run,
            result=result,
            n_customers=len(profiles),
            write_memberships=lambda segment_of_label: _swap_cluster_memberships(labels, segment_of_label, now),
            step=step,
            now=now,
            started=started,
            progress=progress,
        )
    except Exception as exc:
        _run_failed(run, exc)
        raise


# ------------------------------------------------------------------------------ incremental runs


def _incremental_base(step) -> tuple[ClusteringRun | None, list[int], datetime | None, str]:
    """What an incremental run builds on: the latest clustering, if the memberships are still its
    (the last segments run that applied a clustering applied this one, and none of its segments was
    retired since), and the profiles runs since that segments run, all incremental. Returns the
    clustering, those profiles runs' ids, when that segments run started and "", or None, [], None
    and why a full clustering is needed."""
    active = ClusteringRun.objects.filter(status=RunStatus.SUCCEEDED).order_by("-started_at").first()
    if active is None or not active.assignment:
        return None, [], None, "no earlier clustering that records how to place customers in it"
    previous = (
        PipelineStep.objects.filter(
            name="segments", status=RunStatus.SUCCEEDED, counts__clustering__has_key="clustering_run"
        )
        .exclude(pk=getattr(step, "pk", None))
        .order_by("-started_at")
        .first()
    )
    if previous is None or previous.counts["clustering"]["clustering_run"] != active.pk:
        return None, [], None, "the memberships are not those of the latest clustering"
    segment_ids = [c["segment"] for c in active.centroids]
    if Segment.objects.filter(pk__in=segment_ids, kind=SegmentKind.CLUSTER, active=True).count() != len(segment_ids):
        return None, [], None, "a segment of the latest clustering was retired since"
    since = PipelineStep.objects.filter(name="profiles", status=RunStatus.SUCCEEDED, started_at__gt=previous.started_at)
    if since.filter(counts__incremental=False).exists():
        return None, [], None, "every profile was computed again since the last segments run"
    return active, list(since.values_list("pk", flat=True)), previous.started_at, ""


def segments_assign_incremental(*, step=None, progress=None, now: datetime | None = None) -> dict:
    """An incremental clustering step: only the customers whose profiles changed since the last
    segments run (the incremental profiles runs since, by the run each profile records) are placed in
    the nearest cluster of the latest clustering, in that clustering's own scaled space
    (`clustering.assign_nearest` on `ClusteringRun.assignment`); everyone else keeps their segment,
    and the segments keep their centroids and names until the next full run clusters everyone again.
    A customer who stays in a segment keeps their `since`. Returns the step's counts (with what
    changed, a `rules.Changed`, under "_changed", for the rule segments and not to be recorded), or
    `{"_full_because": why}` when a full clustering is needed."""
    progress = progress or (lambda fraction, message="": None)
    now = now or timezone.now()
    started = time.monotonic()
    active, profile_runs, since, why = _incremental_base(step)
    if active is None:
        return {"_full_because": why}
    latest_profiles = (
        PipelineStep.objects.filter(name="profiles", status=RunStatus.SUCCEEDED, counts__has_key="max_event_id")
        .order_by("-finished_at")
        .values_list("counts", flat=True)
        .first()
    )
    seen_event_id = int(latest_profiles["max_event_id"]) if latest_profiles else 0
    progress(0.1, "reading the changed profiles")
    profiles = _profiles_frame(Profile.objects.filter(run_id__in=profile_runs))
    labels = clustering.assign_nearest(profiles, active.assignment)
    by_label = {int(c["cluster"]): int(c["segment"]) for c in active.centroids}
    segment_of = np.array([by_label[j] for j in range(len(by_label))], dtype=np.int64)
    new = pd.DataFrame(
        {"segment_id": segment_of[labels], "customer_id": profiles.index.to_numpy(dtype="int64")}, dtype="int64"
    )
    progress(0.6, f"placing {len(new):,} customers")
    segment_ids = list(by_label.values())
    with transaction.atomic():
        if ClusteringRun.objects.filter(status=RunStatus.SUCCEEDED, started_at__gt=active.started_at).exists():
            return {"_status": "skipped", "reason": "A newer clustering run finished meanwhile; nothing was changed."}
        cluster_ids = list(Segment.objects.filter(kind=SegmentKind.CLUSTER).values_list("id", flat=True))
        among = Membership.objects.filter(segment_id__in=cluster_ids, customer_id__in=id_subquery(new["customer_id"]))
        old = read_frame(among.order_by(), ["segment_id", "customer_id", "since"], parse_dates=("since",))
        merged = new.merge(old, on=["segment_id", "customer_id"], how="left", indicator=True)
        stayed = merged["_merge"] == "both"
        merged["since"] = pd.to_datetime(merged["since"].where(stayed, pd.Timestamp(now)), utc=True)
        moved_in = merged.loc[~stayed, "segment_id"]  # into a segment: moved or new members
        moved_out = old.merge(new, on=["segment_id", "customer_id"], how="left", indicator=True)
        moved_out = moved_out.loc[moved_out["_merge"] == "left_only", "segment_id"]
        among.delete()
        bulk_insert(Membership, merged[["segment_id", "customer_id", "since"]])
        sizes = dict(
            Membership.objects.filter(segment_id__in=segment_ids)
            .values_list("segment_id")
            .annotate(n=Count("id"))
            .values_list("segment_id", "n")
        )
        touched = set(moved_in.astype(int)) | set(moved_out.astype(int))
        for seg_id in segment_ids:
            Segment.objects.filter(pk=seg_id).update(
                size=sizes.get(seg_id, 0),
                refreshed_at=now,
                members_version=F("members_version") + (1 if seg_id in touched else 0),
            )
        SegmentSize.objects.bulk_create(
            [SegmentSize(segment_id=seg_id, at=now, size=sizes.get(seg_id, 0), step=step) for seg_id in segment_ids]
        )
    return {
        "clustering_run": active.pk,
        "incremental": True,
        "customers": len(new),
        "stayed": int(stayed.sum()),
        "moved": len(moved_out),
        "new_members": int(len(new) - len(old)),
        "sizes": [sizes.get(by_label[j], 0) for j in range(len(by_label))],
        "seconds": round(time.monotonic() - started, 3),
        # for the rule segments, not recorded: who changed, since when, from which events
        "_changed": Changed(customers=new["customer_id"].to_numpy(), since=since, seen_event_id=seen_event_id),
    }


STAGING_PREFIX = "segments_staging_run_"


def _staging_table(run: ClusteringRun) -> str:
    return f"{STAGING_PREFIX}{run.pk}"


def staging_tables_drop(*, runs=None) -> list[str]:
    """Drop the membership staging tables of Spark clustering runs no longer running (a failed or
    killed run's leftovers), or of the runs named; returns the tables dropped."""
    names = [t for t in connection.introspection.table_names() if t.startswith(STAGING_PREFIX)]
    by_run = {int(t[len(STAGING_PREFIX) :]): t for t in names if t[len(STAGING_PREFIX) :].isdigit()}
    if runs is None:
        running = set(
            ClusteringRun.objects.filter(pk__in=by_run, status=RunStatus.RUNNING).values_list("pk", flat=True)
        )
        drop = [t for pk, t in by_run.items() if pk not in running]
    else:
        drop = [by_run[pk] for pk in runs if pk in by_run]
    with connection.cursor() as cur:
        for table in drop:
            cur.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)}")
    return drop


def _switch_memberships_from_staging(
    staging: str, segment_of_label: dict[int, Segment], now: datetime, *, expected: int
) -> None:
    """Replace every clustering membership by the staging table's (customer_id, cluster) rows, in
    set-based SQL inside the caller's transaction: customers who stay in a segment keep their row
    and `since`, the others leave or join, as `_swap_cluster_memberships` does. Refuses a staging
    table that does not hold each of the `expected` customers once (a write that did not finish)."""
    q = connection.ops.quote_name
    table, staging = q(Membership._meta.db_table), q(staging)
    customers = q(Customer._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*), count(DISTINCT customer_id) FROM {staging}")
        rows, distinct = cur.fetchone()
        if rows != expected or distinct != expected:
            raise RuntimeError(
                f"The Spark job's staging table {staging} holds {rows:,} rows for {distinct:,} customers, "
                f"not one row for each of the {expected:,} clustered: the previous segments stay in service."
            )
        cur.execute(f"ANALYZE {staging}")
        labels = sorted(segment_of_label)
        values = ", ".join(["(%s, %s)"] * len(labels))
        mapping = [x for lab in labels for x in (lab, segment_of_label[lab].pk)]
        new = (
            f"SELECT s.customer_id, m.segment_id FROM {staging} s "
            f"JOIN (VALUES {values}) AS m(label, segment_id) ON m.label = s.cluster "
            f"JOIN {customers} c ON c.id = s.customer_id"
        )
        cluster_ids = list(Segment.objects.filter(kind=SegmentKind.CLUSTER).values_list("id", flat=True))
        cur.execute(
            f"WITH new AS ({new}) DELETE FROM {table} AS old WHERE old.segment_id = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM new WHERE new.customer_id = old.customer_id AND new.segment_id = old.segment_id)",
            [*mapping, cluster_ids],
        )
        cur.execute(
            f"INSERT INTO {table} (segment_id, customer_id, since) SELECT new.segment_id, new.customer_id, %s "
            f"FROM ({new}) AS new ON CONFLICT (segment_id, customer_id) DO NOTHING",
            [now, *mapping],
        )


def segments_cluster_spark(
    *, step=None, progress=None, k: int | None = None, method: str | None = None, now: datetime | None = None
) -> dict:
    """`segments_cluster` on Spark (segments/spark_clustering.py): the profiles are read over JDBC by
    customer id range, clustered in Spark, and the labels written by Spark over JDBC to a staging
    table; the app then switches segments and memberships in one transaction, as the local path
    does. Only k-sized results (centroids, sizes, curves) come back to Python. A failed or killed
    Spark job leaves the previous segments and memberships in service; its staging table is
    dropped then, or by the next run."""
    from common.spark import jdbc_read, jdbc_write, spark_session

    from . import spark_clustering

    progress = progress or (lambda fraction, message="": None)
    if connection.in_atomic_block:
        raise RuntimeError(
            "The Spark backend writes over its own JDBC connection: call it outside a transaction, "
            "so the staging table it writes into is committed."
        )
    now = now or timezone.now()
    k = k if k is not None else settings.SEGMENT_K
    method = method or settings.SEGMENT_METHOD
    run = _run_start(step=step, k=k, method=method, now=now)
    started = time.monotonic()
    staging = _staging_table(run)
    spark = None
    tag = f"segments-clustering-run-{run.pk}"
    try:
        staging_tables_drop()
        bounds = Profile.objects.aggregate(n=Count("pk"), lo=Min("customer_id"), hi=Max("customer_id"))
        skipped = _too_few(run, bounds["n"])
        if skipped:
            return skipped
        distinct = Profile.objects.values(*PROFILE_COLUMNS[1:]).distinct()[: settings.SEGMENT_K_MAX + 1].count()
        progress(0.05, "starting Spark")
        spark = spark_session()
        spark.addTag(tag)
        progress(0.1, f"clustering {bounds['n']:,} profiles in Spark")
        columns = ", ".join(connection.ops.quote_name(c) for c in PROFILE_COLUMNS)
        profiles = jdbc_read(
            spark,
            f"(SELECT {columns} FROM {connection.ops.quote_name(Profile._meta.db_table)}) AS profiles",
            partition_column="customer_id",
            lower=bounds["lo"],
            upper=bounds["hi"],
        )
        result = spark_clustering.cluster_profiles(
            profiles,
            method=method,
            k=k,
            k_range=(settings.SEGMENT_K_MIN, _k_high(distinct)),
            random_state=settings.SEGMENT_RANDOM_STATE,
            window_days=settings.PROFILE_WINDOW_DAYS,
        )
        progress(0.6, f"k = {result.chosen_k}; writing labels to {staging}")
        with connection.cursor() as cur:
            cur.execute(
                f"CREATE UNLOGGED TABLE {connection.ops.quote_name(staging)} "
                "(customer_id bigint NOT NULL, cluster integer NOT NULL)"
            )
        try:
            jdbc_write(result.labels, staging)
        finally:
            spark_clustering.release(result)
        progress(0.75, f"k = {result.chosen_k}; matching segments")
        return _apply_clustering(
            run=run,
            result=result,
            n_customers=result.n,
            write_memberships=lambda segment_of_label: _switch_memberships_from_staging(
                staging, segment_of_label, now, expected=result.n
            ),
            step=step,
            now=now,
            started=started,
            progress=progress,
        )
    except BaseException as exc:
        _run_failed(run, exc)
        raise
    finally:
        if spark is not None:
            spark.removeTag(tag)
        staging_tables_drop(runs=[run.pk])


def rule_segments_refresh(
    *, step=None, progress=None, now: datetime | None = None, changed: Changed | None = None
) -> dict:
    """Refresh every rule segment, each with one set-based statement, referenced segments first.

    `changed` (an incremental run, `rules.Changed`): the customers whose profiles and clustering
    segments changed, and since when (the previous segments run). A rule segment whose answer can
    have changed only for a few customers (`rules.narrow_candidates`: those, the ones with events no
    profiles run has read, whose consent changed or whose events left a time window since its last
    refresh) is re-evaluated for them only; the others in full. Either way every rule segment ends
    as a full refresh would leave it."""
    from .rules import RuleError, narrow_candidates, refresh_rule_memberships, rule_refresh_order

    progress = progress or (lambda fraction, message="": None)
    now = now or timezone.now()
    order = rule_refresh_order(list(Segment.objects.filter(kind=SegmentKind.RULE, active=True)))
    sizes: dict[str, int] = {}
    errors: dict[str, str] = {}
    narrowed: dict[int, np.ndarray] = {}  # rule segments refreshed for a few customers: those customers
    for i, seg in enumerate(order):
        among = None
        if changed is not None:
            among = narrow_candidates(seg, changed=changed, now=now, narrowed=narrowed)
        try:
            sizes[seg.name] = refresh_rule_memberships(seg, now=now, step=step, among=among)
            if among is not None:
                narrowed[seg.pk] = among
        except RuleError as exc:
            # A rule that no longer validates (e.g. a segment it named was deleted) keeps its
            # previous members; the step reports it instead of failing the whole pipeline.
            errors[seg.name] = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors)
        progress((i + 1) / max(len(order), 1), f"rule segment {seg.name}")
    out = {"rule_segments": len(order), "sizes": sizes, "errors": errors}
    if changed is not None:
        out["refreshed_for_a_few"] = {
            s.name: len(narrowed[s.pk]) for s in order if s.pk in narrowed
        }  # segment: customers re-evaluated
    return out


def rule_segment_refresh_now(*, segment: Segment) -> int:
    """An operator's refresh of one rule segment (the admin, on saving it): the same set-based refresh
    as the pipeline's, under the operator statement timeout (common/operator_queries.py).

    Raises `OperatorQueryTimeout` when the audience query runs longer than
    OPERATOR_QUERY_TIMEOUT_MS: nothing is changed then, and the next recomputation refreshes the
    segment without a timeout. Returns the new size.
    """
    from common.operator_queries import operator_query_timeout

    from .rules import refresh_rule_memberships

    with operator_query_timeout(hint="the next recomputation refreshes its members"):
        return refresh_rule_memberships(segment)


def predictive_segments_create(
    *, category: str, actor=None, actor_label: str = "", source: str = "system"
) -> list[Segment]:
    """Create the ready-made predictive segments (segments/predictive.py) that do not exist yet, by
    name: likely to churn, high predicted value, likely to buy `category`. Each is an ordinary rule
    segment, audited as created and refreshed at once. Returns the segments created (none when all
    are there already: safe to run twice)."""
    from .rules import refresh_rule_memberships, validate_rule

    created = []
    for template in TEMPLATES.values():
        fields = template.fill(category)
        validate_rule(fields["rule"])
        if Segment.objects.filter(name=fields["name"]).exists():
            continue
        with transaction.atomic():
            segment = Segment.objects.create(**fields, kind=SegmentKind.RULE)
            audit_record(
                action=SegmentsAuditAction.SEGMENT_CREATED,
                actor=actor,
                actor_label=actor_label,
                target=segment,
                changes={k: fields[k] for k in ("name", "description", "rule")},
                source=source,
            )
        refresh_rule_memberships(segment)
        created.append(segment)
    return created


def clustering_run_abandon(*, step) -> int:
    """The pipeline found `step`'s worker dead: its clustering run is failed (memberships were never swapped)."""
    runs = list(ClusteringRun.objects.filter(step=step, status=RunStatus.RUNNING).values_list("pk", flat=True))
    n = ClusteringRun.objects.filter(pk__in=runs).update(
        status=RunStatus.FAILED, error="Abandoned: the worker running it stopped.", finished_at=timezone.now()
    )
    staging_tables_drop(runs=runs)  # a Spark run's half-written labels
    return n


def segments_compute(
    *,
    step=None,
    progress=None,
    k: int | None = None,
    method: str | None = None,
    backend: str = "local",
    incremental: bool = False,
) -> dict:
    """The pipeline step: clustering segments (scikit-learn in the worker, or Spark with
    `backend="spark"`), then rule segments (SQL in the database, on either backend).

    `incremental`: only the customers whose profiles changed since the last segments run are placed
    in the latest clustering's segments, and the rule segments re-evaluated for them where nothing
    else can change (`segments_assign_incremental`, `rule_segments_refresh`); when that cannot stand
    in for a full run (no earlier clustering, every profile computed again, a pinned k or method) the
    step clusters everyone and its counts say why."""
    progress = progress or (lambda fraction, message="": None)
    now = timezone.now()
    clustered, changed = None, None
    if incremental and k is None and method is None:
        clustered = segments_assign_incremental(step=step, progress=lambda f, m="": progress(f * 0.8, m), now=now)
        full_because = clustered.pop("_full_because", None)
        changed = clustered.pop("_changed", None)
        if full_because:
            clustered = None
    elif incremental:
        full_because = "a number of clusters or a method was asked for"
    if clustered is None:
        cluster = segments_cluster_spark if backend == "spark" else segments_cluster
        clustered = cluster(step=step, progress=lambda f, m="": progress(f * 0.8, m), k=k, method=method)
        if incremental:
            clustered["incremental_requested"] = True
            clustered["full_because"] = full_because
    rules = rule_segments_refresh(
        step=step, progress=lambda f, m="": progress(0.8 + f * 0.2, m), now=now, changed=changed
    )
    status = clustered.pop("_status", None)
    if "chosen_k" in clustered:
        chosen = f"{clustered['chosen_k']} clustering segments"
    elif clustered.get("incremental"):
        chosen = f"{clustered['customers']:,} customers placed in the clustering segments"
    else:
        chosen = "no clustering"
    progress(1.0, f"{chosen}, {rules['rule_segments']:,} rule segments refreshed")
    out = {"clustering": clustered, "rules": rules}
    if status == "skipped" and not rules["rule_segments"]:
        out["_status"] = "skipped"
    return out
