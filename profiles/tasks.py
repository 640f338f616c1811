"""Celery tasks: they take ids, call one service, and are safe to run twice."""
from celery import shared_task

from . import pipeline


@shared_task(name="profiles.tasks.pipeline_execute", acks_late=True)
def pipeline_execute_task(pipeline_run_id: int, step_params: dict | None = None) -> dict:
    """Run a created PipelineRun. A second delivery of the same run finds it already done and returns."""
    from .models import PipelineRun, StepStatus

    run = PipelineRun.objects.get(pk=pipeline_run_id)
    if run.status != StepStatus.QUEUED:
        return {"pipeline": run.pk, "status": run.status, "note": "already handled"}
    try:
        run = pipeline.pipeline_execute(run=run, step_params=step_params)
    except pipeline.PipelineBusy:
        run.refresh_from_db()
    return {"pipeline": run.pk, "status": run.status}


@shared_task(name="profiles.tasks.pipeline_scheduled")
def pipeline_scheduled(steps: list[str] | None = None, incremental: bool = False) -> dict:
    """What beat starts: a pipeline over `steps` (all registered steps when None)."""
    steps = steps or pipeline.available_steps()
    run = pipeline.pipeline_create(steps=steps, trigger="schedule")
    params = {"profiles": {"incremental": True}} if incremental and "profiles" in steps else None
    return pipeline_execute_task(run.pk, params)
