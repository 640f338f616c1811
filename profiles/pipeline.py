"""
The recomputation pipeline: named steps run in order under one lease, each recorded.

Steps register themselves from their own app (`segments` registers "segments" in its
AppConfig.ready), so this module, upstream of everything, never imports a later app. A step is a
callable `step(*, step: PipelineStep, progress: Progress) -> dict` that returns the counts it
wants recorded; it raises to fail.

Every step's record (PipelineStep) keeps status, progress while running, counts, duration and
the error, so operators see what each recomputation did. A lease (a row with an expiry, renewed
while the pipeline runs) keeps two pipelines from overlapping on any number of workers; a holder
that died lets its lease lapse.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Lease, PipelineRun, PipelineStep, StepStatus

log = logging.getLogger(__name__)

PIPELINE_LEASE = "pipeline"
LEASE_SECONDS = 15 * 60


@dataclass(frozen=True)
class StepSpec:
    name: str
    order: int
    func: Callable[..., dict]
    description: str = ""


_STEPS: dict[str, StepSpec] = {}


def register_step(name: str, func: Callable[..., dict], *, order: int, description: str = "") -> None:
    _STEPS[name] = StepSpec(name=name, order=order, func=func, description=description)


def available_steps() -> list[str]:
    return [s.name for s in sorted(_STEPS.values(), key=lambda s: s.order)]


def ordered(steps: list[str]) -> list[str]:
    unknown = [s for s in steps if s not in _STEPS]
    if unknown:
        raise ValueError(f"unknown step(s): {', '.join(unknown)} (available: {', '.join(available_steps())})")
    return sorted(dict.fromkeys(steps), key=lambda s: _STEPS[s].order)


class PipelineBusy(Exception):
    """Another pipeline run holds the lease."""


class Progress:
    """What a step calls to report progress: recorded on its PipelineStep (throttled) and passed to a listener."""

    def __init__(self, step: PipelineStep, listener: Callable[[str, float, str], None] | None = None, lease: Lease | None = None):
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


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(name: str = PIPELINE_LEASE, *, seconds: int = LEASE_SECONDS) -> Lease | None:
    """Take the named lease if it is free or has lapsed; None if someone else holds it."""
    now = timezone.now()
    holder = _holder()
    expires = now + timedelta(seconds=seconds)
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


def renew_lease(lease: Lease, *, seconds: int = LEASE_SECONDS) -> None:
    Lease.objects.filter(pk=lease.pk, holder=lease.holder).update(expires_at=timezone.now() + timedelta(seconds=seconds))


def release_lease(lease: Lease) -> None:
    Lease.objects.filter(pk=lease.pk, holder=lease.holder).delete()


def step_run(
    *, name: str, pipeline: PipelineRun | None = None, params: dict | None = None,
    listener: Callable[[str, float, str], None] | None = None, lease: Lease | None = None,
) -> PipelineStep:
    """Run one registered step and record it. Never raises for the step's own failure: it is recorded."""
    spec = _STEPS[name]
    step = PipelineStep.objects.create(
        pipeline=pipeline, name=name, status=StepStatus.RUNNING, params=params or {}, started_at=timezone.now()
    )
    started = time.monotonic()
    try:
        counts = spec.func(step=step, progress=Progress(step, listener, lease), **(params or {})) or {}
        step.status = counts.pop("_status", StepStatus.SUCCEEDED)
        step.counts = counts
        step.progress = 1.0
    except Exception as exc:  # recorded for operators; the pipeline decides what follows
        log.exception("step %s failed", name)
        step.status = StepStatus.FAILED
        step.error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"[-20000:]
    step.finished_at = timezone.now()
    step.duration_s = round(time.monotonic() - started, 3)
    step.save(update_fields=["status", "counts", "progress", "error", "finished_at", "duration_s"])
    return step


def pipeline_create(*, steps: list[str], trigger: str = "shell", user=None) -> PipelineRun:
    return PipelineRun.objects.create(steps=ordered(steps), trigger=trigger, requested_by=user)


def pipeline_execute(
    *, run: PipelineRun, listener: Callable[[str, float, str], None] | None = None, step_params: dict | None = None
) -> PipelineRun:
    """Run a created pipeline's steps in order under the lease. A failed step stops the ones after it."""
    lease = acquire_lease()
    if lease is None:
        run.status = StepStatus.SKIPPED
        run.error = "Another pipeline run was in progress; this one did not start."
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise PipelineBusy(run.error)
    try:
        run.status = StepStatus.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["status", "started_at"])
        for name in run.steps:
            step = step_run(name=name, pipeline=run, params=(step_params or {}).get(name), listener=listener, lease=lease)
            if step.status == StepStatus.FAILED:
                run.status = StepStatus.FAILED
                run.error = f"step {name} failed: {step.error.splitlines()[0] if step.error else ''}"
                break
        else:
            run.status = StepStatus.SUCCEEDED
    except Exception as exc:
        run.status = StepStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        release_lease(lease)
    return run
