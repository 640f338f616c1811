"""Operator screens for recomputations: the runs with their steps, and starting one."""

import json
import logging

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.audit import audit_record

from . import services, tasks
from .models import PipelineAuditAction, PipelineRun, PipelineStep, RunStatus
from .steps import declared_params, listed_steps

log = logging.getLogger(__name__)


class StepInline(admin.TabularInline):
    model = PipelineStep
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("name", "status", "progress_pct", "message", "started_at", "duration_s", "counts_text", "error_short")
    readonly_fields = fields
    ordering = ("id",)

    @admin.display(description="progress")
    def progress_pct(self, obj):
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="counts")
    def counts_text(self, obj):
        return format_html(
            "<pre style='white-space:pre-wrap;max-width:520px'>{}</pre>", json.dumps(obj.counts, indent=1, default=str)
        )

    @admin.display(description="error")
    def error_short(self, obj):
        return obj.error.splitlines()[0] if obj.error else ""


_FIELDS = {bool: forms.BooleanField, int: forms.IntegerField, float: forms.FloatField, str: forms.CharField}


def _with_blank(choices):
    return lambda: [("", "(the default)"), *choices()]


class StartPipelineForm(forms.Form):
    """The listed steps, and the parameters they offer on this form (`Param(admin=True)`)."""

    steps = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text="Run in pipeline order.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = [step.name for step in listed_steps()]
        self.fields["steps"].choices = [(n, n) for n in names]
        self.fields["steps"].initial = names
        for step, param in declared_params():
            if param.admin and param.name not in self.fields:
                help_text = f"{step.name.capitalize()}: {param.help}"
                if param.choices is not None:
                    self.fields[param.name] = forms.ChoiceField(
                        required=False, help_text=help_text, choices=_with_blank(param.choices)
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


@admin.register(PipelineRun)
class PipelineRunAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "steps_text", "status", "trigger", "requested_by", "duration")
    list_filter = ("status", "trigger")
    list_select_related = ("requested_by",)
    readonly_fields = ("steps", "trigger", "requested_by", "status", "created_at", "started_at", "finished_at", "error")
    inlines = [StepInline]
    change_list_template = "admin/pipeline/pipelinerun/change_list.html"
    change_form_template = "admin/pipeline/pipelinerun/change_form.html"

    @admin.display(description="steps")
    def steps_text(self, obj):
        return ", ".join(obj.steps)

    @admin.display(description="duration (s)")
    def duration(self, obj):
        return f"{obj.duration_s:.1f}" if obj.duration_s is not None else "–"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        urls = super().get_urls()
        return [path("start/", self.admin_site.admin_view(self.start_view), name="pipeline_pipelinerun_start"), *urls]

    def start_view(self, request):
        if not request.user.has_perm("pipeline.run_pipeline"):
            raise PermissionDenied("You need the permission “Can start a recomputation”.")
        form = StartPipelineForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            run = services.pipeline_start(
                trigger="admin", user=request.user, steps=form.cleaned_data["steps"], options=form.options()
            )
            shown = {name: form.cleaned_data[name] for name in form.fields if name != "steps"}
            audit_record(
                action=PipelineAuditAction.PIPELINE_STARTED,
                request=request,
                target=run,
                source="admin",
                changes={"steps": run.steps, **shown},
            )
            transaction.on_commit(lambda: _enqueue_pipeline(run, run.step_params))
            messages.success(request, f"Recomputation #{run.pk} ({', '.join(run.steps)}) was started.")
            return redirect(reverse("admin:pipeline_pipelinerun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Start a recomputation",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/pipeline/pipelinerun/start.html", context)


def _enqueue_pipeline(run: PipelineRun, params: dict | None) -> None:
    """Hand a created run to the workers; if the broker cannot take it, the run is failed with the
    reason (visible on its page) rather than left queued for ever."""
    try:
        tasks.pipeline_execute_task.apply_async(args=[run.pk, params])
    except Exception as exc:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise  # in-process: the step's own error is already recorded on the run
        log.exception("pipeline run %s could not be queued", run.pk)
        PipelineRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED,
            error=f"Could not be queued: {type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
