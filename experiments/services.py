"""The verbs of experiments: start, stop, promote the winner; enrol customers and compute each variant's
suggestions (the pipeline's "experiments" step); take the daily look.

An experiment's life (docs/experiments.md, "Running an experiment"):

1. an operator defines it (variants = recommender configurations with traffic shares, population,
   primary metric, guard-rails, smallest lift worth detecting) and starts it: it becomes the running
   experiment (one at a time) and a pipeline run of the "experiments" step is queued;
2. the step computes each variant's suggestions on its own run channel (the model learns from every
   customer; lists are written for the variant's customers only), switched in like any run, then
   records the new customers' assignments (the hash decides: `stats.assign` with the experiment's
   salt, the shop's holdout kept out). From then on the API serves them their variant's list
   (routing.py), and impressions reported by the shop record the variant;
3. every nightly pipeline run recomputes the variants and enrols new customers; a look is taken
   every day (tasks.experiments_look), each building on the last;
4. the operator stops it, or promotes the winner the test named to the default configuration
   (audited); the variants' runs are then deleted, their customers get the shop's suggestions again,
   and the assignments, impressions and looks stay for the report.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from common.bulk import bulk_insert
from pipeline.services import pipeline_start
from pipeline.steps import available_steps
from pipeline.tasks import pipeline_enqueue
from profiles.models import Customer
from recommendations import services as recommendation_services
from segments.models import Membership

from . import routing, selectors, stats
from .models import Assignment, Experiment, ExperimentsAuditAction, ExperimentStatus, Look, Metric, Variant

log = logging.getLogger(__name__)

HOLDOUT_SALT = "experiments-holdout"


class ExperimentError(ValueError):
    """An action the experiment's state or definition does not allow; the message says why."""


# ---------------------------------------------------------------------------------------------- checks
def experiment_problems(experiment: Experiment, variants: list[Variant] | None = None) -> list[str]:
    """What stops the experiment from starting, in an operator's words (empty: it can start)."""
    variants = list(experiment.variants.all()) if variants is None else variants
    problems = []
    if len(variants) < 2:
        problems.append("An experiment needs at least two variants: the control (A) and one to compare with it.")
    total = sum(v.share for v in variants)
    if variants and abs(total - 100.0) > 1e-6:
        problems.append(f"The variants' shares add up to {total:g}%, not 100%.")
    positions = sorted(v.position for v in variants)
    if positions != list(range(len(variants))):
        problems.append("The variants must be numbered A, B, C, ... without gaps.")
    if "experiments" not in available_steps():
        problems.append(
            "The pipeline has no experiments step (settings.PIPELINE_STEPS): nothing would compute the variants'"
            " suggestions. Add experiments.steps.experiments to it."
        )
    unknown = [m for m in experiment.guardrail_metrics or [] if m not in Metric.values]
    if unknown:
        problems.append(f"Unknown guard-rail metric(s): {', '.join(map(str, unknown))}.")
    if experiment.primary_metric in (experiment.guardrail_metrics or []):
        problems.append("The primary metric cannot also be a guard-rail.")
    if experiment.population_id and not experiment.population.active:
        problems.append(f"The population segment “{experiment.population}” is not active.")
    return problems


