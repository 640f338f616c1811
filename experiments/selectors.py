"""Reads of experiments: attribution of clicks and purchases to impressions, the per-variant metrics,
the analysis of a look, the plan (sample size and duration), the report, a customer's variants.

Attribution (docs/experiments.md, "Attribution"): a click or purchase of an item counts for the
latest impression of that same item to that same customer at most `attribution_days` before it
(pandas' merge_asof by customer and item, vectorised). The unit is the customer: every metric is
built from one row per exposed customer (a customer of the experiment with at least one impression
from their variant's list), so the statistics of `stats.py` apply.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from common.bulk import read_frame
from profiles.models import Customer, Event
from recommendations.models import Impression
from segments.models import Membership

from . import stats
from .models import Assignment, Experiment, ExperimentStatus, Look, Metric, Variant

#: How each metric is summarised: the per-customer column, and the denominator for a ratio.
METRIC_COLUMNS = {
    Metric.CLICK_THROUGH: ("clicks", "impressions"),
    Metric.CONVERSION: ("converted", None),
    Metric.REVENUE: ("revenue", None),
}
METRIC_KIND = {Metric.CLICK_THROUGH: "ratio", Metric.CONVERSION: "proportion", Metric.REVENUE: "mean"}
METRIC_UNIT = {Metric.CLICK_THROUGH: "percent", Metric.CONVERSION: "percent", Metric.REVENUE: "money"}
BASELINE_DAYS = 28
CUSTOMER_CHUNK = 200_000  # customers per read: bounded memory on large shops
FRAME_COLUMNS = ["customer_id", "impressions", "clicks", "converted", "revenue"]


# ---------------------------------------------------------------------------------------------- attribution
def _attributed(impressions: pd.DataFrame, events: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """Per customer with impressions: impressions, attributed clicks, converted (0/1), attributed revenue."""
    per = impressions.groupby("customer_id").size().rename("impressions").to_frame()
    if events.empty:
        attributed = events.iloc[0:0]
    else:
        left = events.sort_values("occurred_at", kind="stable")
        right = impressions[["customer_id", "item_id", "shown_at"]].sort_values("shown_at", kind="stable")
        joined = pd.merge_asof(
            left,
            right,
            left_on="occurred_at",
            right_on="shown_at",
            by=["customer_id", "item_id"],
            direction="backward",
            tolerance=pd.Timedelta(window),
        )
        attributed = joined[joined["shown_at"].notna()]
    clicks_types = set(settings.EXPERIMENTS_CLICK_EVENT_TYPES)
    buy_types = set(settings.EXPERIMENTS_PURCHASE_EVENT_TYPES)
    clicks = attributed[attributed["type"].isin(clicks_types)].groupby("customer_id").size()
    buys = attributed[attributed["type"].isin(buy_types)]
    revenue = buys.groupby("customer_id")["amount"].sum()
    per["clicks"] = clicks.reindex(per.index, fill_value=0).astype(np.float64)
    per["converted"] = (buys.groupby("customer_id").size().reindex(per.index, fill_value=0) > 0).astype(np.float64)
    per["revenue"] = revenue.reindex(per.index, fill_value=0.0).astype(np.float64)
    per["impressions"] = per["impressions"].astype(np.float64)
    return per.reset_index()


def customer_metrics(
    *, channels: list[str], start: datetime, end: datetime, window_days: int, customer_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per customer shown suggestions from `channels` in [start, end): impressions, attributed
    clicks, converted, attributed revenue (events up to `window_days` after `end` may count while
    `end` is in the past, so a stopped experiment's last impressions get their full window)."""
    window = timedelta(days=window_days)
    imp = Impression.objects.filter(channel__in=channels, shown_at__gte=start, shown_at__lt=end)
    bounds = imp.order_by().values_list("customer_id", flat=True)
    lo, hi = bounds.order_by("customer_id").first(), bounds.order_by("-customer_id").first()
    if lo is None:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in FRAME_COLUMNS})
    frames = []
    event_types = list(settings.EXPERIMENTS_CLICK_EVENT_TYPES) + list(settings.EXPERIMENTS_PURCHASE_EVENT_TYPES)
    for first in range(lo, hi + 1, CUSTOMER_CHUNK):
        last = first + CUSTOMER_CHUNK
        impressions = read_frame(
            imp.filter(customer_id__gte=first, customer_id__lt=last),
            ["customer_id", "item_id", "shown_at"],
            parse_dates=("shown_at",),
        )
        if impressions.empty:
            continue
        if customer_ids is not None:
            impressions = impressions[impressions["customer_id"].isin(customer_ids)]
        events = read_frame(
            Event.objects.filter(
                customer_id__gte=first,
                customer_id__lt=last,
                type__in=event_types,
                item__isnull=False,
                occurred_at__gte=start,
                occurred_at__lt=end + window,
            ),
            ["customer_id", "item_id", "type", "occurred_at", "amount"],
            parse_dates=("occurred_at",),
        )
        events["amount"] = events["amount"].fillna(0.0)
        events["item_id"] = events["item_id"].astype(np.int64)
        frames.append(_attributed(impressions, events, window))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in FRAME_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def exposure_frame(experiment: Experiment, *, now: datetime | None = None) -> pd.DataFrame:
    """The experiment's exposed customers with their variant position and metrics."""
    now = now or timezone.now()
    variants = list(experiment.variants.order_by("position"))
    if experiment.started_at is None or not variants:
        return pd.DataFrame(columns=[*FRAME_COLUMNS, "position"])
    end = min(experiment.stopped_at or now, now)
    frame = customer_metrics(
        channels=[v.channel for v in variants],
        start=experiment.started_at,
        end=end,
        window_days=experiment.attribution_days,
    )
    assigned = read_frame(Assignment.objects.filter(experiment=experiment), ["customer_id", "variant_id"])
    position = {v.pk: v.position for v in variants}
    assigned["position"] = assigned["variant_id"].map(position)
    frame = frame.merge(assigned[["customer_id", "position"]], on="customer_id", how="inner")
    frame["position"] = frame["position"].astype(np.int64)
    return frame


