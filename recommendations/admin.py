"""Operator screens: recommender runs with their metrics, and a customer's current suggestions."""

import json

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .models import Recommendation, RecommenderRun

CHART_RUNS = 30


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


@admin.register(RecommenderRun)
class RecommenderRunAdmin(admin.ModelAdmin):
    change_list_template = "admin/recommendations/recommenderrun/change_list.html"
    list_display = (
        "id",
        "started_at",
        "status",
        "is_active",
        "algorithm",
        "n_customers",
        "n_recommendations",
        "ndcg",
        "precision",
        "recall",
        "coverage_10",
        "duration_s",
    )
    list_filter = ("status", "is_active")
    list_select_related = ("step",)
    fields = (
        "status",
        "is_active",
        "algorithm",
        ("started_at", "finished_at", "activated_at", "duration_s"),
        "metrics_table",
        "sizes_table",
        "durations_table",
        "params",
        "step_link",
        "error",
    )
    readonly_fields = (
        "status",
        "is_active",
        "algorithm",
        "started_at",
        "finished_at",
        "activated_at",
        "duration_s",
        "metrics_table",
        "sizes_table",
        "durations_table",
        "params",
        "step_link",
        "error",
    )

    def has_add_permission(self, request):
        return False  # runs come from the pipeline ("Start a recomputation" on the pipeline runs page)

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="NDCG@10", ordering="ndcg_at_10")
    def ndcg(self, obj):
        return _fmt(obj.ndcg_at_10)

    @admin.display(description="precision@10", ordering="precision_at_10")
    def precision(self, obj):
        return _fmt(obj.precision_at_10)

    @admin.display(description="recall@10", ordering="recall_at_10")
    def recall(self, obj):
        return _fmt(obj.recall_at_10)

    @admin.display(description="coverage@10", ordering="coverage")
    def coverage_10(self, obj):
        return _fmt(obj.coverage)

    @admin.display(description="pipeline step")
    def step_link(self, obj):
        if not obj.step_id or not obj.step or not obj.step.pipeline_id:
            return "–"
        url = reverse("admin:pipeline_pipelinerun_change", args=[obj.step.pipeline_id])
        return format_html('<a href="{}">pipeline #{}</a>', url, obj.step.pipeline_id)

    @admin.display(description="offline metrics (holdout)")
    def metrics_table(self, obj):
        metrics = obj.metrics or {}
        names = ["precision@10", "recall@10", "ndcg@10", "hit_rate@10", "coverage@10", "n_users"]
        rows = []
        for kind in ("product", "activity", "post"):
            for model in ("default", "popularity"):
                figures = metrics.get(kind, {}).get(model)
                if figures:
                    rows.append((kind, model, *[figures.get(n) for n in names]))
        if not rows:
            return "–"
        head = format_html_join("", "<th>{}</th>", ((n,) for n in ["kind", "model", *names]))
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td>" + "<td>{}</td>" * len(names) + "</tr>",
            ((k, m, *[v if isinstance(v, int) else _fmt(v) for v in vals]) for k, m, *vals in rows),
        )
        note = metrics.get("protocol", "")
        return format_html(
            '<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table><p class="help">{}</p>', head, body, note
        )

    def _table(self, data: dict):
        if not data:
            return "–"
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                "<tr><th>{}</th><td>{}</td></tr>",
                ((k, json.dumps(v) if isinstance(v, dict) else v) for k, v in data.items()),
            ),
        )

    @admin.display(description="sizes")
    def sizes_table(self, obj):
        return self._table(obj.sizes)

    @admin.display(description="seconds per phase")
    def durations_table(self, obj):
        return self._table(obj.durations)

    def changelist_view(self, request, extra_context=None):
        runs = list(
            RecommenderRun.objects.filter(status="succeeded")
            .order_by("-started_at")
            .values("id", "started_at", "ndcg_at_10", "precision_at_10", "recall_at_10", "coverage")[:CHART_RUNS]
        )[::-1]
        chart = {
            "labels": [f"#{r['id']} {r['started_at']:%m-%d %H:%M}" for r in runs],
            "ndcg": [r["ndcg_at_10"] for r in runs],
            "precision": [r["precision_at_10"] for r in runs],
            "recall": [r["recall_at_10"] for r in runs],
            "coverage": [r["coverage"] for r in runs],
        }
        extra_context = {
            **(extra_context or {}),
            "metrics_chart": chart,
            "start_url": reverse("admin:pipeline_pipelinerun_start"),
        }
        return super().changelist_view(request, extra_context)


class RecommendationInline(admin.TabularInline):
    """The customer's current suggestions (active run), by kind then rank."""

    model = Recommendation
    fk_name = "customer"
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("kind", "rank", "item", "score", "reason_text")
    readonly_fields = fields
    ordering = ("kind", "rank")
    verbose_name = "current suggestion"
    verbose_name_plural = "Current suggestions (active recommender run)"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(run__is_active=True).select_related("item").order_by("kind", "rank")


# The recommender configurations' screens (recommendations/config_admin.py) register themselves on import.
from . import config_admin  # noqa: E402, F401
