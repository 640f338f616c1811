"""The console's recommender configurations: create one, set its algorithm's parameters (each a form
field, checked against the algorithm, the error next to the field), weigh the events, blend several,
make one the default, and compare the runs each served."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.audit import AuditedAdminMixin
from common import display

from . import algorithms, services
from .models import Algorithm, BlendComponent, RecommendationsAuditAction, RecommenderConfig, RecommenderRun

RUNS_SHOWN = 10


def _field_name(algorithm: str, parameter: str) -> str:
    return f"{algorithm}__{parameter}"


def _form_field(p: algorithms.Parameter) -> forms.Field:
    default = ("on" if p.default else "off") if p.type is bool else p.default
    help_text = f"{p.help} Default: {default}."
    if p.type is bool:
        return forms.BooleanField(label=p.verbose, required=False, help_text=help_text)
    if p.choices:
        return forms.ChoiceField(
            label=p.verbose, choices=[(c, c) for c in p.choices], help_text=help_text, required=False
        )
    # The range is checked by algorithms.validate, for the chosen algorithm only (the page holds every
    # algorithm's fields); the browser is told it too.
    attrs = {"step": "1" if p.type is int else "any"}
    attrs.update({k: f"{v:g}" for k, v in (("min", p.min), ("max", p.max)) if v is not None})
    kwargs = {"label": p.verbose, "required": False, "help_text": help_text, "widget": forms.NumberInput(attrs=attrs)}
    return forms.IntegerField(**kwargs) if p.type is int else forms.FloatField(**kwargs)


def _weight_fields() -> dict[str, forms.Field]:
    return {
        f"weight__{etype}": forms.FloatField(
            label=etype.replace("_", " ").capitalize(),
            required=False,
            min_value=0,
            max_value=1000,
            help_text=f"Shop's weight: {value:g}.",
            widget=forms.NumberInput(attrs={"placeholder": f"{value:g}", "step": "any", "style": "width: 6em"}),
        )
        for etype, value in settings.EVENT_WEIGHTS.items()
    }


class RecommenderConfigForm(forms.ModelForm):
    """The configuration's own fields, plus one field per parameter of every algorithm (the page shows
    the chosen algorithm's) and one per event weight. Stored: the parameters that differ from the
    algorithm's defaults, and the weights that differ from the shop's."""

    class Meta:
        model = RecommenderConfig
        fields = ("name", "description", "algorithm", "half_life_days")
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 80})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = (self.instance.params or {}) if self.instance.pk else {}
        for algo in algorithms.ALGORITHMS.values():
            for p in algo.parameters:
                name = _field_name(algo.key, p.name)
                self.fields[name] = _form_field(p)
                own = stored.get(p.name) if self.instance.algorithm == algo.key else None
                self.fields[name].initial = p.default if own is None else own
        weights = self.instance.event_weights or {}
        for name, field in _weight_fields().items():
            self.fields[name] = field
            field.initial = weights.get(name.removeprefix("weight__"))

    def clean(self):
        cleaned = super().clean()
        key = cleaned.get("algorithm")
        if not key:
            return cleaned
        algo = algorithms.ALGORITHMS[key]
        given = {}
        for p in algo.parameters:
            value = cleaned.get(_field_name(key, p.name))
            if value is None or value == "":
                continue  # left empty: the default
            if value != p.default:
                given[p.name] = value
        try:
            self._params = algorithms.validate(key, given)
        except algorithms.InvalidParameters as exc:
            for name, message in exc.errors.items():
                field = _field_name(key, name)
                self.add_error(field if field in self.fields else None, message)
        self._weights = {
            name.removeprefix("weight__"): float(cleaned[name])
            for name in self.fields
            if name.startswith("weight__")
            and cleaned.get(name) is not None
            and float(cleaned[name]) != float(settings.EVENT_WEIGHTS[name.removeprefix("weight__")])
        }
        return cleaned

    def save(self, commit=True):
        self.instance.params = getattr(self, "_params", {})
        self.instance.event_weights = getattr(self, "_weights", {})
        return super().save(commit=commit)


def param_fieldsets():
    """One fieldset per algorithm with parameters; the page's script shows the chosen algorithm's."""
    return [
        (
            f"Parameters: {algo.label}",
            {
                "fields": [_field_name(algo.key, p.name) for p in algo.parameters],
                "classes": ("algo-params", f"algo-{algo.key}"),
                "description": algo.description,
            },
        )
        for algo in algorithms.ALGORITHMS.values()
        if algo.parameters
    ]


class BlendComponentFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        blend = self.instance
        rows = [
            f.cleaned_data
            for f in self.forms
            if getattr(f, "cleaned_data", None) and not f.cleaned_data.get("DELETE") and f.cleaned_data.get("config")
        ]
        if blend.algorithm != Algorithm.BLEND:
            if rows:
                raise ValidationError("Only a blend has components: choose “Blend of configurations” or remove them.")
            return
        if len(rows) < 2:
            raise ValidationError("A blend needs at least two configurations.")
        for row in rows:
            part = row["config"]
            if blend.pk and part.pk == blend.pk:
                raise ValidationError("A blend cannot contain itself.")
            if part.algorithm == Algorithm.BLEND:
                raise ValidationError(f"“{part.name}” is a blend itself; a blend weighs plain configurations.")


class BlendComponentInline(admin.TabularInline):
    model = BlendComponent
    fk_name = "blend"
    formset = BlendComponentFormSet
    extra = 2
    fields = ("config", "weight")
    verbose_name = "configuration in this blend"
    verbose_name_plural = "Configurations in this blend (used when the algorithm is “Blend of configurations”)"
    classes = ("blend-components",)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "config":  # choose among the saved ones; no add/edit pop-ups from here
            field.widget = field.widget.widget if hasattr(field.widget, "widget") else field.widget
        return field


@admin.register(RecommenderConfig)
class RecommenderConfigAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = RecommenderConfigForm
    inlines = (BlendComponentInline,)
    audit_actions = (
        RecommendationsAuditAction.CONFIG_CREATED,
        RecommendationsAuditAction.CONFIG_CHANGED,
        RecommendationsAuditAction.CONFIG_DELETED,
    )
    list_display = ("name", "algorithm_label", "default_badge", "last_run", "last_ndcg", "runs_count", "updated")
    list_display_links = ("name",)
    empty_value_display = ""
    search_fields = ("name", "description")
    actions = ("make_default",)
    readonly_fields = ("default_status", "settings_summary", "runs_table")

    class Media:
        js = ("marketing/js/recommender-config.js",)

    def get_queryset(self, request):
        # the list's run columns come with the rows: no query per configuration
        last = RecommenderRun.objects.filter(config=OuterRef("pk"), status="succeeded").order_by("-started_at")
        return (
            super()
            .get_queryset(request)
            .prefetch_related("components__config")
            .annotate(
                n_runs=Count("runs"),
                last_run_id=Subquery(last.values("pk")[:1]),
                last_run_at=Subquery(last.values("started_at")[:1]),
                last_run_ndcg=Subquery(last.values("ndcg_at_10")[:1]),
            )
        )

    def get_fieldsets(self, request, obj=None):
        weights = list(_weight_fields())
        sets = [
            (None, {"fields": ("name", "description", "algorithm", "default_status")}),
            *param_fieldsets(),
            (
                "What the model learns from",
                {
                    "fields": ("half_life_days", *weights),
                    "classes": ("collapse",),
                    "description": "Leave a weight empty to use the shop's (EVENT_WEIGHTS); 0 ignores that event.",
                },
            ),
        ]
        if obj is not None:
            sets += [
                ("In effect", {"fields": ("settings_summary",)}),
                ("Runs that served it", {"fields": ("runs_table",)}),
            ]
        return sets

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["fields"] = ("name", "description", "algorithm", "half_life_days")
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_default:
            return False  # choose another default first
        return super().has_delete_permission(request, obj)

    @admin.display(description="algorithm", ordering="algorithm")
    def algorithm_label(self, obj):
        label = Algorithm(obj.algorithm).label
        if obj.algorithm == Algorithm.BLEND:
            parts = [f"{c.config.name} ×{c.weight:g}" for c in obj.components.all()]
            return f"{label}: {', '.join(parts)}" if parts else label
        return label

    @admin.display(description="served")
    def default_status(self, obj):
        if obj is not None and obj.is_default:
            return "The default: every recomputation serves it unless a run names another."
        return "Not the default. To serve it, use the list's action “Make the selected configuration the default”."

    @admin.display(description="default", boolean=False, ordering="is_default")
    def default_badge(self, obj):
        return "Default" if obj.is_default else ""

    @admin.display(description="last run")
    def last_run(self, obj):
        if obj.last_run_id is None:
            return "never served"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:recommendations_recommenderrun_change", args=[obj.last_run_id]),
            display.when(obj.last_run_at),
        )

    @admin.display(description="NDCG@10 (last run)")
    def last_ndcg(self, obj):
        return display.number(obj.last_run_ndcg, 3)

    @admin.display(description="last changed", ordering="updated_at")
    def updated(self, obj):
        return display.when(obj.updated_at)

    @admin.display(description="runs")
    def runs_count(self, obj):
        return obj.n_runs

    @admin.display(description="parameters in effect")
    def settings_summary(self, obj):
        try:
            cfg = services.recommender_settings(obj)
        except (algorithms.InvalidParameters, ValueError) as exc:
            return f"Not valid: {exc}"
        params = cfg["model_params"]
        rows = (
            [(name, f"weight {c['weight']:g}") for name, c in params["components"].items()]
            if "components" in params
            else [(name, value) for name, value in params.items()]
        )
        rows.append(("half-life", display.days(cfg["half_life_days"]).replace("today", "0 days")))
        rows += [(f"weight of {k.replace('_', ' ')}", f"{v:g}") for k, v in cfg["weights"].items()]
        return format_html(
            '<table class="marketing-table"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    @admin.display(description="recent runs")
    def runs_table(self, obj):
        runs = list(obj.runs.order_by("-started_at")[:RUNS_SHOWN])
        if not runs:
            return "No run has served this configuration yet. Start a recomputation naming it, or make it the default."
        rows = []
        for run in runs:
            baseline = (run.metrics or {}).get("product", {}).get("popularity", {}).get("ndcg@10")
            rows.append(
                (
                    reverse("admin:recommendations_recommenderrun_change", args=[run.pk]),
                    display.when(run.started_at),
                    run.get_status_display(),
                    display.number(run.ndcg_at_10, 3),
                    display.number(baseline, 3),
                    display.percent(run.precision_at_10),
                    display.percent(run.coverage),
                    display.duration(run.duration_s),
                )
            )
        return format_html(
            '<table class="marketing-table"><thead><tr><th>run</th><th>status</th><th>NDCG@10</th>'
            "<th>best-sellers' NDCG@10</th><th>precision@10</th><th>catalogue coverage</th><th>took</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join(
                "",
                '<tr><td><a href="{}">{}</a></td>' + "<td>{}</td>" * 6 + "</tr>",
                rows,
            ),
        )

    @admin.action(description="Make the selected configuration the default", permissions=["change"])
    def make_default(self, request, queryset):
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, "Select exactly one configuration to make the default.", messages.ERROR)
            return
        config = chosen[0]
        if services.config_make_default(config, request=request):
            self.message_user(
                request,
                f"“{config.name}” is now the default: the next recomputation serves it.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, f"“{config.name}” already is the default.", messages.INFO)