def estimates(frame: pd.DataFrame, metric: str, n_variants: int) -> list[stats.Estimate]:
    column, denominator = METRIC_COLUMNS[Metric(metric)]
    variants = frame["position"].to_numpy(dtype=np.int64)
    return stats.summarize(
        variants,
        frame[column].to_numpy(dtype=np.float64),
        denominator=frame[denominator].to_numpy(dtype=np.float64) if denominator else None,
        n_variants=n_variants,
    )


# ---------------------------------------------------------------------------------------------- plan
def baseline(experiment: Experiment, *, now: datetime | None = None, metric: str | None = None) -> dict:
    """A metric (the primary one by default) as the shop's own suggestions do today (the last 28 days of
    impressions of the population, channel ""), its per-customer variance and the exposed customers a day."""
    now = now or timezone.now()
    metric = metric or experiment.primary_metric
    start = now - timedelta(days=BASELINE_DAYS)
    population = None
    if experiment.population_id:
        population = np.fromiter(
            Membership.objects.filter(segment_id=experiment.population_id).values_list("customer_id", flat=True),
            dtype=np.int64,
        )
    frame = customer_metrics(
        channels=[""],
        start=start,
        end=now,
        window_days=experiment.attribution_days,
        customer_ids=population,
    )
    n = len(frame)
    # the traffic: customers shown suggestions (from any channel) a day, over the days the shop has
    # reported impressions (at most the last 28)
    shown = Impression.objects.filter(shown_at__gte=start, shown_at__lt=now)
    if population is not None:
        shown = shown.filter(
            customer_id__in=Membership.objects.filter(segment_id=experiment.population_id).values("customer_id")
        )
    first = shown.order_by("shown_at").first()
    days = min(BASELINE_DAYS, max(1.0, (now - first.shown_at).total_seconds() / 86400)) if first else BASELINE_DAYS
    visitors = shown.order_by().values("customer_id").distinct().count() if first else 0
    out = {"customers": n, "days": round(days, 1), "daily_traffic": visitors / days, "value": None, "variance": None}
    if n >= 2:
        est = estimates(frame.assign(position=0), metric, 1)[0]
        out["value"] = _num(est.value)
        out["variance"] = _num(est.variance * est.n)  # per customer
    return out


