"""The recomputation's records: runs, their steps, and the lease that keeps two runs from overlapping.

The tables kept the names they had when these models lived in `profiles` (profiles_pipelinerun,
profiles_pipelinestep, profiles_lease): moving the models moved no data.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PipelineAuditAction(models.TextChoices):
    """This app's actions in the audit log (accounts/actions.py collects them)."""

    PIPELINE_STARTED = "pipeline.started", "Recomputation started"


class RunStatus(models.TextChoices):
    """How a run ended (or where it is): pipeline runs and steps, clustering runs, recommender runs.

    A run that lost to a newer one is `stale` (clustering and recommender runs); a pipeline step
    that had nothing to do, or whose result was stale, is recorded as `skipped`.
    """

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    STALE = "stale", "Stale (a newer run finished first)"


class PipelineRun(models.Model):
    """One run of the recomputation pipeline (profiles → segments → recommendations → ...)."""

    steps = models.JSONField(default=list, help_text="The steps asked for, in order.")
    trigger = models.CharField(max_length=16, default="shell", help_text="schedule, admin, shell or api")
    requested_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    backend = models.CharField(
        max_length=16, default="local", help_text="The compute backend in use when the run started (PIPELINE_BACKEND)."
    )

    class Meta:
        db_table = "profiles_pipelinerun"
        ordering = ["-created_at"]
        permissions = [("run_pipeline", "Can start a recomputation")]

    def __str__(self) -> str:
        return f"pipeline #{self.pk} ({', '.join(self.steps)}) {self.status}"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class PipelineStep(models.Model):
    """One recomputation step: what it did, how long it took, how it ended."""

    pipeline = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, null=True, blank=True, related_name="step_runs")
    name = models.CharField(max_length=40, db_index=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0, help_text="0 to 1 while running.")
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    backend = models.CharField(
        max_length=16, default="local", help_text="What computed the step: local (numpy and the database) or spark."
    )
    counts = models.JSONField(default=dict, blank=True, help_text="Sizes, figures and timings the step reports.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "profiles_pipelinestep"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["name", "status", "-finished_at"], name="step_name_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} {self.status}"


class Lease(models.Model):
    """A named lock with an expiry, so two pipeline runs never overlap and a crashed holder's lock lapses."""

    name = models.CharField(max_length=60, unique=True)
    holder = models.CharField(max_length=120)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "profiles_lease"