# ---------------------------------------------------------------------------------------------- start, stop
def experiment_start(
    experiment: Experiment, *, request=None, source: str = "admin", user=None, now: datetime | None = None
):
    """Start a draft experiment and queue the pipeline run that computes its variants' suggestions.

    Returns the queued pipeline run (its enqueuing happens when the transaction commits). Raises
    ExperimentError naming what is wrong (a definition problem, another experiment running)."""
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status != ExperimentStatus.DRAFT:
            raise ExperimentError(f"“{locked}” is {locked.get_status_display().lower()}; only a draft can start.")
        problems = experiment_problems(locked)
        if problems:
            raise ExperimentError(" ".join(problems))
        other = Experiment.objects.filter(status=ExperimentStatus.RUNNING).exclude(pk=locked.pk).first()
        if other is not None:
            raise ExperimentError(
                f"“{other}” is running; stop it first (two experiments on the same suggestions would "
                "change what each other measures)."
            )
        now = now or timezone.now()
        plan = selectors.experiment_plan(locked, now=now)
        if plan["mde"] is None:
            raise ExperimentError(plan["problem"] or "The lift worth detecting cannot be set without a baseline.")
        # the harm worth catching on each guard-rail, fixed now as the primary's lift is (stats.tau_for)
        plan["guardrail_mdes"] = {}
        for name in locked.guardrail_metrics or []:
            value = selectors.baseline(locked, metric=name, now=now)["value"]
            plan["guardrail_mdes"][name] = abs(value) * locked.mde_percent / 100.0 if value else None
        locked.plan = plan
        locked.status, locked.started_at = ExperimentStatus.RUNNING, now
        try:
            with transaction.atomic():
                locked.save(update_fields=["status", "started_at", "plan", "updated_at"])
        except IntegrityError:
            raise ExperimentError("Another experiment started at the same moment; stop it first.") from None
        audit_record(
            action=ExperimentsAuditAction.EXPERIMENT_STARTED,
            request=request,
            target=locked,
            target_label=locked.name[:200],
            changes={"variants": [str(v) for v in locked.variants.select_related("config")]},
            source=source,
        )
        run = pipeline_start(trigger=source[:16], steps=["experiments"], user=user or getattr(request, "user", None))
        transaction.on_commit(lambda: pipeline_enqueue(run, run.step_params))
        transaction.on_commit(routing.forget_running)
    experiment.refresh_from_db()
    return run


def experiment_stop(
    experiment: Experiment, *, request=None, source: str = "admin", now: datetime | None = None, note: str = ""
) -> Look | None:
    """Stop a running experiment: a last look is taken (and kept), its outcome recorded, and its
    variants' suggestions are taken out of service (their customers get the shop's own again)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status != ExperimentStatus.RUNNING:
            raise ExperimentError(f"“{locked}” is {locked.get_status_display().lower()}; only a running one stops.")
        look = look_take(locked, now=now)
        locked.status, locked.stopped_at = ExperimentStatus.STOPPED, now
        locked.winner_id = look.winner_id if look else None
        locked.outcome = (
            selectors.verdict_words(look, final=True) if look else "Stopped before any customer was shown a variant."
        )[:300]
        locked.save(update_fields=["status", "stopped_at", "winner", "outcome", "updated_at"])
        audit_record(
            action=ExperimentsAuditAction.EXPERIMENT_STOPPED,
            request=request,
            target=locked,
            target_label=locked.name[:200],
            changes={"outcome": locked.outcome, **({"note": note} if note else {})},
            source=source,
        )
        channels = [v.channel for v in locked.variants.all()]
        transaction.on_commit(routing.forget_running)
    for channel in channels:
        recommendation_services.recommender_channel_close(channel)
    experiment.refresh_from_db()
    return look


def experiment_promote(experiment: Experiment, *, request=None, source: str = "admin") -> Variant:
    """Make the winner the test named the default recommender configuration, in one action (audited),
    and stop the experiment if it still runs. Refused when the test named no winner."""
    if experiment.status == ExperimentStatus.RUNNING:
        look = experiment_stop(experiment, request=request, source=source, note="stopped to promote the winner")
        winner = look.winner if look else None
    else:
        winner = experiment.winner
    if winner is None:
        raise ExperimentError(
            f"“{experiment}” has no winner: the test has not shown that one variant is better, so nothing is promoted."
        )
    changed = recommendation_services.config_make_default(winner.config, request=request, source=source)
    audit_record(
        action=ExperimentsAuditAction.EXPERIMENT_PROMOTED,
        request=request,
        target=experiment,
        target_label=experiment.name[:200],
        changes={"winner": str(winner), "configuration": winner.config.name, "was already the default": not changed},
        source=source,
    )
    return winner


# ---------------------------------------------------------------------------------------------- enrolment
def population_ids(experiment: Experiment) -> np.ndarray:
    """The customers who may take part (sorted ids): the population segment's members, or everyone."""
    if experiment.population_id:
        qs = Membership.objects.filter(segment_id=experiment.population_id).values_list("customer_id", flat=True)
    else:
        qs = Customer.objects.values_list("pk", flat=True)
    return np.unique(np.fromiter(qs.iterator(chunk_size=50_000), dtype=np.int64))


