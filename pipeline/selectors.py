"""Reads of the recomputation's records shared by the admin, the dashboard and the steps."""

from django.db.models import QuerySet

from .models import PipelineRun, PipelineStep, RunStatus


def pipeline_runs() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("requested_by").prefetch_related("step_runs").order_by("-created_at")


def last_succeeded_step(*, name: str, counts_key: str) -> PipelineStep | None:
    """The latest step `name` that succeeded and recorded `counts_key` in its counts."""
    return (
        PipelineStep.objects.filter(name=name, status=RunStatus.SUCCEEDED, counts__has_key=counts_key)
        .order_by("-finished_at")
        .first()
    )
