"""Operator screens: segments (clustering and rule), their members and size over time, clustering runs."""

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from accounts.audit import AuditedAdminMixin
from common import display
from common.operator_queries import OperatorQueryTimeout
from pipeline import figures

from . import selectors
from .models import ClusteringRun, Membership, Segment, SegmentKind, SegmentsAuditAction, SegmentSize
from .predictive import TEMPLATES as PREDICTIVE_TEMPLATES
from .rules import FIELD_LABELS, RuleError, describe_rule, rule_grammar, validate_rule
from .services import rule_segment_refresh_now

RULE_EXAMPLE = {
    "all": [
        {"field": "lifecycle", "op": "=", "value": "at-risk"},
        {"event": {"type": "purchase", "min_count": 2, "within_days": 365}},
        {"consent": "email"},
    ]
}


class SegmentForm(forms.ModelForm):
    rule = forms.JSONField(
        required=False,
        label="Rule",
        widget=forms.Textarea(
            attrs={"rows": 14, "cols": 90, "class": "vLargeTextField", "spellcheck": "false", "id": "id_rule"}
        ),
        help_text="Who belongs to the segment: build it with conditions and groups; the Advanced (JSON) view "
        "shows the same rule as JSON (docs/rules.md). The audience size updates as you change it.",
    )

    class Meta:
        model = Segment
        fields = ["name", "description", "kind", "rule", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            # Operators add rule segments only; clustering segments come from the segments step.
            self.instance.kind = SegmentKind.RULE
            if "rule" in self.fields:
                self.fields["rule"].initial = RULE_EXAMPLE
        if "kind" in self.fields:
            self.fields["kind"].initial = self.instance.kind
            self.fields["kind"].disabled = True
        if "active" in self.fields:
            self.fields["active"].help_text = (
                "Active rule segments are refreshed on every pipeline run and offered to campaigns."
                if self.instance.kind == SegmentKind.RULE
                else "Each clustering run keeps the segments it matches active; one no later run matched "
                "becomes inactive."
            )
        if "description" in self.fields:
            self.fields["description"].help_text = "For the team: what the segment is for."

    def clean(self):
        data = super().clean()
        kind = self.instance.kind
        if kind == SegmentKind.CLUSTER and not self.instance.pk:
            raise forms.ValidationError(
                "Clustering segments are created by the segments step; add a rule segment instead."
            )
        if kind == SegmentKind.RULE:
            rule = data.get("rule")
            if rule in (None, "", {}):
                self.add_error("rule", "A rule segment needs a rule.")
            else:
                try:
                    validate_rule(rule, segment_id=self.instance.pk)
                except RuleError as exc:
                    self.add_error("rule", [f"{e['path'] or 'the rule'}: {e['message']}" for e in exc.errors])
        return data


class SizeTrendMixin:
    @admin.display(description="trend")
    def trend(self, obj):
        prev = getattr(obj, "previous_size", None)
        if prev is None:
            return "–"
        delta = obj.size - prev
        if delta == 0:
            return "="
        return format_html(
            '<span style="color:{}">{}{}</span>',
            "#2e7d32" if delta > 0 else "#c62828",
            "+" if delta > 0 else "−",
            display.number(abs(delta)),
        )


def _ago(when) -> str:
    """`2 hours ago`, or `never` for a segment not refreshed yet."""
    if when is None:
        return "never"
    return f"{timesince(when).split(',')[0]} ago"


@admin.register(Segment)
class SegmentAdmin(AuditedAdminMixin, SizeTrendMixin, admin.ModelAdmin):
    audit_actions = (
        SegmentsAuditAction.SEGMENT_CREATED,
        SegmentsAuditAction.SEGMENT_CHANGED,
        SegmentsAuditAction.SEGMENT_DELETED,
    )
    audit_exclude = ("name_locked",)
    form = SegmentForm
    change_form_template = "admin/segments/segment/change_form.html"
    list_display = ("name", "kind", "definition", "size_link", "trend", "refreshed", "active")
    list_filter = ("kind", "active")
    list_select_related = ("clustering_run",)
    search_fields = ("name", "description")
    readonly_fields = (
        "kind",
        "size_shown",
        "refreshed",
        "centroid_table",
        "rule_description",
        "members_link",
        "clustering_run_link",
    )

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        # The size before the latest refresh, for the trend column, in the same query.
        previous = SegmentSize.objects.filter(segment=OuterRef("pk")).order_by("-at").values("size")[1:2]
        return qs.annotate(previous_size=Subquery(previous))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["name", "description", "rule", "active"]})]
        if obj.kind == SegmentKind.RULE:
            return [
                (None, {"fields": ["name", "description", "rule", "active"]}),
                ("Audience", {"fields": ["rule_description", "size_shown", "refreshed", "members_link"]}),
            ]
        return [
            (None, {"fields": ["name", "description", "kind", "active", "size_shown", "refreshed", "members_link"]}),
            ("Centroid (the typical member)", {"fields": ["centroid_table", "clustering_run_link"]}),
        ]

    @admin.display(description="definition")
    def definition(self, obj):
        if obj.kind != SegmentKind.RULE:
            run = obj.clustering_run
            when = run.started_at if run else None
            return f"found by clustering on {when.day} {when:%b %Y}" if when else "found by clustering"
        return self.rule_description(obj)

    @admin.display(description="size", ordering="size")
    def size_shown(self, obj):
        return display.number(obj.size)

    @admin.display(description="size", ordering="size")
    def size_link(self, obj):
        """The size, linking to the members."""
        url = reverse("admin:segments_membership_changelist") + f"?segment__id__exact={obj.pk}"
        return format_html('<a href="{}" title="see the members">{}</a>', url, display.number(obj.size))

    @admin.display(description="last refreshed", ordering="refreshed_at")
    def refreshed(self, obj):
        return _ago(obj.refreshed_at)

    @admin.display(description="members")
    def members_link(self, obj):
        if not obj.pk:
            return "–"
        url = reverse("admin:segments_membership_changelist") + f"?segment__id__exact={obj.pk}"
        return format_html('<a href="{}">{} members</a>', url, display.number(obj.size))

    @admin.display(description="saved rule, in words")
    def rule_description(self, obj):
        try:
            return describe_rule(obj.rule) if obj.rule else "–"
        except RuleError:
            return "(invalid rule)"

    @admin.display(description="clustering run")
    def clustering_run_link(self, obj):
        run = obj.clustering_run
        if run is None:
            return "–"
        url = reverse("admin:segments_clusteringrun_change", args=[run.pk])
        k = f", {run.chosen_k} segments" if run.chosen_k else ""
        when = f"{run.started_at.day} {run.started_at:%b %Y %H:%M}"
        return format_html('<a href="{}">the clustering of {}{}</a>', url, when, k)

    @admin.display(description="centroid")
    def centroid_table(self, obj):
        if not obj.centroid:
            return "–"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td></tr>",
            (
                (FIELD_LABELS.get(k, display.words(k)), display.number(v, 2) if v is not None else display.MISSING)
                for k, v in obj.centroid.items()
            ),
        )
        return format_html("<table>{}</table>", rows)

    def save_model(self, request, obj, form, change):
        if obj.kind == SegmentKind.CLUSTER and change and "name" in form.changed_data:
            obj.name_locked = True  # re-runs keep an operator's name
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if obj.kind == SegmentKind.RULE:
            try:  # under the operator statement timeout; the segment stays saved when it strikes
                size = rule_segment_refresh_now(segment=obj)
            except OperatorQueryTimeout as exc:
                messages.error(request, f"“{obj.name}” was saved, but its members were not refreshed: {exc}")
            else:
                messages.info(request, f"“{obj.name}” now has {display.number(size)} members.")

    def _rule_context(self, segment):
        url = reverse("segments-preview")
        context = {"preview_url": url}
        if segment is None or segment.kind == SegmentKind.RULE:
            # The builder is drawn from the grammar itself and the shop's own categories and segments.
            context["segment_form_config"] = {"preview_url": url, "segment_id": segment.pk if segment else None}
            context["rule_grammar"] = rule_grammar()
            context["rule_choices"] = selectors.rule_builder_choices()
        return context

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        segment = self.get_object(request, object_id)
        history = selectors.size_history(segment) if segment is not None else []
        if history:
            extra_context["size_chart"] = {
                "labels": [h.at.strftime("%Y-%m-%d %H:%M") for h in history],
                "sizes": [h.size for h in history],
            }
        extra_context.update(self._rule_context(segment))
        return super().change_view(request, object_id, form_url, extra_context)

    def _predictive_template(self, request):
        """The ready-made predictive segment asked for (?template=churn|value|category&category=...),
        or None; a template that needs a category names it from the shop's own categories."""
        template = PREDICTIVE_TEMPLATES.get(request.GET.get("template", ""))
        if template is None:
            return None, None
        category = request.GET.get("category") or None
        if template.needs_category and not selectors.category_exists(category or ""):
            return template, None
        return template, category

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        for key in ("template", "category"):
            initial.pop(key, None)  # the template's own words, not form fields
        template, category = self._predictive_template(request)
        if template is not None and (category or not template.needs_category):
            initial.update(template.fill(category))
        return initial

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), **self._rule_context(None)}
        template, category = self._predictive_template(request)
        if template is not None and template.needs_category and category is None:
            messages.warning(request, f"“{template.title}”: pick one of the shop's categories.")
        extra_context["predictive_templates"] = [
            {
                "key": t.key,
                "title": t.title,
                "description": t.description.format(category="the category"),
                "needs_category": t.needs_category,
            }
            for t in PREDICTIVE_TEMPLATES.values()
        ]
        extra_context["predictive_categories"] = extra_context["rule_choices"]["categories"]
        extra_context["predictive_chosen"] = template.key if template else ""
        return super().add_view(request, form_url, extra_context)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("customer", "segment", "since")
    list_filter = ("segment__kind", "segment")
    list_select_related = ("customer", "segment")
    search_fields = ("=customer__external_id", "customer__name", "customer__email")
    raw_id_fields = ("customer", "segment")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # memberships come from the segments step and rule refreshes

    def has_change_permission(self, request, obj=None):
        return False


