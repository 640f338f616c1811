"""Celery tasks: they take ids, call one service, and are safe to run twice.

Reliability (docs/reliability.md): a transient error (database or broker unreachable, a deadlock)
retries with exponential backoff and jitter, at most RETRY_TRANSIENT["max_retries"] times. Inside a
step it is first recorded, as any failure is: the step FAILED with its error, the run FAILED; the
run is then put back in the queue and resumed from the failed step by the retry, so the attempt
stays visible. A run only ever executes from QUEUED, so a duplicate delivery does nothing.

The tasks kept the names they had in `profiles` (profiles.tasks.*), so messages already queued and
django-celery-beat's rows still reach them.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from common.retry import RETRY_TRANSIENT, TRANSIENT_ERRORS, retry_countdown

from . import services
from .models import PipelineRun, RunStatus

log = logging.getLogger(__name__)

# The whole pipeline at the largest scale takes tens of minutes; the global limits (an hour, a
# soft limit 5 minutes earlier) fit it. The soft limit is recorded as the running step's error.
PIPELINE_LIMITS = {"soft_time_limit": 3300, "time_limit": 3600}


def _execute(task, run, step_params, *, hand_over: bool = False) -> dict:
    """Run a queued run; on a transient failure, requeue it and schedule the retry. Returns a summary.

    `hand_over`: the retry goes to `pipeline_execute_task` (from `pipeline_scheduled`, whose own
    retry would create another run), counting the attempts made so far. In eager mode (the demo,
    tests) there is no worker to hand a retry to: it resumes at once, in this call.
    """
    from .models import RunStatus

    retries = task.request.retries or 0
    while True:
        try:
            run = services.pipeline_execute(run=run, step_params=step_params)
            failure = run.failed_exception
        except services.PipelineBusy:
            run.refresh_from_db()
            return {"pipeline": run.pk, "status": run.status}
        except TRANSIENT_ERRORS as exc:  # outside the steps: taking the lease, recording the run
            run.refresh_from_db()
            if run.status not in (RunStatus.QUEUED, RunStatus.FAILED):
                raise  # could not be recorded; once its lease lapses it is recorded as abandoned
            failure = exc
        if not isinstance(failure, TRANSIENT_ERRORS) or retries >= task.max_retries:
            return {"pipeline": run.pk, "status": run.status}
        eager = task.request.is_eager
        countdown = (
            0
            if eager
            else retry_countdown(
                retries, factor=RETRY_TRANSIENT["retry_backoff"], maximum=RETRY_TRANSIENT["retry_backoff_max"]
            )
        )
        note = (
            f"{type(failure).__name__} is transient: retry {retries + 1} of {task.max_retries} "
            + ("now" if eager else f"in {countdown:.0f} s")
            + ", resuming from the failed step."
        )
        if run.status != RunStatus.QUEUED and not services.pipeline_requeue(run=run, note=note):
            return {"pipeline": run.pk, "status": run.status}
        retries += 1
        if eager:
            continue
        if hand_over or task.request.called_directly:
            pipeline_execute_task.apply_async(args=[run.pk, step_params], countdown=countdown, retries=retries)
            return {"pipeline": run.pk, "status": run.status, "retry_in": round(countdown, 1)}
        raise task.retry(args=[run.pk, step_params], kwargs={}, countdown=countdown, exc=failure)


@shared_task(name="profiles.tasks.pipeline_execute", bind=True, acks_late=True, **RETRY_TRANSIENT, **PIPELINE_LIMITS)
def pipeline_execute_task(self, pipeline_run_id: int, step_params: dict | None = None) -> dict:
    """Run a created PipelineRun. A second delivery of the same run finds it already handled and returns."""
    from .models import PipelineRun, RunStatus

    run = PipelineRun.objects.get(pk=pipeline_run_id)
    if run.status == RunStatus.RUNNING:
        # A redelivery (the worker that took it died, or the broker's visibility timeout passed):
        # if nobody holds the lease for it, record it as abandoned; never start it a second time.
        services.pipeline_recover()
        run.refresh_from_db()
    if run.status != RunStatus.QUEUED:
        return {"pipeline": run.pk, "status": run.status, "note": "already handled"}
    return _execute(self, run, step_params)


@shared_task(
    name="profiles.tasks.pipeline_scheduled", bind=True, max_retries=RETRY_TRANSIENT["max_retries"], **PIPELINE_LIMITS
)
def pipeline_scheduled(self, steps: list[str] | None = None, incremental: bool = False) -> dict:
    """What beat starts: a pipeline over `steps` (all listed steps when None), run in this task.

    `incremental` goes to the steps that take it (profiles, segments)."""
    try:
        options = {"incremental": True} if incremental else None
        run = services.pipeline_start(trigger="schedule", steps=steps, options=options)
    except TRANSIENT_ERRORS as exc:  # nothing was created: this task may simply run again
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries)) from exc
    return _execute(self, run, run.step_params, hand_over=True)


@shared_task(name="profiles.tasks.pipeline_recover", **RETRY_TRANSIENT, soft_time_limit=50, time_limit=60)
def pipeline_recover_task() -> dict:
    """Record runs whose worker died (running without a live lease) as failed. Beat may run it every few minutes."""
    return {"abandoned": services.pipeline_recover()}


def pipeline_enqueue(run: PipelineRun, params: dict | None) -> None:
    """Hand a created run to the workers; if the broker cannot take it, the run is failed with the
    reason (visible on its page) rather than left queued for ever."""
    try:
        pipeline_execute_task.apply_async(args=[run.pk, params])
    except Exception as exc:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise  # in-process: the step's own error is already recorded on the run
        log.exception("pipeline run %s could not be queued", run.pk)
        PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED,
            error=f"Could not be queued: {type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
