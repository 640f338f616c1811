"""The operator dashboard: the state of the platform at a glance, linked from the admin index.

Every figure comes from what the recomputation steps stored (their counts, runs and segment
sizes) or from an indexed range count, so the page stays fast on a database of millions of
customers and tens of millions of events: nothing here scans a whole table. Figures are written
through common/display.py (percentages, rounded numbers), and the model-quality figures come with
a reading in words (the thresholds are below and in docs/console.md).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from common import display
from pipeline import selectors as pipeline_selectors
from profiles.models import Customer
from segments import selectors as segment_selectors
from segments.models import Segment

# Beat starts the campaigns' tick every minute and django-celery-beat writes down when, every few
# minutes (celery's sync_every, 3 min): a tick older than this means no scheduler is running.
SCHEDULER_SILENT_AFTER = timedelta(minutes=10)

# Silhouette of the chosen clustering (-1..1), read as Kaufman & Rousseeuw do: at or above each
# threshold, the words beside it.
SILHOUETTE_WORDS = [
    (0.7, "strongly separated"),
    (0.5, "clearly separated"),
    (0.25, "distinct but overlapping"),
    (float("-inf"), "barely separated: read them as broad groups"),
]
# The recommender's NDCG@10 over the best-sellers' (the popularity baseline on the same holdout):
# within this factor of 1 it is "about as good as".
SAME_AS_BASELINE = 0.1


def _recommender_runs():
    try:
        from recommendations.models import RecommenderRun
    except ImportError:  # the app is optional in this view's eyes
        return []
    runs = list(RecommenderRun.objects.filter(status="succeeded").order_by("-started_at")[:20])
    return list(reversed(runs))


def _scheduler(now) -> dict:
    """Whether Celery beat is running: when it last started the campaigns' tick (one query)."""
    from django_celery_beat.models import PeriodicTask

    last = (
        PeriodicTask.objects.filter(task="campaigns.tasks.campaigns_tick")
        .order_by("-last_run_at")
        .values_list("last_run_at", flat=True)
        .first()
    )
    return {
        "running": last is not None and now - last < SCHEDULER_SILENT_AFTER,
        "last_tick": last,
        "in_process": bool(settings.CELERY_TASK_ALWAYS_EAGER),
    }


def _ago(moment) -> str:
    text = timesince(moment)
    return "just now" if text.startswith("0") else f"{text} ago"


def significance_words(test: dict | None) -> str:
    """The uplift test in words: "significant (p = 0.003)", "not significant (p = 0.34)", or why there is none."""
    if not test:
        return "not available"
    if not test.get("treated_n"):
        return "no message sent"
    if not test.get("control_n"):
        return "no control group to compare with"
    if test.get("p_value") is None:
        return "not available"
    if not (test.get("treated_conversions") or test.get("control_conversions")):
        return "no conversions yet"
    word = "significant" if test.get("significant") else "not significant"
    return f"{word} ({display.p_value(test['p_value'])})"


def _campaign_state(row: dict, scheduler: dict) -> str:
    campaign = row["campaign"]
    if campaign.status == "completed":
        return f"Completed {_ago(campaign.completed_at)}" if campaign.completed_at else "Completed"
    if campaign.is_recurring:
        return "Running, sends to new members on its schedule"
    if row["pending"]:
        return f"Running: {display.number(row['pending'])} messages still to send"
    if row["pending"] == 0:
        if scheduler["running"]:
            return "Nothing left to send: marked completed at the scheduler's next tick (within a minute)"
        return "Nothing left to send: stays “running” until the scheduler (Celery beat) runs"
    return "Running"


def _recent_campaigns(now, scheduler: dict) -> list[dict]:
    try:
        from campaigns import selectors
    except ImportError:
        return []
    rows = []
    for row in selectors.recent_campaigns(days=30, limit=10, now=now):
        campaign, test = row["campaign"], row["conversion"]
        uplift, interval = display.MISSING, ""
        converted = test and (test.get("treated_conversions") or test.get("control_conversions"))
        if converted and test.get("uplift_abs") is not None:
            lo, hi = test["uplift_abs_ci"]
            uplift = display.points(test["uplift_abs"])
            interval = f"95% CI {display.points(lo)} to {display.points(hi)}"
        rows.append(
            {
                "name": campaign.name,
                "url": reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
                "channel": campaign.get_channel_display(),
                "state": _campaign_state(row, scheduler),
                "audience": display.number(row["audience"]),
                "sent": display.number(row["sent"]),
                "treated_rate": display.percent(test.get("treated_rate") if test else None),
                "control_rate": display.percent(test.get("control_rate") if test else None),
                "attributed": f"conversions counted {_ago(campaign.attributed_at)}"
                if campaign.attributed_at
                else "conversions not counted yet",
                "uplift": uplift,
                "interval": interval,
                "significance": significance_words(test),
                "significant": bool(test and test.get("significant")),
                "error": row["figures_error"],
            }
        )
    return rows


