"""Operator screens: recommender runs with their metrics, and a customer's current suggestions."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from common import display
from pipeline import figures

from .models import RecommenderRun

CHART_RUNS = 30
KIND_LABELS = {"product": "Products", "activity": "Activities", "post": "Community posts"}
MODEL_LABELS = {"default": "default model", "popularity": "popularity baseline"}


def _score(value) -> str:
    return display.number(value, 3)


class InServiceFilter(admin.SimpleListFilter):
    title = "in service"
    parameter_name = "in_service"

    def lookups(self, request, model_admin):
        return [("yes", "In service"), ("no", "Not in service")]

    def queryset(self, request, queryset):
        return queryset.filter(is_active=self.value() == "yes") if self.value() else queryset


@admin.register(RecommenderRun)
class RecommenderRunAdmin(admin.ModelAdmin):
    change_list_template = "admin/recommendations/recommenderrun/change_list.html"
    list_display = (
        "run_title",
        "started",
        "status_badge",
        "serving",
        "configuration",
        "customers",
        "suggestions",
        "ndcg",
        "precision",
        "recall",
        "coverage_10",
        "took",
    )
    list_display_links = ("run_title",)
    list_filter = ("status", InServiceFilter)
    list_select_related = ("step", "config")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "status_badge",
                    "in_service",
                    "model_text",
                    ("started", "finished", "activated"),
                    "took",
                    "step_link",
                    "error",
                )
            },
        ),
        ("Offline quality on the holdout", {"fields": ("metrics_table",)}),
        ("Model and parameters", {"fields": ("params_table",)}),
        ("What it computed", {"fields": ("sizes_table", "durations_table")}),
    )
    readonly_fields = (
        "status_badge",
        "in_service",
        "model_text",
        "started",
        "finished",
        "activated",
        "took",
        "metrics_table",
        "sizes_table",
        "durations_table",
        "params_table",
        "step_link",
        "error",
    )

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not obj.error:  # no empty "error" row on a run that went well
            first, *rest = self.fieldsets
            fields = tuple(f for f in first[1]["fields"] if f != "error")
            return ((first[0], {**first[1], "fields": fields}), *rest)
        return self.fieldsets

    def has_add_permission(self, request):
        return False  # runs come from the pipeline ("Start a recomputation" on the pipeline runs page)

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="run", ordering="id")
    def run_title(self, obj):
        return format_html('<span style="white-space:nowrap">Recommender run #{}</span>', obj.pk)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return format_html('<span style="white-space:nowrap">{}</span>', display.when(obj.started_at))

    @admin.display(description="in service", ordering="is_active")
    def serving(self, obj):
        return "in service" if obj.is_active else ""

    @admin.display(description="finished")
    def finished(self, obj):
        return display.when(obj.finished_at)

    @admin.display(description="put in service")
    def activated(self, obj):
        return display.when(obj.activated_at)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return figures.status_badge(obj.status)

    @admin.display(description="in service", ordering="is_active")
    def in_service(self, obj):
        return "yes: the API and the console serve its suggestions" if obj.is_active else "no"

    @admin.display(description="model", ordering="algorithm")
    def model_text(self, obj):
        model = figures.value_text("algorithm", obj.algorithm)
        name = (obj.params or {}).get("configuration")
        return f"{name}: {model}" if name else model

    @admin.display(description="configuration", ordering="config__name")
    def configuration(self, obj):
        if obj.config_id is None:
            return (obj.params or {}).get("configuration") or "settings (PureSVD)"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:recommendations_recommenderconfig_change", args=[obj.config_id]),
            obj.config.name,
        )

    @admin.display(description="customers", ordering="n_customers")
    def customers(self, obj):
        return display.number(obj.n_customers)

    @admin.display(description="suggestions", ordering="n_recommendations")
    def suggestions(self, obj):
        return display.number(obj.n_recommendations)

    @admin.display(description="NDCG@10", ordering="ndcg_at_10")
    def ndcg(self, obj):
        return _score(obj.ndcg_at_10)

    @admin.display(description="precision@10", ordering="precision_at_10")
    def precision(self, obj):
        return _score(obj.precision_at_10)

    @admin.display(description="recall@10", ordering="recall_at_10")
    def recall(self, obj):
        return _score(obj.recall_at_10)

    @admin.display(description="coverage@10", ordering="coverage")
    def coverage_10(self, obj):
        return display.percent(obj.coverage)

    @admin.display(description="took", ordering="duration_s")
    def took(self, obj):
        return display.duration(obj.duration_s)

    @admin.display(description="pipeline run")
    def step_link(self, obj):
        if not obj.step_id or not obj.step or not obj.step.pipeline_id:
            return display.MISSING
        url = reverse("admin:pipeline_pipelinerun_change", args=[obj.step.pipeline_id])
        return format_html('<a href="{}">Recomputation #{}</a>', url, obj.step.pipeline_id)

    @admin.display(description="offline metrics")
    def metrics_table(self, obj):
        metrics = obj.metrics or {}
        columns = {
            f"{kind}|{model}": metrics[kind][model]
            for kind in KIND_LABELS
            for model in MODEL_LABELS
            if isinstance(metrics.get(kind), dict) and metrics[kind].get(model)
        }
        groups = []
        plain = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        if plain:
            groups += figures.grouped(figures.rows(plain))
        if columns:
            labels = {key: f"{KIND_LABELS[key.split('|')[0]]}, {MODEL_LABELS[key.split('|')[1]]}" for key in columns}
            groups.append(figures.matrix_group("", columns, columns=labels))
        return figures.figures_html(groups)

    @admin.display(description="parameters")
    def params_table(self, obj):
        return figures.figures_html(figures.grouped(figures.rows(obj.params)))

    @admin.display(description="sizes")
    def sizes_table(self, obj):
        return figures.figures_html(figures.grouped(figures.rows(obj.sizes)))

    @admin.display(description="time per phase")
    def durations_table(self, obj):
        return figures.figures_html(figures.grouped(figures.rows(obj.durations, timing=True)))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "title": f"Recommender run #{object_id}", "subtitle": None}
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        runs = list(
            RecommenderRun.objects.filter(status="succeeded")
            .order_by("-started_at")
            .values("id", "started_at", "ndcg_at_10", "precision_at_10", "recall_at_10", "coverage")[:CHART_RUNS]
        )[::-1]
        chart = {
            "labels": [f"#{r['id']} {display.when(r['started_at'])}" for r in runs],
            "ndcg": [r["ndcg_at_10"] for r in runs],
            "precision": [r["precision_at_10"] for r in runs],
            "recall": [r["recall_at_10"] for r in runs],
            "coverage": [r["coverage"] for r in runs],
        }
        extra_context = {
            **(extra_context or {}),
            "title": "Recommender runs",
            "metrics_chart": chart,
            "start_url": reverse("admin:pipeline_pipelinerun_start"),
        }
        return super().changelist_view(request, extra_context)


# The recommender configurations' screens (recommendations/config_admin.py) register themselves on import.
from . import config_admin  # noqa: E402, F401
