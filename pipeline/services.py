"""
The recomputation pipeline: named steps run in order under one lease, each recorded.

The steps are the ones settings.PIPELINE_STEPS lists, in that order; each app declares its own in
its `steps.py` (pipeline/steps.py describes a step), so this app never imports a later one.
Following a run: `pipeline_execute` -> `step_run` -> the Step object -> its implementation for the
backend in use -> the app's service (e.g. `segments.services.segments_compute`). A run is started
by `pipeline_start`, whoever starts it (the admin, the `recompute` command, Celery beat).

Every step's record (PipelineStep) keeps status, progress while running, counts, duration and
the error, so operators see what each recomputation did. A lease (a row with an expiry) keeps two
pipelines from overlapping on any number of workers. While a pipeline runs, a heartbeat thread
renews the lease every third of its lifetime (on SQLite, the single-process demo, the steps'
progress reports renew it), so a step that reports no progress for a long time keeps it, and a
holder that died (a killed worker) lets it lapse within PIPELINE_LEASE_SECONDS. The lease names
the run that holds it, so a run still recorded as running without a live lease is known to be
abandoned: the next pipeline (or `pipeline_recover`) records it as failed, with the step it died
in. What a step writes goes into service in one transaction at its end, so an abandoned step
leaves the previous result in service (docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from .models import Lease, PipelineRun, PipelineStep, RunStatus
from .steps import available_steps, backend_problem, ordered, step_named, step_params

log = logging.getLogger(__name__)

PIPELINE_LEASE = "pipeline"
ABANDONED = (
    "the worker running it stopped (killed, out of memory, past its hard time limit, or lost) and its lease lapsed."
)


def lease_seconds() -> int:
    """PIPELINE_LEASE_SECONDS (a test worker sets it through the environment)."""
    return max(1, int(settings.PIPELINE_LEASE_SECONDS))


class PipelineBusy(Exception):
    """Another pipeline run holds the lease."""


class BackendUnavailable(Exception):
    """The compute backend in use (PIPELINE_BACKEND) cannot run here; the message says why."""


class Progress:
    """What a step calls to report progress: recorded on its PipelineStep (throttled) and passed to a listener.

    With `lease` set (no heartbeat thread, i.e. SQLite), each recorded report also renews the lease.
    """

    def __init__(
        self, step: PipelineStep, listener: Callable[[str, float, str], None] | None = None, lease: Lease | None = None
    ):
        self.step = step
        self.listener = listener
        self.lease = lease
        self._last_save = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = max(0.0, min(1.0, float(fraction)))
        if self.listener:
            self.listener(self.step.name, fraction, message)
        now = time.monotonic()
        if now - self._last_save >= 1.0 or fraction >= 1.0:
            self._last_save = now
            PipelineStep.objects.filter(pk=self.step.pk).update(progress=fraction, message=message[:300])
            if self.lease is not None:
                renew_lease(self.lease)


# --- the lease ---------------------------------------------------------------------------------


def _holder(run_id: int | None = None) -> str:
    tag = f" run={run_id}" if run_id is not None else ""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}{tag}"


def _run_of_holder(holder: str) -> int | None:
    match = re.search(r" run=(\d+)$", holder or "")
    return int(match.group(1)) if match else None


def acquire_lease(name: str = PIPELINE_LEASE, *, seconds: int | None = None, run_id: int | None = None) -> Lease | None:
    """Take the named lease if it is free or has lapsed; None if someone else holds it.

    `run_id` is written into the holder, so a run recorded as running can be told from one whose
    worker died (see `pipeline_recover`).
    """
    now = timezone.now()
    holder = _holder(run_id)
    expires = now + timedelta(seconds=seconds or lease_seconds())
    # An UPDATE of a lapsed lease and an INSERT of a missing one are both atomic in the database,
    # so of two racing workers exactly one wins.
    taken = Lease.objects.filter(name=name, expires_at__lt=now).update(holder=holder, expires_at=expires)
    if not taken:
        try:
            with transaction.atomic():
                Lease.objects.create(name=name, holder=holder, expires_at=expires)
        except IntegrityError:
            return None
    return Lease.objects.get(name=name, holder=holder)


def renew_lease(lease: Lease, *, seconds: int | None = None) -> int:
    """Push the lease's expiry forward; 0 if it is no longer ours (it lapsed and someone took it)."""
    return Lease.objects.filter(pk=lease.pk, holder=lease.holder).update(
        expires_at=timezone.now() + timedelta(seconds=seconds or lease_seconds())
    )


def release_lease(lease: Lease) -> None:
    Lease.objects.filter(pk=lease.pk, holder=lease.holder).delete()


