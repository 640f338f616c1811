"""Operator screens: define an experiment (its plan shown before the start), start and stop it, read its
report (per variant the metric with its interval, each variant against the control, the verdict in
words, the daily looks drawn), and promote the winner to the default configuration (audited)."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone

from accounts.audit import audit_record

from . import selectors, services
from .models import Experiment, ExperimentsAuditAction, ExperimentStatus, Metric, Variant

log = logging.getLogger(__name__)

CHART_W, CHART_ROW, CHART_LEFT = 560, 34, 190


class ExperimentForm(forms.ModelForm):
    guardrail_metrics = forms.MultipleChoiceField(
        choices=Metric.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Metrics that must not get worse; a significant harm stops the call for a winner.",
    )

    class Meta:
        model = Experiment
        fields = [
            "name",
            "hypothesis",
            "population",
            "primary_metric",
            "guardrail_metrics",
            "attribution_days",
            "mde_percent",
            "baseline",
            "alpha",
            "power",
        ]

    def clean(self):
        data = super().clean()
        if data.get("primary_metric") and data.get("primary_metric") in (data.get("guardrail_metrics") or []):
            self.add_error("guardrail_metrics", "The primary metric cannot also be a guard-rail.")
        return data


class VariantInline(admin.TabularInline):
    model = Variant
    fields = ["position", "config", "share"]
    extra = 0
    min_num = 2
    ordering = ["position"]

    def has_add_permission(self, request, obj=None):
        return super().has_add_permission(request, obj) and (obj is None or obj.status == ExperimentStatus.DRAFT)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or obj.status == ExperimentStatus.DRAFT)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == ExperimentStatus.DRAFT)


def _pct(x, digits=1):
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _value_text(metric: str, x) -> str:
    if x is None:
        return "–"
    return f"{x:,.2f}" if selectors.METRIC_UNIT[Metric(metric)] == "money" else _pct(x, 2)


def _diff_text(metric: str, x) -> str:
    if x is None:
        return "–"
    sign = "+" if x >= 0 else "−"
    if selectors.METRIC_UNIT[Metric(metric)] == "money":
        return f"{sign}{abs(x):,.2f}"
    return f"{sign}{100 * abs(x):.2f} points"


def _bars(rows: list[dict]) -> dict:
    """Coordinates of a horizontal chart: each variant's value with its interval (numbers only)."""
    highs = [r["ci"][1] for r in rows if r["ci"][1] is not None] + [r["value"] or 0 for r in rows]
    top = max(highs + [1e-9])
    scale = (CHART_W - CHART_LEFT - 20) / top
    out = []
    for i, r in enumerate(rows):
        y = 10 + i * CHART_ROW
        value = r["value"] or 0.0
        lo, hi = (r["ci"][0] or value), (r["ci"][1] or value)
        out.append(
            {
                "letter": r["letter"],
                "label": f"{r['letter']} · {r['configuration']}"[:32],
                "y": y,
                "ty": y + 15,
                "w": round(max(value, 0) * scale, 1),
                "lo": round(CHART_LEFT + max(lo, 0) * scale, 1),
                "hi": round(CHART_LEFT + max(hi, 0) * scale, 1),
                "mid": y + 10,
            }
        )
    return {"width": CHART_W, "height": 20 + len(rows) * CHART_ROW, "left": CHART_LEFT, "bars": out}


def _trajectory(looks: list[dict]) -> dict | None:
    """The always-valid interval of B − A look after look (the first treatment), as chart coordinates."""
    points = [
        (look["day"], c["difference"], c["always_valid_ci"])
        for look in looks
        for c in look["comparisons"][:1]
        if c["difference"] is not None and None not in c["always_valid_ci"]
    ]
    if len(points) < 2:
        return None
    values = [v for _, d, ci in points for v in (d, *ci)] + [0.0]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    w, h, pad = 560, 170, 30
    step = (w - 2 * pad) / (len(points) - 1)

    def y(v):
        return round(pad / 2 + (hi - v) / span * (h - pad), 1)

    return {
        "width": w,
        "height": h,
        "zero": y(0.0),
        "first": f"{points[0][0]:%d %b}",
        "last": f"{points[-1][0]:%d %b}",
        "right": w - pad,
        "points": [
            {"x": round(pad + i * step, 1), "d": y(d), "lo": y(ci[1]), "hi": y(ci[0]), "day": f"{day:%d %b}"}
            for i, (day, d, ci) in enumerate(points)
        ],
        "line": " ".join(f"{round(pad + i * step, 1)},{y(d)}" for i, (_, d, _) in enumerate(points)),
    }


def report_words(experiment: Experiment) -> dict:
    """The report in an operator's words and the charts' coordinates (escaped by the template)."""
    report = selectors.experiment_report(experiment)
    analysis = report["analysis"]
    metric = experiment.primary_metric
    words = {"report": report, "verdict": report["verdict"], "metric_label": Metric(metric).label}
    if analysis:
        words["variants"] = [
            {
                **r,
                "value_text": _value_text(metric, r["value"]),
                "ci_text": f"{_value_text(metric, r['ci'][0])} to {_value_text(metric, r['ci'][1])}",
            }
            for r in analysis["variants"]
        ]
        words["comparisons"] = [
            {
                **c,
                "difference_text": _diff_text(metric, c["difference"]),
                "relative_text": "–" if c["relative"] is None else f"{100 * c['relative']:+.1f}%".replace("-", "−"),
                "ci_text": " to ".join(_diff_text(metric, x) for x in c["always_valid_ci"]),
                "p_text": "–" if c["always_valid_p"] is None else f"{c['always_valid_p']:.2g}",
            }
            for c in analysis["comparisons"]
        ]
        words["guardrails"] = [
            {
                "metric": Metric(name).label,
                "rows": [
                    {**c, "difference_text": _diff_text(name, c["difference"]), "significant": c["significant"]}
                    for c in rows
                ],
            }
            for name, rows in analysis["guardrails"].items()
        ]
        words["srm"] = analysis.get("srm") or {}
        words["chart"] = _bars(analysis["variants"])
    words["trajectory"] = _trajectory(report["looks"])
    return words