def recommender_words(run) -> str | None:
    """The latest run's product suggestions against the best-sellers, in words with the figures."""
    if run is None or run.ndcg_at_10 is None:
        return None
    baseline = ((run.metrics or {}).get("product") or {}).get("popularity", {}).get("ndcg@10")
    figures = f"NDCG@10 {display.number(run.ndcg_at_10, 3)}"
    if baseline is None:
        return f"Suggestions: no best-seller baseline to compare with ({figures})"
    figures = f"{figures} vs {display.number(baseline, 3)}"
    if baseline <= 0:
        if run.ndcg_at_10 > 0:
            return f"Suggestions: better than best-sellers, which predict none of the next items ({figures})"
        return f"Suggestions: neither they nor best-sellers predict the next items yet ({figures})"
    ratio = run.ndcg_at_10 / baseline
    if abs(ratio - 1) <= SAME_AS_BASELINE:
        reading = "about as good as best-sellers"
    elif ratio > 1:
        reading = f"{display.number(ratio, 1)}× better than best-sellers"
    else:
        reading = f"worse than best-sellers ({display.number(ratio, 2)}×): check the data or the model"
    return f"Suggestions: {reading} at predicting what customers turn to next ({figures})"


def segments_words(clustering) -> str | None:
    """The chosen clustering's silhouette in words (SILHOUETTE_WORDS)."""
    if clustering is None or clustering.chosen_k not in (clustering.ks or []):
        return None
    try:
        value = clustering.silhouette[clustering.ks.index(clustering.chosen_k)]
    except (IndexError, TypeError):
        return None
    if value is None:
        return None
    reading = next(words for threshold, words in SILHOUETTE_WORDS if value >= threshold)
    return f"Segments: {reading} (silhouette {display.number(value, 2)}, {clustering.chosen_k} segments)"


def _pct(values):
    return [None if v is None else round(v * 100, 1) for v in values]


@staff_member_required
def dashboard(request):
    now = timezone.now()
    since = now - timedelta(days=30)
    profiles_step = pipeline_selectors.last_succeeded_step(name="profiles", counts_key="events_30d")
    segments = list(Segment.objects.filter(active=True).order_by("-size")[:30])
    clustering = segment_selectors.latest_clustering_run()
    reco_runs = _recommender_runs()
    scheduler = _scheduler(now)
    figures = {
        "customers": profiles_step.counts.get("customers") if profiles_step else None,
        "new_customers_30d": Customer.objects.filter(created_at__gte=since).count(),  # indexed range
        "events_30d": profiles_step.counts.get("events_30d") if profiles_step else None,
        "active_customers_30d": profiles_step.counts.get("customers_active_30d") if profiles_step else None,
        "as_of": profiles_step.finished_at if profiles_step else None,
    }
    latest = reco_runs[-1] if reco_runs else None
    quality = {
        "recommender": recommender_words(latest),
        "segments": segments_words(clustering),
        "precision": latest.precision_at_10 if latest else None,
        "coverage": latest.coverage if latest else None,
    }
    charts = {
        "segments": {
            "labels": [s.name for s in segments],
            "sizes": [s.size for s in segments],
            "kinds": [s.kind for s in segments],
        },
        "elbow": {
            "ks": clustering.ks,
            "inertia": [None if v is None else round(v, 1) for v in clustering.inertia],
            "silhouette": [None if v is None else round(v, 3) for v in clustering.silhouette],
            "chosen_k": clustering.chosen_k,
        }
        if clustering
        else None,
        # NDCG is a score (0..1, three decimals); precision and coverage are shares, in percent.
        "recommender": {
            "labels": [r.started_at.strftime("%m-%d %H:%M") for r in reco_runs],
            "ndcg": [None if r.ndcg_at_10 is None else round(r.ndcg_at_10, 3) for r in reco_runs],
            "precision": _pct([r.precision_at_10 for r in reco_runs]),
            "coverage": _pct([r.coverage for r in reco_runs]),
        },
    }
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "figures": figures,
        "charts": charts,  # into the page through json_script, never as markup
        "quality": quality,
        "pipeline_runs": pipeline_selectors.pipeline_runs()[:10],
        "campaigns": _recent_campaigns(now, scheduler),
        "scheduler": scheduler,
        "clustering": clustering,
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