def variant_of(experiment: Experiment, customer_ids: np.ndarray, variants: list[Variant]) -> np.ndarray:
    """Each customer's variant index (position) by hashing, -1 for the shop's holdout."""
    shares = np.array([v.share for v in variants], dtype=np.float64)
    return stats.assign(
        customer_ids,
        salt=experiment.salt,
        shares=shares / shares.sum(),
        holdout=settings.EXPERIMENTS_HOLDOUT_PERCENT / 100.0,
        holdout_salt=HOLDOUT_SALT,
    )


def assignments_record(experiment: Experiment, customer_ids: np.ndarray, positions: np.ndarray, variants, *, now):
    """Record the assignments of customers not yet enrolled (bulk); returns how many were new."""
    known = np.fromiter(
        Assignment.objects.filter(experiment=experiment).values_list("customer_id", flat=True).iterator(50_000),
        dtype=np.int64,
    )
    fresh = (positions >= 0) & ~np.isin(customer_ids, known)
    if not fresh.any():
        return 0
    variant_ids = np.array([v.pk for v in variants], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "experiment_id": experiment.pk,
            "customer_id": customer_ids[fresh],
            "variant_id": variant_ids[positions[fresh]],
            "assigned_at": pd.Timestamp(now),
        }
    )
    with transaction.atomic():
        return bulk_insert(Assignment, frame)


def experiments_compute(*, step=None, progress=None, now: datetime | None = None) -> dict:
    """The pipeline's "experiments" step: for the running experiment, each variant's suggestions on its
    own channel, then the new customers' assignments. Nothing to do when no experiment runs."""
    progress = progress or (lambda fraction, message="": None)
    now = now or timezone.now()
    experiment = Experiment.objects.filter(status=ExperimentStatus.RUNNING).select_related("population").first()
    if experiment is None:
        progress(1.0, "no experiment is running")
        return {"experiment": None, "_status": "skipped"}
    variants = list(experiment.variants.select_related("config").order_by("position"))
    ids = population_ids(experiment)
    positions = variant_of(experiment, ids, variants)
    figures = {"experiment": experiment.pk, "population": len(ids), "customers_held_out": int((positions < 0).sum())}
    runs = {}
    for variant in variants:
        part = ids[positions == variant.position]
        base = variant.position / len(variants)

        def sub(fraction, message="", base=base, variant=variant):
            progress(base + fraction * 0.95 / len(variants), f"variant {variant.letter}: {message}")

        result = recommendation_services.recommendations_compute(
            step=step,
            progress=sub,
            now=now,
            config=variant.config.name,
            channel=variant.channel,
            customer_ids=part,
        )
        runs[variant.letter] = {
            "configuration": variant.config.name,
            "customers": len(part),
            "run": result["run"],
            "suggestions": result["sizes"].get("recommendations", 0),
        }
    progress(0.97, "recording assignments")
    figures["variants"] = runs
    figures["newly_assigned"] = assignments_record(experiment, ids, positions, variants, now=now)
    progress(1.0, f"{figures['newly_assigned']:,} customers newly enrolled in “{experiment}”")
    return figures


# ---------------------------------------------------------------------------------------------- looks
def look_take(experiment: Experiment, *, now: datetime | None = None) -> Look | None:
    """Analyse the experiment as of `now` and keep it as the day's look (a second look the same day
    replaces the first, building on the day before). None while no customer was exposed."""
    now = now or timezone.now()
    day = timezone.localdate(now)
    previous = experiment.looks.filter(day__lt=day).order_by("-day").first()
    report = selectors.experiment_analysis(experiment, now=now, previous=previous)
    if report is None:
        return None
    winner_id = report["winner_id"]
    look, _ = Look.objects.update_or_create(
        experiment=experiment,
        day=day,
        defaults={"taken_at": now, "verdict": report["verdict"], "winner_id": winner_id, "analysis": report["stored"]},
    )
    return look


def looks_take(*, now: datetime | None = None) -> int:
    """Today's look at every running experiment (beat: experiments.tasks.experiments_look)."""
    taken = 0
    for experiment in Experiment.objects.filter(status=ExperimentStatus.RUNNING):
        if look_take(experiment, now=now) is not None:
            taken += 1
    return taken