def plan_words(plan: dict, experiment: Experiment) -> dict:
    metric = experiment.primary_metric
    out = dict(plan)
    out["baseline_text"] = _value_text(metric, plan.get("baseline"))
    out["mde_text"] = _diff_text(metric, plan.get("mde"))
    return out


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    form = ExperimentForm
    inlines = [VariantInline]
    list_display = ["name", "status", "primary_metric", "population", "started_at", "outcome_or_verdict"]
    list_filter = ["status", "primary_metric"]
    search_fields = ["name"]
    change_form_template = "admin/experiments/experiment/change_form.html"

    @admin.display(description="verdict")
    def outcome_or_verdict(self, obj):
        if obj.outcome:
            return obj.outcome
        look = obj.looks.order_by("-day").first()
        return selectors.verdict_words(look) if obj.status == ExperimentStatus.RUNNING else ""

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != ExperimentStatus.DRAFT:
            fields = [f for f in ExperimentForm.Meta.fields if f != "hypothesis"]
            return [("guardrails_display" if f == "guardrail_metrics" else f) for f in fields]
        return []

    def get_fields(self, request, obj=None):
        fields = list(ExperimentForm.Meta.fields)
        if obj is not None and obj.status != ExperimentStatus.DRAFT:
            fields[fields.index("guardrail_metrics")] = "guardrails_display"
        return fields

    @admin.display(description="guard-rail metrics")
    def guardrails_display(self, obj):
        return ", ".join(Metric(m).label for m in obj.guardrail_metrics or [] if m in Metric.values) or "none"

    def has_delete_permission(self, request, obj=None):
        # a started experiment's report is the record of a decision: it stays
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == ExperimentStatus.DRAFT)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        audit_record(
            action=ExperimentsAuditAction.EXPERIMENT_CHANGED if change else ExperimentsAuditAction.EXPERIMENT_CREATED,
            request=request,
            target=obj,
            target_label=obj.name[:200],
            changes={"changed": form.changed_data} if change else {},
            source="admin",
        )

    def delete_model(self, request, obj):
        audit_record(
            action=ExperimentsAuditAction.EXPERIMENT_DELETED,
            request=request,
            target=obj,
            target_label=obj.name[:200],
            source="admin",
        )
        super().delete_model(request, obj)

    def get_urls(self):
        return [
            path(
                "<int:pk>/do/<str:verb>/",
                self.admin_site.admin_view(self.do_view),
                name="experiments_experiment_do",
            ),
            *super().get_urls(),
        ]

    def do_view(self, request, pk: int, verb: str):
        if request.method != "POST":
            raise PermissionDenied("Use the buttons on the experiment's page.")
        experiment = get_object_or_404(Experiment, pk=pk)
        if not request.user.has_perm("experiments.change_experiment"):
            raise PermissionDenied("You need the permission “Can change experiment”.")
        try:
            if verb == "start":
                services.experiment_start(experiment, request=request)
                messages.success(request, f"“{experiment}” started: its variants' suggestions are being computed.")
            elif verb == "stop":
                services.experiment_stop(experiment, request=request)
                messages.success(request, f"“{experiment}” stopped. {experiment.outcome}")
            elif verb == "promote":
                if not request.user.has_perm("recommendations.change_recommenderconfig"):
                    raise PermissionDenied("You need the permission “Can change recommender configuration”.")
                with transaction.atomic():
                    winner = services.experiment_promote(experiment, request=request)
                messages.success(
                    request, f"“{winner.config}” is now the default configuration; the next run serves it."
                )
            else:
                raise PermissionDenied(f"Unknown action {verb!r}.")
        except services.ExperimentError as exc:
            messages.error(request, str(exc))
        return redirect(reverse("admin:experiments_experiment_change", args=[pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        experiment = Experiment.objects.filter(pk=object_id).first()
        if experiment is not None:
            extra_context["experiment_obj"] = experiment
            extra_context["can_act"] = request.user.has_perm("experiments.change_experiment")
            extra_context["can_promote"] = extra_context["can_act"] and request.user.has_perm(
                "recommendations.change_recommenderconfig"
            )
            winner = experiment.winner
            if winner is None and experiment.status == ExperimentStatus.RUNNING:
                look = experiment.looks.order_by("-day").first()
                winner = look.winner if look else None
            extra_context["winner_is_default"] = bool(winner and winner.config.is_default)
            try:
                if experiment.status == ExperimentStatus.DRAFT:
                    extra_context["plan"] = plan_words(selectors.experiment_plan(experiment), experiment)
                    extra_context["problems"] = services.experiment_problems(experiment)
                else:
                    extra_context["plan"] = plan_words(experiment.plan or {}, experiment)
                    extra_context["words"] = report_words(experiment)
            except Exception as exc:  # the form must stay usable
                log.exception("experiment %s: report not shown", experiment.pk)
                messages.error(request, f"The report is not shown: {type(exc).__name__}: {exc}")
            extra_context["now"] = timezone.now()
        return super().change_view(request, object_id, form_url, extra_context)
