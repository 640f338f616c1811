"""Segments of customers: found by clustering or written as rules by operators."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from pipeline.models import PipelineStep, RunStatus
from profiles.models import Customer


class SegmentKind(models.TextChoices):
    CLUSTER = "cluster", "Clustering"
    RULE = "rule", "Rule"


class SegmentsAuditAction(models.TextChoices):
    """What operators do to segments (this app's actions in the audit log, accounts/actions.py)."""

    SEGMENT_CREATED = "segment.created", "Segment created"
    SEGMENT_CHANGED = "segment.changed", "Segment changed"
    SEGMENT_DELETED = "segment.deleted", "Segment deleted"


class ClusteringRun(models.Model):
    """One clustering of the customer profiles, with the figures that chose k."""

    step = models.ForeignKey(PipelineStep, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    method = models.CharField(max_length=20, default="kmeans")
    features = models.JSONField(default=list)
    k_min = models.PositiveSmallIntegerField(default=2)
    k_max = models.PositiveSmallIntegerField(default=10)
    k_pinned = models.PositiveSmallIntegerField(null=True, blank=True)
    ks = models.JSONField(default=list, help_text="The k tried.")
    inertia = models.JSONField(default=list, help_text="Inertia per k tried.")
    silhouette = models.JSONField(default=list, help_text="Silhouette per k tried (on a sample for large data).")
    elbow_k = models.PositiveSmallIntegerField(null=True, blank=True)
    silhouette_k = models.PositiveSmallIntegerField(null=True, blank=True)
    chosen_k = models.PositiveSmallIntegerField(null=True, blank=True)
    choice_reason = models.CharField(max_length=300, blank=True)
    sizes = models.JSONField(default=list)
    centroids = models.JSONField(default=list, help_text="Centroids in the features' original units.")
    n_customers = models.PositiveIntegerField(default=0)
    assignment = models.JSONField(
        default=dict,
        blank=True,
        help_text="How an incremental run places a customer in these clusters without clustering again: the "
        "features, fill values, scaling and the centres in the scaled space (clustering.assignment_model).",
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = self.get_status_display().lower()
        return f"Clustering of {self.started_at:%d %b %Y %H:%M}: {self.chosen_k or '?'} segments ({state})"


class Segment(models.Model):
    """A group of customers. Clustering segments keep their identity across runs; rule segments are the operator's."""

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=SegmentKind.choices)
    rule = models.JSONField(
        null=True, blank=True, help_text="For rule segments: the condition tree (see docs/rules.md)."
    )
    centroid = models.JSONField(
        null=True, blank=True, help_text="For clustering segments: the latest centroid, original units."
    )
    clustering_run = models.ForeignKey(
        ClusteringRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="segments"
    )
    name_locked = models.BooleanField(default=False, help_text="Renamed by an operator: re-runs keep the name.")
    active = models.BooleanField(default=True, help_text="A clustering segment no later run matched becomes inactive.")
    size = models.PositiveIntegerField(default=0)
    members_version = models.PositiveIntegerField(default=0, help_text="Bumped at each refresh of the memberships.")
    refreshed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(kind="cluster") | Q(rule__isnull=False), name="segment_rule_has_rule"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "customer"], name="membership_segment_customer_uniq")]
        indexes = [models.Index(fields=["customer"], name="membership_customer_idx")]

    def __str__(self) -> str:
        return f"member since {self.since:%Y-%m-%d}"


class SegmentSize(models.Model):
    """The size of a segment after each refresh, for the trend."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="size_history")
    at = models.DateTimeField(default=timezone.now)
    size = models.PositiveIntegerField()
    step = models.ForeignKey(PipelineStep, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["segment", "at"]
        indexes = [models.Index(fields=["segment", "at"], name="segment_size_at_idx")]