def experiment_plan(experiment: Experiment, *, now: datetime | None = None) -> dict:
    """What the console shows before the start: the baseline, the lift in the metric's units, the
    customers needed (mSPRT with a daily look) and the days at current traffic; `problem` says in words
    why a figure is missing."""
    measured = baseline(experiment, now=now)
    holdout = settings.EXPERIMENTS_HOLDOUT_PERCENT / 100.0
    traffic = measured["daily_traffic"] * (1 - holdout)
    value = experiment.baseline if experiment.baseline is not None else measured["value"]
    plan = {
        "metric": experiment.primary_metric,
        "baseline": value,
        "baseline_measured": measured["value"],
        "baseline_customers": measured["customers"],
        "daily_traffic": round(traffic, 2),
        "variance": measured["variance"],
        "mde": None,
        "total": None,
        "per_variant": None,
        "days": None,
        "multiplier": None,
        "problem": "",
    }
    variants = list(experiment.variants.order_by("position"))
    if len(variants) < 2:
        plan["problem"] = "Add at least two variants to see the sample size."
        return plan
    if value is None or not value > 0:
        plan["problem"] = (
            "No baseline: the shop reported no impressions of its suggestions in the last 28 days "
            "(POST /api/customers/{id}/impressions/), and none was entered."
        )
        return plan
    kind = METRIC_KIND[Metric(experiment.primary_metric)]
    mde = value * experiment.mde_percent / 100.0
    plan["mde"] = mde
    variance = measured["variance"]
    if kind != "proportion" and not (variance and variance > 0):
        plan["problem"] = "The metric's spread is unknown (not enough customers with impressions in the last 28 days)."
        return plan
    shares = np.array([v.share for v in variants], dtype=np.float64)
    try:
        if traffic > 0:
            result, days = stats.plan_experiment(
                daily_traffic=traffic,
                baseline=value,
                mde=mde,
                alpha=experiment.alpha,
                power=experiment.power,
                shares=tuple(shares / shares.sum()),
                kind=kind,
                variance=variance,
            )
            plan["days"] = days
        else:
            result = stats.sample_size(
                baseline=value,
                mde=mde,
                alpha=experiment.alpha,
                power=experiment.power,
                shares=tuple(shares / shares.sum()),
                kind=kind,
                variance=variance,
            )
            plan["problem"] = "No customers were shown suggestions in the last 28 days: the duration is unknown."
    except ValueError as exc:
        plan["problem"] = str(exc)
        return plan
    plan.update(total=result.total, per_variant=list(result.per_variant), multiplier=round(result.multiplier, 3))
    return plan


# ---------------------------------------------------------------------------------------------- analysis
def _num(x):
    """A float for JSON (NaN and infinities as None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def _comparison_json(c: stats.Comparison, letter: str) -> dict:
    control = float(c.control.value)
    return {
        "variant": letter,
        "difference": _num(c.difference),
        "relative": _num(c.difference / control) if control else None,
        "always_valid_ci": [_num(c.always_valid_ci[0]), _num(c.always_valid_ci[1])],
        "always_valid_p": _num(c.always_valid_p),
        "fixed_ci": [_num(c.fixed_ci[0]), _num(c.fixed_ci[1])],
        "fixed_p": _num(c.fixed_p),
        "significant": bool(c.significant),
    }


def _previous(look: Look | None):
    """A stored look as `stats.analyze`'s `previous` (only the running minimum and intersection are used)."""
    if look is None or not look.analysis.get("comparisons"):
        return None

    def comps(rows):
        return [
            SimpleNamespace(
                always_valid_p=_nan(r["always_valid_p"]),
                always_valid_ci=(_nan(r["always_valid_ci"][0]), _nan(r["always_valid_ci"][1])),
            )
            for r in rows
        ]

    guards = {name: comps(rows) for name, rows in look.analysis.get("guardrails", {}).items()}
    return SimpleNamespace(primary=comps(look.analysis["comparisons"]), guardrails=guards)