class _Heartbeat(threading.Thread):
    """Renews a lease every third of its lifetime on a connection of its own, until stopped.

    A missed beat (the database briefly unreachable) is logged and tried again at the next one;
    the lease outlives two misses.
    """

    def __init__(self, lease: Lease, seconds: int):
        super().__init__(name=f"lease-heartbeat-{lease.name}", daemon=True)
        self.lease, self.seconds = lease, seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(max(self.seconds / 3.0, 0.2)):
                try:
                    if not renew_lease(self.lease, seconds=self.seconds):
                        log.error("lease %s was lost: it lapsed and another holder took it", self.lease.name)
                        return
                except Exception:
                    log.warning("could not renew lease %s; trying again", self.lease.name, exc_info=True)
                    connection.close()  # reconnect at the next beat
        finally:
            connections.close_all()  # this thread's connections only

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def _start_heartbeat(lease: Lease) -> _Heartbeat | None:
    # Inside an outer transaction (a test) the lease row is not committed: nothing to renew from
    # another connection, and its UPDATE could wait on this one. SQLite renews through progress.
    if connection.vendor == "sqlite" or connection.in_atomic_block:
        return None
    beat = _Heartbeat(lease, lease_seconds())
    beat.start()
    return beat


# --- recording failures ----------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    try:
        from celery.exceptions import SoftTimeLimitExceeded
    except ImportError:  # pragma: no cover - celery is a dependency
        SoftTimeLimitExceeded = ()
    if isinstance(exc, SoftTimeLimitExceeded):
        head = "SoftTimeLimitExceeded: the task's time limit was reached; the step was stopped."
    else:
        head = f"{type(exc).__name__}: {exc}"
    return f"{head}\n\n{traceback.format_exc()}"[-20000:]


def _append(previous: str, note: str) -> str:
    return f"{previous}\n{note}" if previous else note


def abandoned_runs() -> list[int]:
    """Ids of runs recorded as running whose lease is not live: their worker died."""
    running = list(PipelineRun.objects.filter(status=RunStatus.RUNNING).values_list("pk", flat=True))
    if not running:
        return []
    # Read after the running runs: a run becomes running only once it holds the lease, so one that
    # is alive at this point holds a live lease naming it.
    live = (
        Lease.objects.filter(name=PIPELINE_LEASE, expires_at__gte=timezone.now())
        .values_list("holder", flat=True)
        .first()
    )
    if live is None:
        return running
    holder_run = _run_of_holder(live)
    if holder_run is None:
        return []  # held by someone who does not say which run: leave everything as it is
    return [pk for pk in running if pk != holder_run]


def runs_abandon(*, run_ids: list[int], reason: str) -> int:
    """Record running runs (and their running steps) as failed with `reason`; returns how many."""
    if not run_ids:
        return 0
    now = timezone.now()
    done = 0
    for run in PipelineRun.objects.filter(pk__in=run_ids, status=RunStatus.RUNNING):
        steps = list(PipelineStep.objects.filter(pipeline=run, status=RunStatus.RUNNING))
        where = f" during step {', '.join(s.name for s in steps)}" if steps else ""
        text = (
            f"Abandoned{where}: {reason} What the previous run wrote stayed in service; "
            f"the next run recomputes from the events."
        )
        with transaction.atomic():
            if not PipelineRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                status=RunStatus.FAILED, error=_append(run.error, text), finished_at=now
            ):
                continue  # it finished meanwhile
            for step in steps:
                PipelineStep.objects.filter(pk=step.pk, status=RunStatus.RUNNING).update(
                    status=RunStatus.FAILED,
                    error=text,
                    finished_at=now,
                    duration_s=round((now - step.started_at).total_seconds(), 3) if step.started_at else None,
                )
        for step in steps:
            spec = step_named(step.name)
            if spec is not None and spec.abandon is not None:
                try:
                    spec.abandon(step=step)
                except Exception:  # the run is recorded; what the app leaves behind is pruned later
                    log.exception("abandon hook of step %s failed", step.name)
        log.warning("pipeline run %s abandoned%s", run.pk, where)
        done += 1
    return done


def pipeline_recover() -> int:
    """Record every run whose worker died (running, without a live lease) as failed. Safe any time."""
    return runs_abandon(run_ids=abandoned_runs(), reason=ABANDONED)


# --- steps and runs --------------------------------------------------------------------------


def step_run(
    *,
    name: str,
    pipeline: PipelineRun | None = None,
    params: dict | None = None,
    listener: Callable[[str, float, str], None] | None = None,
    lease: Lease | None = None,
) -> PipelineStep:
    """Run one listed step and record it. Never raises for the step's own failure: it is recorded.

    The exception of a failed step stays on the returned object as `step.exception` (not stored),
    so a caller can tell a transient failure (a dropped connection) from a bug.
    """
    spec = step_named(name)
    if spec is None:
        raise KeyError(f"step {name} is not listed in settings.PIPELINE_STEPS")
    backend = spec.backend_for(pipeline.backend if pipeline is not None else None)
    step = PipelineStep.objects.create(
        pipeline=pipeline,
        name=name,
        status=RunStatus.RUNNING,
        params=params or {},
        backend=backend,
        started_at=timezone.now(),
    )
    step.exception = None
    started = time.monotonic()
    try:
        counts = spec.run(step=step, progress=Progress(step, listener, lease), backend=backend, **(params or {})) or {}
        step.status = counts.pop("_status", RunStatus.SUCCEEDED)
        step.counts = counts
        step.progress = 1.0
    except Exception as exc:  # recorded for operators; the pipeline decides what follows
        log.exception("step %s failed", name)
        step.status = RunStatus.FAILED
        step.error = _error_text(exc)
        step.exception = exc
        # A broken connection would fail the recording too: start from a fresh one (outside a
        # transaction only; inside one, the caller's rollback owns the connection).
        if not connection.in_atomic_block and not connection.is_usable():
            connection.close()
    step.finished_at = timezone.now()
    step.duration_s = round(time.monotonic() - started, 3)
    step.save(update_fields=["status", "counts", "progress", "error", "finished_at", "duration_s"])
    return step


