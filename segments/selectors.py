"""Reads of segments shared by the API, the admin and later steps (campaigns aim at segments)."""

from django.db.models import QuerySet

from pipeline.models import RunStatus
from profiles.models import Customer, Item

from .models import ClusteringRun, Membership, Segment, SegmentSize


def segments_list(*, kind: str | None = None, active: bool | None = True) -> QuerySet[Segment]:
    qs = Segment.objects.all().order_by("kind", "name")
    if kind:
        qs = qs.filter(kind=kind)
    if active is not None:
        qs = qs.filter(active=active)
    return qs


def segment_members(segment: Segment, *, search: str | None = None) -> QuerySet[Membership]:
    qs = Membership.objects.filter(segment=segment).select_related("customer").order_by("customer__external_id")
    if search:
        qs = qs.filter(customer__external_id__icontains=search) | qs.filter(customer__name__icontains=search)
    return qs


def segments_of(customer: Customer) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(customer=customer, segment__active=True)
        .select_related("segment")
        .order_by("segment__name")
    )


def size_history(segment: Segment, limit: int = 90) -> list[SegmentSize]:
    return list(reversed(SegmentSize.objects.filter(segment=segment).order_by("-at")[:limit]))


def latest_clustering_run() -> ClusteringRun | None:
    return ClusteringRun.objects.filter(status=RunStatus.SUCCEEDED).order_by("-started_at").first()


def rule_builder_choices(*, limit: int = 500) -> dict:
    """What the shop knows that a rule may name: item categories and segments (the rule builder's lists)."""
    categories = (
        Item.objects.exclude(category="").order_by("category").values_list("category", flat=True).distinct()[:limit]
    )
    segments = Segment.objects.order_by("kind", "name").values("pk", "name", "kind")[:limit]
    return {
        "categories": list(categories),
        "segments": [{"id": s["pk"], "name": s["name"], "kind": s["kind"]} for s in segments],
    }


def category_exists(name: str) -> bool:
    """Whether some item of the shop is in the category `name` (exactly)."""
    return bool(name) and Item.objects.filter(category=name).exists()