# A clustering feature's name in words, and whether it is an amount of money (centroids table).
CLUSTER_FEATURES = {
    "recency_days": ("Days since last purchase", False),
    "frequency": ("Orders", False),
    "monetary": ("Spend", True),
    "avg_order_value": ("Average order", True),
    "median_price": ("Median price bought", True),
    "events_30d": ("Events in 30 days", False),
    "community_actions": ("Community actions", False),
    "active_days": ("Active days", False),
}


def _feature_label(name: str) -> str:
    return CLUSTER_FEATURES.get(name, (display.words(name), False))[0]


def _feature_value(name: str, value) -> str:
    if CLUSTER_FEATURES.get(name, ("", False))[1]:
        return display.money(value)
    return display.number(value, 1)


@admin.register(ClusteringRun)
class ClusteringRunAdmin(admin.ModelAdmin):
    change_form_template = "admin/segments/clusteringrun/change_form.html"
    list_display = ("run_title", "started", "status_badge", "method_text", "customers", "chosen_k", "took")
    list_display_links = ("run_title",)
    list_filter = ("status", "method")
    fields = ("summary_table", "error")
    readonly_fields = ("summary_table", "error")

    def get_fields(self, request, obj=None):
        return self.fields if obj is None or obj.error else ("summary_table",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a record of what a run did; the charts below show its figures

    @admin.display(description="run", ordering="id")
    def run_title(self, obj):
        return f"Clustering run #{obj.pk}"

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return display.when(obj.started_at)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return figures.status_badge(obj.status)

    @admin.display(description="method", ordering="method")
    def method_text(self, obj):
        return figures.value_text("method", obj.method)

    @admin.display(description="customers", ordering="n_customers")
    def customers(self, obj):
        return display.number(obj.n_customers)

    @admin.display(description="took", ordering="duration_s")
    def took(self, obj):
        return display.duration(obj.duration_s)

    @admin.display(description="what it did")
    def summary_table(self, obj):
        best = max((s for s in obj.silhouette if s is not None), default=None)
        chosen_silhouette = (
            obj.silhouette[obj.ks.index(obj.chosen_k)] if obj.chosen_k in obj.ks and obj.silhouette else None
        )
        run = [
            figures.Row("Status", figures.status_label(obj.status)),
            figures.Row("Method", figures.value_text("method", obj.method)),
            figures.Row("Customers clustered", display.number(obj.n_customers)),
            figures.Row("Started", display.when(obj.started_at)),
            figures.Row("Took", display.duration(obj.duration_s)),
        ]
        if obj.step_id and obj.step is not None and obj.step.pipeline_id:
            url = reverse("admin:pipeline_pipelinerun_change", args=[obj.step.pipeline_id])
            run.append(figures.Row("Pipeline run", f"Recomputation #{obj.step.pipeline_id}", 0, url))
        choice = [
            figures.Row("k tried", f"{obj.k_min} to {obj.k_max}" if obj.k_pinned is None else "pinned"),
            figures.Row("k pinned by the operator", display.number(obj.k_pinned)),
            figures.Row("Elbow of the inertia curve at k", display.number(obj.elbow_k)),
            figures.Row("Best silhouette at k", display.number(obj.silhouette_k)),
            figures.Row("Number of segments chosen (k)", display.number(obj.chosen_k)),
            figures.Row("Silhouette of the chosen k", figures.value_text("silhouette", chosen_silhouette)),
            figures.Row("Best silhouette", figures.value_text("silhouette", best)),
            figures.Row("Why", obj.choice_reason or display.MISSING),
        ]
        # the segments' own sizes are in the table of centroids below; without it, sizes by cluster
        sizes = [figures.Row(f"Segment {i + 1}", display.number(n)) for i, n in enumerate(obj.sizes or [])]
        sizes = [] if obj.centroids else sizes
        features = [figures.Row(_feature_label(f), "") for f in obj.features or []]
        groups = [
            {"title": "The run", "rows": [r.as_dict() for r in run]},
            {"title": "Choosing k", "rows": [r.as_dict() for r in choice]},
        ]
        if sizes:
            groups.append({"title": "Segment sizes", "rows": [r.as_dict() for r in sizes]})
        if features:
            groups.append({"title": "Features clustered on", "rows": [r.as_dict() for r in features]})
        return figures.figures_html(groups)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "subtitle": None}
        if run is not None:
            extra_context["title"] = f"Clustering run #{run.pk}"
            extra_context["chart_data"] = {
                "ks": run.ks,
                "inertia": run.inertia,
                "silhouette": run.silhouette,
                "chosen_k": run.chosen_k,
                "elbow_k": run.elbow_k,
            }
            extra_context["clusters"] = [
                {
                    "segment": c.get("segment"),
                    "name": c.get("name", ""),
                    "size": display.number(c.get("size")),
                    "values": [_feature_value(f, (c.get("centroid") or {}).get(f)) for f in run.features],
                }
                for c in run.centroids
            ]
            extra_context["features"] = [_feature_label(f) for f in run.features]
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Clustering runs", **(extra_context or {})})