def experiment_analysis(experiment: Experiment, *, now: datetime | None = None, previous: Look | None = None):
    """The analysis of the experiment as of `now` (building on `previous`), or None before any exposure.

    Returns {"verdict", "winner_id", "stored"}: `stored` is the JSON a Look keeps and the report shows.
    """
    variants = list(experiment.variants.select_related("config").order_by("position"))
    frame = exposure_frame(experiment, now=now)
    if frame.empty or len(variants) < 2:
        return None
    k = len(variants)
    plan = experiment.plan or {}
    primary = estimates(frame, experiment.primary_metric, k)
    control_value = primary[0].value
    mde = plan.get("mde") or (abs(control_value) * experiment.mde_percent / 100.0 if control_value else None)
    if not mde or not math.isfinite(mde):
        mde = 1e-3  # no baseline yet: the first look fixes nothing, the plan's mde decides from the start
    guard_mdes = plan.get("guardrail_mdes") or {}
    guardrails = {}
    for name in experiment.guardrail_metrics or []:
        g_est = estimates(frame, name, k)
        g_mde = guard_mdes.get(name) or (abs(g_est[0].value) * experiment.mde_percent / 100.0) or 1e-3
        if not math.isfinite(g_mde) or g_mde <= 0:
            g_mde = 1e-3
        guardrails[name] = stats.GuardRail(estimates=g_est, mde=g_mde, higher_is_better=True)
    shares = np.array([v.share for v in variants], dtype=np.float64)
    result = stats.analyze(
        primary,
        mde=mde,
        alpha=experiment.alpha,
        power=experiment.power,
        guardrails=guardrails,
        shares=tuple(shares / shares.sum()),
        previous=_previous(previous),
    )
    sums = frame.groupby("position")[["impressions", "clicks", "converted", "revenue"]].sum()
    rows = []
    for v, est in zip(variants, primary, strict=True):
        lo, hi = est.ci(experiment.alpha)
        total = sums.loc[v.position] if v.position in sums.index else None
        rows.append(
            {
                "letter": v.letter,
                "configuration": v.config.name,
                "share": v.share,
                "customers": int(est.n),
                "value": _num(est.value),
                "ci": [_num(lo), _num(hi)],
                "impressions": int(total["impressions"]) if total is not None else 0,
                "clicks": int(total["clicks"]) if total is not None else 0,
                "conversions": int(total["converted"]) if total is not None else 0,
                "revenue": round(float(total["revenue"]), 2) if total is not None else 0.0,
            }
        )
    winner = variants[result.winner] if result.winner is not None else None
    stored = {
        "metric": experiment.primary_metric,
        "mde": _num(mde),
        "alpha": experiment.alpha,
        "variants": rows,
        "comparisons": [_comparison_json(c, variants[i].letter) for i, c in enumerate(result.primary, start=1)],
        "guardrails": {
            name: [_comparison_json(c, variants[i].letter) for i, c in enumerate(comps, start=1)]
            for name, comps in result.guardrails.items()
        },
        "srm": {k_: (_num(v_) if isinstance(v_, float) else v_) for k_, v_ in (result.srm or {}).items()},
        "verdict": result.verdict,
        "reasons": result.reasons,
        "winner": winner.letter if winner else None,
    }
    return {"verdict": result.verdict, "winner_id": winner.pk if winner else None, "stored": stored}


