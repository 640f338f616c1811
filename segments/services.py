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

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from common.bulk import bulk_insert, read_frame
from pipeline.models import RunStatus
from profiles.models import Profile

from . import clustering
from .models import ClusteringRun, Membership, Segment, SegmentKind, SegmentsAuditAction, SegmentSize
from .predictive import TEMPLATES

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


def _profiles_frame() -> pd.DataFrame:
    return read_frame(Profile.objects.order_by("customer_id"), PROFILE_COLUMNS).set_index("customer_id")


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


def segments_cluster(
    *, step=None, progress=None, k: int | None = None, method: str | None = None, now: datetime | None = None
) -> dict:
    """Cluster the profiles into segments and swap the memberships (see the module docstring)."""
    progress = progress or (lambda fraction, message="": None)
    now = now or timezone.now()
    k = k if k is not None else settings.SEGMENT_K
    method = method or settings.SEGMENT_METHOD
    run = ClusteringRun.objects.create(
        step=step,
        method=method,
        k_min=settings.SEGMENT_K_MIN,
        k_max=settings.SEGMENT_K_MAX,
        k_pinned=k,
        started_at=now,
    )
    started = time.monotonic()
    try:
        progress(0.05, "reading profiles")
        profiles = _profiles_frame()
        if len(profiles) < max(settings.SEGMENT_K_MIN, 2) * 2:
            run.status = RunStatus.SKIPPED
            run.error = f"Only {len(profiles)} profiles: too few to cluster. Compute profiles first."
            run.finished_at = timezone.now()
            run.save()
            return {"_status": "skipped", "profiles": len(profiles), "reason": run.error}
        progress(0.15, f"clustering {len(profiles):,} profiles")
        # More clusters than distinct profiles would only split identical customers.
        distinct = len(profiles.drop_duplicates())
        k_hi = max(settings.SEGMENT_K_MIN, min(settings.SEGMENT_K_MAX, distinct - 1))
        result = clustering.cluster_profiles(
            profiles,
            method=method,
            k=k,
            k_range=(settings.SEGMENT_K_MIN, k_hi),
            random_state=settings.SEGMENT_RANDOM_STATE,
            window_days=settings.PROFILE_WINDOW_DAYS,
        )
        progress(0.7, f"k = {result.chosen_k}; matching segments")
        names = result.names()
        prev = _previous_centroids(result.features)
        mapping = clustering.match_clusters(result.to_scaled(prev), result.centroids_scaled) if len(prev) else {}
        prev_ids = list(prev.index)
        matched: dict[int, int | None] = {int(lab): None for lab in result.centroids.index}
        matched.update({int(lab): prev_ids[p] for lab, p in mapping.items() if p is not None})
        labels = pd.Series(result.labels, index=result.index)
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
            _swap_cluster_memberships(labels, segment_of_label, now)
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
            run.n_customers = len(profiles)
            run.finished_at = timezone.now()
            run.duration_s = round(time.monotonic() - started, 3)
            run.save()
        return {
            "clustering_run": run.pk,
            "customers": len(profiles),
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
    except Exception as exc:
        run.status = RunStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        run.finished_at = timezone.now()
        run.save()
        raise


def rule_segments_refresh(*, step=None, progress=None, now: datetime | None = None) -> dict:
    """Refresh every rule segment, each with one set-based statement, referenced segments first."""
    from .rules import RuleError, refresh_rule_memberships, rule_refresh_order

    progress = progress or (lambda fraction, message="": None)
    order = rule_refresh_order(list(Segment.objects.filter(kind=SegmentKind.RULE, active=True)))
    sizes: dict[str, int] = {}
    errors: dict[str, str] = {}
    for i, seg in enumerate(order):
        try:
            sizes[seg.name] = refresh_rule_memberships(seg, now=now, step=step)
        except RuleError as exc:
            # A rule that no longer validates (e.g. a segment it named was deleted) keeps its
            # previous members; the step reports it instead of failing the whole pipeline.
            errors[seg.name] = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors)
        progress((i + 1) / max(len(order), 1), f"rule segment {seg.name}")
    return {"rule_segments": len(order), "sizes": sizes, "errors": errors}


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
    return ClusteringRun.objects.filter(step=step, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, error="Abandoned: the worker running it stopped.", finished_at=timezone.now()
    )


def segments_compute(*, step=None, progress=None, k: int | None = None, method: str | None = None) -> dict:
    """The pipeline step: clustering segments, then rule segments."""
    progress = progress or (lambda fraction, message="": None)
    clustered = segments_cluster(step=step, progress=lambda f, m="": progress(f * 0.8, m), k=k, method=method)
    rules = rule_segments_refresh(step=step, progress=lambda f, m="": progress(0.8 + f * 0.2, m))
    status = clustered.pop("_status", None)
    chosen = f"{clustered['chosen_k']} clustering segments" if "chosen_k" in clustered else "no clustering"
    progress(1.0, f"{chosen}, {rules['rule_segments']:,} rule segments refreshed")
    out = {"clustering": clustered, "rules": rules}
    if status == "skipped" and not rules["rule_segments"]:
        out["_status"] = "skipped"
    return out
