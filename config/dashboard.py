"""The operator dashboard: the state of the platform at a glance, linked from the admin index.

Every figure comes from what the recomputation steps stored (their counts, runs and segment
sizes) or from an indexed range count, so the page stays fast on a database of millions of
customers and tens of millions of events: nothing here scans a whole table.
"""

from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.template.response import TemplateResponse
from django.utils import timezone

from pipeline import selectors as pipeline_selectors
from profiles.models import Customer
from segments import selectors as segment_selectors
from segments.models import Segment


def _recommender_runs():
    try:
        from recommendations.models import RecommenderRun
    except ImportError:  # the app is optional in this view's eyes
        return []
    runs = list(RecommenderRun.objects.filter(status="succeeded").order_by("-started_at")[:20])
    return list(reversed(runs))


def _campaigns():
    try:
        from campaigns import selectors
    except ImportError:
        return []
    fn = getattr(selectors, "dashboard_campaigns", None)
    return fn() if fn else []


@staff_member_required
def dashboard(request):
    now = timezone.now()
    since = now - timedelta(days=30)
    profiles_step = pipeline_selectors.last_succeeded_step(name="profiles", counts_key="events_30d")
    segments = list(Segment.objects.filter(active=True).order_by("-size")[:30])
    clustering = segment_selectors.latest_clustering_run()
    reco_runs = _recommender_runs()
    figures = {
        "customers": profiles_step.counts.get("customers") if profiles_step else None,
        "new_customers_30d": Customer.objects.filter(created_at__gte=since).count(),  # indexed range
        "events_30d": profiles_step.counts.get("events_30d") if profiles_step else None,
        "active_customers_30d": profiles_step.counts.get("customers_active_30d") if profiles_step else None,
        "as_of": profiles_step.finished_at if profiles_step else None,
    }
    charts = {
        "segments": {
            "labels": [s.name for s in segments],
            "sizes": [s.size for s in segments],
            "kinds": [s.kind for s in segments],
        },
        "elbow": {
            "ks": clustering.ks,
            "inertia": clustering.inertia,
            "silhouette": clustering.silhouette,
            "chosen_k": clustering.chosen_k,
        }
        if clustering
        else None,
        "recommender": {
            "labels": [r.started_at.strftime("%m-%d %H:%M") for r in reco_runs],
            "ndcg": [r.ndcg_at_10 for r in reco_runs],
            "precision": [r.precision_at_10 for r in reco_runs],
            "coverage": [r.coverage for r in reco_runs],
        },
    }
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "figures": figures,
        "charts": charts,  # into the page through json_script, never as markup
        "pipeline_runs": pipeline_selectors.pipeline_runs()[:10],
        "campaigns": _campaigns(),
        "clustering": clustering,
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
