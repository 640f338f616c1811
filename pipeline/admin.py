"""Operator screens for recomputations: the runs with their steps, and starting one."""

import json
import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.audit import audit_record
from common import display

from . import figures, selectors, services, tasks
from .models import PipelineAuditAction, PipelineRun, RunStatus
from .steps import declared_params, listed_steps

log = logging.getLogger(__name__)


_FIELDS = {bool: forms.BooleanField, int: forms.IntegerField, float: forms.FloatField, str: forms.CharField}


def _with_blank(choices):
    return lambda: [("", "(the default)"), *choices()]


class StartPipelineForm(forms.Form):
    """The listed steps, and the parameters they offer on this form (`Param(admin=True)`)."""

    steps = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text="Run in pipeline order.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = [step.name for step in listed_steps()]
        self.fields["steps"].choices = [(n, n.capitalize()) for n in names]
        self.fields["steps"].initial = names
        for step, param in declared_params():
            if param.admin and param.name in self.fields:
                # a parameter several steps take (incremental): one field, each step's words
                field = self.fields[param.name]
                field.help_text = f"{field.help_text} {step.name.capitalize()}: {param.help}"
            elif param.admin:
                help_text = f"{step.name.capitalize()}: {param.help}"
                if param.choices is not None:
                    self.fields[param.name] = forms.ChoiceField(
                        required=False,
                        help_text=help_text,
                        choices=_with_blank(param.choices),
                        label=param.name.replace("_", " ").capitalize().replace("config", "configuration"),
                    )
                else:
                    self.fields[param.name] = _FIELDS[param.type](required=False, help_text=help_text)

    def options(self) -> dict:
        """The parameters' values as given (a checkbox left empty, a field left blank: not given)."""
        return {
            name: self.cleaned_data[name]
            for name in self.fields
            if name != "steps" and self.cleaned_data[name] not in (None, False, "")
        }


def _step_links() -> dict:
    """Counts that name another run become links to its page (the pipeline imports no step's app:
    the admin URLs are reversed by name)."""

    def link(url_name: str, text: str):
        def make(value):
            if not isinstance(value, int):
                return None
            try:
                return f"{text} #{value}", reverse(url_name, args=[value])
            except Exception:  # that app's admin is not installed
                return None

        return make

    return {
        "run": link("admin:recommendations_recommenderrun_change", "Recommender run"),
        "clustering_run": link("admin:segments_clusteringrun_change", "Clustering run"),
    }


class TriggerFilter(admin.SimpleListFilter):
    title = "started by"
    parameter_name = "trigger"

    def lookups(self, request, model_admin):
        return [("admin", "An operator in the admin"), ("schedule", "The schedule"), ("shell", "A shell command")]

    def queryset(self, request, queryset):
        return queryset.filter(trigger=self.value()) if self.value() else queryset


def _nowrap(text: str):
    return format_html('<span style="white-space:nowrap">{}</span>', text)


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("run_title", "started", "steps_text", "status_badge", "took", "started_by")
    list_display_links = ("run_title",)
    list_filter = ("status", TriggerFilter)
    list_select_related = ("requested_by",)
    readonly_fields = ("steps", "trigger", "requested_by", "status", "created_at", "started_at", "finished_at", "error")
    change_list_template = "admin/pipeline/pipelinerun/change_list.html"
    change_form_template = "admin/pipeline/pipelinerun/change_form.html"

    @admin.display(description="run", ordering="id")
    def run_title(self, obj):
        return _nowrap(f"Recomputation #{obj.pk}")

    @admin.display(description="started", ordering="created_at")
    def started(self, obj):
        return _nowrap(display.when(obj.started_at or obj.created_at))

    @admin.display(description="steps")
    def steps_text(self, obj):
        return " → ".join(figures.step_label(name) for name in obj.steps)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return figures.status_badge(obj.status)

    @admin.display(description="took")
    def took(self, obj):
        if obj.duration_s is not None:
            return _nowrap(f"took {display.duration(obj.duration_s)}")
        if obj.status == RunStatus.RUNNING and obj.started_at:
            return _nowrap(f"running for {display.duration(timezone.now() - obj.started_at)}")
        return display.MISSING

    @admin.display(description="started by")
    def started_by(self, obj):
        return figures.trigger_text(obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Recomputations", **(extra_context or {})})

    def get_urls(self):
        urls = super().get_urls()
        return [
            path("start/", self.admin_site.admin_view(self.start_view), name="pipeline_pipelinerun_start"),
            path(
                "<int:run_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="pipeline_pipelinerun_progress",
            ),
            *urls,
        ]

    def progress_view(self, request, run_id: int):
        """The run page's poll: the run's status and each step's progress and figures, as JSON."""
        run = get_object_or_404(selectors.pipeline_runs(), pk=run_id)
        if not self.has_view_permission(request, run):
            return JsonResponse({"detail": "You may not view recomputations."}, status=403)
        view = figures.run_view(run, list(run.step_runs.all()), links=_step_links())
        return JsonResponse(view)  # admin_view marks it never cached

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if run is not None:
            steps = list(run.step_runs.order_by("id"))
            extra_context["run_view"] = figures.run_view(run, steps, links=_step_links())
            extra_context["run_data"] = {
                "url": reverse("admin:pipeline_pipelinerun_progress", args=[run.pk]),
                "active": run.status in figures.ACTIVE,
                "interval_ms": 2000,
            }
            extra_context["title"] = f"Recomputation #{run.pk}"
            extra_context["subtitle"] = None
            extra_context["run_by"] = figures.trigger_text(run)
            extra_context["run_steps_text"] = " → ".join(figures.step_label(name) for name in run.steps)
            extra_context["run_backend"] = figures.backend_text(run, steps)
            if request.user.is_superuser:
                extra_context["raw_data"] = json.dumps(
                    {
                        "steps": run.steps,
                        "records": [
                            {"name": s.name, "status": s.status, "params": s.params, "counts": s.counts}
                            | {"error": s.error}
                            for s in steps
                        ],
                    },
                    indent=1,
                    default=str,
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def start_view(self, request):
        if not request.user.has_perm("pipeline.run_pipeline"):
            raise PermissionDenied("You need the permission “Can start a recomputation”.")
        form = StartPipelineForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run = services.pipeline_start(
                    trigger="admin", user=request.user, steps=form.cleaned_data["steps"], options=form.options()
                )
            except services.BackendUnavailable as exc:
                messages.error(request, str(exc))
                return redirect(request.path)
            # what the operator set (a list left on "(the default)" is not a choice they made)
            shown = {name: form.cleaned_data[name] for name in form.fields if name != "steps"}
            shown = {name: value for name, value in shown.items() if value != ""}
            audit_record(
                action=PipelineAuditAction.PIPELINE_STARTED,
                request=request,
                target=run,
                source="admin",
                changes={"steps": run.steps, **shown},
            )
            transaction.on_commit(lambda: tasks.pipeline_enqueue(run, run.step_params))
            messages.success(request, f"Recomputation #{run.pk} ({', '.join(run.steps)}) was started.")
            return redirect(reverse("admin:pipeline_pipelinerun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Start a recomputation",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/pipeline/pipelinerun/start.html", context)