def pipeline_create(*, steps: list[str], trigger: str = "shell", user=None) -> PipelineRun:
    return PipelineRun.objects.create(
        steps=ordered(steps), trigger=trigger, requested_by=user, backend=settings.PIPELINE_BACKEND
    )


def pipeline_start(
    *,
    trigger: str,
    steps: list[str] | None = None,
    user=None,
    options: Mapping[str, object] | None = None,
) -> PipelineRun:
    """Create a queued run over `steps` (all listed steps when None), in pipeline order.

    `options` are parameter values by name (`{"incremental": True}`); each step of the run gets
    those it declares (pipeline/steps.py). The run carries them as `run.step_params` (not stored),
    to be handed to `pipeline_execute` or the task with the run. ValueError for an unknown step, or
    an option no step takes. The admin, `recompute` and Celery beat all start runs through here.
    BackendUnavailable, saying what is wrong, when the backend in use cannot run here (PIPELINE_BACKEND=spark
    on SQLite, or without Java): no run is created.
    """
    names = ordered(steps or available_steps())
    params = step_params(steps=names, options=options or {})
    problem = backend_problem(names)
    if problem:
        raise BackendUnavailable(problem)
    run = pipeline_create(steps=names, trigger=trigger, user=user)
    run.step_params = params or None
    return run


def pipeline_requeue(*, run: PipelineRun, note: str) -> bool:
    """Put a failed run back in the queue to be resumed (a retry after a transient error).

    Steps that already succeeded in it are not run again; the failed step's record stays with its
    error, and `note` is appended to the run's error, so operators see every attempt.
    """
    run.error = _append(run.error, note)
    taken = PipelineRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).update(
        status=RunStatus.QUEUED, error=run.error, finished_at=None
    )
    if taken:
        run.status, run.finished_at = RunStatus.QUEUED, None
    return bool(taken)


def pipeline_execute(
    *, run: PipelineRun, listener: Callable[[str, float, str], None] | None = None, step_params: dict | None = None
) -> PipelineRun:
    """Run a queued pipeline's steps in order under the lease. A failed step stops the ones after it.

    Steps that already succeeded in this run (an earlier attempt, see `pipeline_requeue`) are
    skipped. A run found not queued any more (a duplicate delivery took it) is returned as it is.
    When a step failed, the run carries its exception as `run.failed_exception` (not stored).
    """
    run.failed_exception = None
    lease = acquire_lease(run_id=run.pk)
    if lease is None:
        error = "Another pipeline run was in progress; this one did not start."
        if PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.SKIPPED, error=_append(run.error, error), finished_at=timezone.now()
        ):
            run.refresh_from_db()
        raise PipelineBusy(error)
    beat = None
    started = False
    try:
        # We hold the lease, so any other run still recorded as running has lost its worker.
        runs_abandon(
            run_ids=list(
                PipelineRun.objects.filter(status=RunStatus.RUNNING).exclude(pk=run.pk).values_list("pk", flat=True)
            ),
            reason=ABANDONED,
        )
        now = timezone.now()
        # Conditional, so of two deliveries of the same run only one executes it.
        if not PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=run.started_at or now
        ):
            run.refresh_from_db()
            return run
        started = True
        run.status, run.started_at = RunStatus.RUNNING, run.started_at or now
        beat = _start_heartbeat(lease)
        done = set(
            run.step_runs.filter(status__in=[RunStatus.SUCCEEDED, RunStatus.SKIPPED]).values_list("name", flat=True)
        )
        for name in run.steps:
            if name in done:
                continue
            step = step_run(
                name=name,
                pipeline=run,
                params=(step_params or {}).get(name),
                listener=listener,
                lease=None if beat else lease,
            )
            if step.status == RunStatus.FAILED:
                run.status = RunStatus.FAILED
                run.error = _append(
                    run.error, f"step {name} failed: {step.error.splitlines()[0] if step.error else ''}"
                )
                run.failed_exception = step.exception
                break
        else:
            run.status = RunStatus.SUCCEEDED
    except Exception as exc:
        if started:
            run.status = RunStatus.FAILED
            run.error = _append(run.error, f"{type(exc).__name__}: {exc}")
            run.failed_exception = exc
        raise
    finally:
        if beat is not None:
            beat.stop()
        try:
            if started:
                run.finished_at = timezone.now()
                run.save(update_fields=["status", "error", "finished_at"])
        finally:
            release_lease(lease)
    return run