VERDICT_WORDS = {
    stats.SAMPLE_RATIO_MISMATCH: "The split of customers does not match the declared shares: the assignment is "
    "broken and the results cannot be trusted.",
    stats.GUARDRAIL_HARM: "A variant does harm on a guard-rail metric: no winner is called.",
    stats.B_BETTER: "{winner} is better than the control, and the test is sure of it.",
    stats.A_BETTER: "The control (A) is better than every other variant, and the test is sure of it.",
    stats.NO_DIFFERENCE_YET: "No difference found yet: keep it running, or stop it if the plan's sample is reached.",
}


FINAL_WORDS = {
    stats.NO_DIFFERENCE_YET: "No difference was found: any difference is likely smaller than the lift worth detecting.",
}


def verdict_words(look: Look | dict | None, *, final: bool = False) -> str:
    """The verdict in an operator's words; `final` for a stopped experiment (nothing left to wait for)."""
    if look is None:
        return "No customer has been shown a variant's suggestions yet."
    analysis = look.analysis if isinstance(look, Look) else look
    verdict = analysis.get("verdict")
    text = (final and FINAL_WORDS.get(verdict)) or VERDICT_WORDS.get(verdict, verdict or "")
    winner = analysis.get("winner")
    if winner:
        config = next((r["configuration"] for r in analysis["variants"] if r["letter"] == winner), "")
        text = text.format(winner=f"{winner} ({config})")
    return text


def experiment_report(experiment: Experiment, *, now: datetime | None = None) -> dict:
    """The report the console draws and the API returns: the latest analysis (as of now while it runs,
    else the last look), the looks so far, and the plan fixed at the start."""
    now = now or timezone.now()
    looks = list(experiment.looks.order_by("day"))
    if experiment.status == ExperimentStatus.RUNNING:
        today = timezone.localdate(now)
        previous = next((look for look in reversed(looks) if look.day < today), None)
        fresh = experiment_analysis(experiment, now=now, previous=previous)
        current = fresh["stored"] if fresh else None
    else:
        current = looks[-1].analysis if looks else None
    return {
        "id": experiment.pk,
        "name": experiment.name,
        "status": experiment.status,
        "primary_metric": experiment.primary_metric,
        "guardrail_metrics": list(experiment.guardrail_metrics or []),
        "started_at": experiment.started_at,
        "stopped_at": experiment.stopped_at,
        "days_running": (
            ((experiment.stopped_at or now) - experiment.started_at).total_seconds() / 86400
            if experiment.started_at
            else None
        ),
        "plan": experiment.plan or None,
        "analysis": current,
        "verdict": verdict_words(current, final=experiment.status == ExperimentStatus.STOPPED),
        "winner": (current or {}).get("winner"),
        "outcome": experiment.outcome,
        "looks": [
            {
                "day": look.day,
                "verdict": look.verdict,
                "winner": look.analysis.get("winner"),
                "comparisons": look.analysis.get("comparisons", []),
            }
            for look in looks
        ],
    }


def customer_experiments(external_id: str) -> list[dict] | None:
    """The experiments a customer is (or was) in, with their variant; None for an unknown customer."""
    customer = Customer.objects.filter(external_id=external_id).only("pk").first()
    if customer is None:
        return None
    rows = (
        Assignment.objects.filter(customer=customer)
        .select_related("experiment", "variant__config")
        .order_by("-assigned_at")
    )
    return [
        {
            "experiment": a.experiment_id,
            "name": a.experiment.name,
            "status": a.experiment.status,
            "variant": a.variant.letter,
            "configuration": a.variant.config.name,
            "channel": a.variant.channel,
            "assigned_at": a.assigned_at,
        }
        for a in rows
    ]


def variant_by_channel(channel: str) -> Variant | None:
    if not channel.startswith("experiment-"):
        return None
    try:
        _, experiment_id, variant_id = channel.split("-")
        return Variant.objects.filter(pk=int(variant_id), experiment_id=int(experiment_id)).first()
    except ValueError:
        return None
