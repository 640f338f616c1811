"""Operator screens: create and edit campaigns with a live audience preview, preview the message for a
sample member, send a test to oneself, launch / pause / resume / cancel (with permissions), the report."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format

from accounts.audit import AuditedAdminMixin
from common import display
from common.operator_queries import OperatorQueryTimeout, operator_query_timeout
from profiles.models import Customer

from . import selectors, services
from .models import Campaign, CampaignsAuditAction, CampaignStatus, CampaignVariant, Delivery, DeliveryStatus
from .rendering import TemplateError, validate_template

ACTION_PERMS = {
    "launch": "launch_campaign",
    "pause": "pause_campaign",
    "resume": "pause_campaign",
    "cancel": "cancel_campaign",
}


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        exclude = ["status", "launched_at", "next_run_at", "completed_at", "attributed_at", "created_by"]
        widgets = {
            "goal": forms.Textarea(attrs={"rows": 2, "cols": 90}),
            "body_template": forms.Textarea(attrs={"rows": 6, "cols": 90, "spellcheck": "false"}),
            # leaving segments out is the exception: a short list, not a second two-box picker
            "excluded_segments": forms.SelectMultiple(attrs={"size": 4, "style": "height:6em"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the variants' settings matter only with variants: left empty, they keep their defaults
        for name in ("variant_mde", "variant_test_hours"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_variant_mde(self):
        value = self.cleaned_data.get("variant_mde")
        if value is None:
            return Campaign._meta.get_field("variant_mde").default
        if not value > 0:
            raise forms.ValidationError("The smallest lift worth detecting is a positive number of points.")
        return value

    def clean_variant_test_hours(self):
        value = self.cleaned_data.get("variant_test_hours")
        return Campaign._meta.get_field("variant_test_hours").default if value is None else value

    def clean_variant_test_percent(self):
        value = self.cleaned_data.get("variant_test_percent")
        if value is not None and not 0 < value < 100:
            raise forms.ValidationError(
                "The test's share is between 0 and 100 (empty: every recipient is in the test)."
            )
        return value

    def clean(self):
        data = super().clean()
        _check_templates(self, data)
        if data.get("kind") == "activity" and not data.get("promoted_item"):
            self.add_error("promoted_item", "An activity promotion needs its activity.")
        if data.get("schedule") in ("at", "daily", "weekly") and not data.get("send_at"):
            self.add_error("send_at", "This schedule needs a first send time.")
        return data


def _check_templates(form: forms.Form, data: dict) -> None:
    """A template error under the title or body field that holds it (the campaign's or a variant's)."""
    for name in ("title_template", "body_template"):
        if data.get(name):
            try:
                validate_template(data[name])
            except TemplateError as exc:
                form.add_error(name, f"Template error: {exc}")


class CampaignVariantForm(forms.ModelForm):
    class Meta:
        model = CampaignVariant
        fields = ["label", "share", "title_template", "body_template"]
        widgets = {
            "label": forms.TextInput(attrs={"size": 3}),
            "share": forms.NumberInput(attrs={"step": "any", "min": "0"}),
            "title_template": forms.TextInput(attrs={"size": 50}),
            "body_template": forms.Textarea(attrs={"rows": 3, "cols": 50, "spellcheck": "false"}),
        }

    def clean_label(self):
        label = (self.cleaned_data.get("label") or "").strip().upper()
        if not label.isalnum():
            raise forms.ValidationError("A label is a letter or two, e.g. A, B, C.")
        return label

    def clean_share(self):
        share = self.cleaned_data.get("share")
        if share is None or not share > 0:
            raise forms.ValidationError("A share is a positive number (the shares are made to add up).")
        return share

    def clean(self):
        data = super().clean()
        _check_templates(self, data)
        return data


class CampaignVariantFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if len(kept) == 1:
            raise forms.ValidationError("Variants are compared: add a second one (B), or delete the single one.")
        labels = [f.cleaned_data.get("label") for f in kept]
        if len(set(labels)) != len(labels):
            raise forms.ValidationError("Each variant needs its own label.")


class CampaignVariantInline(admin.TabularInline):
    """The message variants of a draft, folded: most campaigns have none."""

    model = CampaignVariant
    form = CampaignVariantForm
    formset = CampaignVariantFormSet
    extra = 0
    max_num = 5
    classes = ["collapse"]
    verbose_name = "message variant"
    verbose_name_plural = "Message variants (A/B test)"

    def _editable(self, obj):
        return obj is None or obj.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)


def _variants_words(campaign: Campaign) -> str:
    """How the launch splits the recipients among the variants, for the confirmation page ("" without)."""
    variants = services.campaign_variants(campaign)
    if len(variants) < 2:
        return ""
    shares = services.variant_shares(variants)
    split = ", ".join(f"{v.label} {display.percent(s, 0)}" for v, s in zip(variants, shares, strict=True))
    if campaign.variant_test_percent is None:
        return f"split among the variants: {split}"
    test = display.percent(campaign.variant_test_percent / 100, 0)
    return (
        f"{test} of them get the test ({split}); the rest get the winner "
        f"{campaign.variant_test_hours} h after the launch (A if none is named)"
    )


@admin.register(Campaign)
class CampaignAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_actions = (
        CampaignsAuditAction.CAMPAIGN_CREATED,
        CampaignsAuditAction.CAMPAIGN_CHANGED,
        CampaignsAuditAction.CAMPAIGN_DELETED,
    )
    form = CampaignForm
    inlines = [CampaignVariantInline]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = ("name", "kind", "channel", "status", "schedule", "launched_at", "created_by")
    list_filter = ("status", "kind", "channel")
    list_select_related = ("created_by",)
    search_fields = ("name", "goal")
    filter_horizontal = ("segments",)
    raw_id_fields = ("promoted_item", "goal_item")
    actions = ["launch_selected", "pause_selected", "cancel_selected"]
    # In the order an operator works: what it is, who gets it, when, over which channel and with what
    # message; the sending window, the frequency cap and the conversion goal are rarely changed and start
    # folded, so a draft's page fits about two screens.
    fieldsets = [
        ("What", {"fields": ["name", "goal", ("kind", "promoted_item")]}),
        (
            "Who",
            {
                "fields": ["segments", ("excluded_segments", "control_percent")],
                # a constant, no data: the live count is written into it by campaign-form.js
                "description": 'Audience: <strong id="audience-size">choose segments to see the audience size</strong>',
            },
        ),
        # the send time row shows only for a schedule that uses it (campaign-form.js)
        ("When", {"fields": ["schedule", ("send_at", "ends_at")]}),
        (
            "Channel and message",
            {"fields": ["channel", "title_template", "body_template", ("recommendation_kind", "recommendation_count")]},
        ),
        (
            "Advanced: sending window, frequency cap and conversion goal",
            {
                "classes": ["collapse"],
                "fields": [
                    ("window_start", "window_end"),
                    ("frequency_cap_count", "frequency_cap_days"),
                    ("goal_event_type", "attribution_days"),
                    ("goal_item", "goal_category"),
                ],
            },
        ),
        (
            "Variants' test: sensitivity and automatic winner send",
            {
                "classes": ["collapse"],
                "fields": [("variant_mde", "variant_test_percent", "variant_test_hours")],
                "description": "Only for a campaign with message variants (below). docs/campaigns.md, Variants.",
            },
        ),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or obj.launched_at is None:
            return fieldsets
        # A launched campaign's page leads with its report; its settings are history, folded.
        folded = []
        for name, options in fieldsets:
            options = {**options, "classes": ["collapse"] if name != "What" else []}
            options.pop("description", None)
            folded.append((name, options))
        return folded

    def has_change_permission(self, request, obj=None):
        # Only a draft (or a scheduled campaign not yet sent) is edited; the rest is history.
        if obj is not None and obj.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # A campaign that has deliveries is history: deleting it would take its deliveries (and its
        # report, and a recurring campaign's memory of whom it reached) with it. Cancel it instead.
        if obj is not None and Delivery.objects.filter(campaign=obj).exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        if Delivery.objects.filter(campaign__in=queryset).exists():
            raise PermissionDenied("A campaign with deliveries cannot be deleted; cancel it instead.")
        super().delete_queryset(request, queryset)

    def has_launch_permission(self, request):
        return request.user.has_perm("campaigns.launch_campaign")

    def has_pause_permission(self, request):
        return request.user.has_perm("campaigns.pause_campaign")

    def has_cancel_permission(self, request):
        return request.user.has_perm("campaigns.cancel_campaign")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def _apply(self, request, queryset, verb):
        fn = {
            "launch": services.campaign_launch,
            "pause": services.campaign_pause,
            "resume": services.campaign_resume,
            "cancel": services.campaign_cancel,
        }[verb]
        for campaign in queryset:
            try:
                fn(campaign=campaign, by=request.user, source="admin")
                messages.success(request, f"“{campaign}”: {campaign.get_status_display().lower()}.")
            except (services.TransitionError, TemplateError) as exc:
                messages.error(request, f"“{campaign}”: {exc}")

    @admin.action(description="Launch (or schedule) the selected campaigns", permissions=["launch"])
    def launch_selected(self, request, queryset):
        # Asks first (the confirmation page posts back here with `post`), as deleting does.
        if request.POST.get("post") != "yes":
            return self._launch_confirmation(request, list(queryset.order_by("pk")), bulk=True)
        self._apply(request, queryset, "launch")
        return None

    @admin.action(description="Pause the selected campaigns", permissions=["pause"])
    def pause_selected(self, request, queryset):
        self._apply(request, queryset, "pause")

    @admin.action(description="Cancel the selected campaigns", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        self._apply(request, queryset, "cancel")

    def get_urls(self):
        return [
            path("<int:pk>/do/<str:verb>/", self.admin_site.admin_view(self.do_view), name="campaigns_campaign_do"),
            path("<int:pk>/launch/", self.admin_site.admin_view(self.launch_view), name="campaigns_campaign_launch"),
            path(
                "<int:pk>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="campaigns_campaign_send_test",
            ),
            *super().get_urls(),
        ]

    def do_view(self, request, pk, verb):
        if request.method != "POST" or verb not in ACTION_PERMS:
            raise PermissionDenied
        if not request.user.has_perm(f"campaigns.{ACTION_PERMS[verb]}"):
            raise PermissionDenied(f"You need the permission campaigns.{ACTION_PERMS[verb]}.")
        self._apply(request, Campaign.objects.filter(pk=pk), verb)
        return redirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def launch_view(self, request, pk):
        """Launch, step one: who will get it. The page's button posts to do/launch."""
        if not request.user.has_perm("campaigns.launch_campaign"):
            raise PermissionDenied("You need the permission campaigns.launch_campaign.")
        campaign = get_object_or_404(Campaign, pk=pk)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            messages.error(request, f"“{campaign}” is {campaign.get_status_display().lower()}: it cannot be launched.")
            return redirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        return self._launch_confirmation(request, [campaign], bulk=False)

    def _launch_confirmation(self, request, campaigns, *, bulk: bool):
        """The page that asks before a launch: per campaign, its audience now, those with consent on its
        channel, the share held out as control, and so who will get the message."""
        rows, error = [], ""
        try:
            with operator_query_timeout():
                for campaign in campaigns:
                    audience = services.audience_preview(
                        segment_ids=campaign.segments.values_list("id", flat=True),
                        excluded_ids=campaign.excluded_segments.values_list("id", flat=True),
                        channel=campaign.channel,
                        control_percent=campaign.control_percent,
                    )
                    rows.append({"campaign": campaign, "audience": audience, "variants": _variants_words(campaign)})
        except OperatorQueryTimeout as exc:
            error = f"The audience could not be counted: {exc}"
        context = {
            **self.admin_site.each_context(request),
            "title": "Launch this campaign?" if len(campaigns) == 1 else f"Launch these {len(campaigns)} campaigns?",
            "opts": self.model._meta,
            "rows": rows,
            "audience_error": error,
            "bulk": bulk,
            "selected": [c.pk for c in campaigns],
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/launch_confirm.html", context)

    def send_test_view(self, request, pk):
        if request.method != "POST":
            raise PermissionDenied
        if not request.user.has_perm("campaigns.send_test_campaign"):
            raise PermissionDenied("You need the permission campaigns.send_test_campaign.")
        campaign = get_object_or_404(Campaign, pk=pk)
        customer = self._sample(campaign, request.POST.get("sample"))
        if customer is None:
            messages.error(request, "No sample member to render the message for.")
        else:
            try:
                services.campaign_send_test(campaign=campaign, user=request.user, customer=customer)
                messages.success(request, f"Test sent to {request.user.email}, rendered for {customer.external_id}.")
            except (ValueError, TemplateError) as exc:
                messages.error(request, str(exc))
        return redirect(
            reverse("admin:campaigns_campaign_change", args=[pk])
            + f"?sample={customer.external_id if customer else ''}"
        )

    @staticmethod
    def _sample(campaign, external_id=None):
        if external_id:
            return Customer.objects.filter(external_id=external_id).first()
        seg_ids = list(campaign.segments.values_list("id", flat=True))
        if not seg_ids:
            return None
        return (
            services.audience_queryset(
                segment_ids=seg_ids, excluded_ids=campaign.excluded_segments.values_list("id", flat=True)
            )
            .order_by("id")
            .first()
        )

    def _context(self, request, campaign):
        ctx = {"preview_url": reverse("campaigns-audience-preview")}
        ctx["campaign_form_config"] = {"preview_url": ctx["preview_url"]}
        if campaign is None:
            return ctx
        u = request.user
        ctx["can"] = {v: u.has_perm(f"campaigns.{p}") for v, p in ACTION_PERMS.items()}
        ctx["can"]["send_test"] = u.has_perm("campaigns.send_test_campaign")
        ctx["campaign_obj"] = campaign
        # The sample, its message and the report are operator queries: under the statement timeout,
        # and a timeout is a message on the page, not a 500.
        try:
            with operator_query_timeout():
                sample = self._sample(campaign, request.GET.get("sample"))
                if sample is not None:
                    try:
                        ctx["message_preview"] = services.message_preview(campaign=campaign, customer=sample)
                    except TemplateError as exc:
                        ctx["message_preview_error"] = str(exc)
                    previews = []
                    for variant in services.campaign_variants(campaign):
                        try:
                            preview = services.message_preview(campaign=campaign, customer=sample, variant=variant)
                            previews.append({"label": variant.label, "preview": preview})
                        except TemplateError as exc:
                            previews.append({"label": variant.label, "error": str(exc)})
                    ctx["variant_previews"] = previews
                ctx["sample"] = sample
                report = words = None
                if campaign.launched_at:
                    report = selectors.campaign_report(campaign)
                    words = selectors.campaign_report_words(campaign, report)  # the funnel's query too
        except OperatorQueryTimeout as exc:
            messages.error(request, f"The message preview and report are not shown: {exc}")
            return ctx
        ctx["status_history"] = selectors.campaign_status_history(campaign)
        if report is not None:
            ctx["report"] = report
            ctx["report_words"] = words
            ctx["chart_data"] = words["chart"]
        return ctx

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), **self._context(request, campaign)}
        return super().change_view(request, object_id, form_url, extra_context)

    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, {**(extra_context or {}), **self._context(request, None)})


class DeliveryGroupFilter(admin.SimpleListFilter):
    title = "group"
    parameter_name = "group"

    def lookups(self, request, model_admin):
        return [("treated", "Audience (sent to)"), ("control", "Control group (held out)")]

    def queryset(self, request, queryset):
        if self.value() in ("treated", "control"):
            return queryset.filter(is_control=self.value() == "control")
        return queryset


def delivery_status_words(delivery: Delivery) -> str:
    """What became of one message, in words: "Sent", "Not sent: no consent for email", "Failed: …"."""
    if delivery.is_control:
        return "Held out (not sent)"
    if delivery.status == DeliveryStatus.SUPPRESSED and delivery.reason:
        return f"Not sent: {selectors.suppression_words(delivery.campaign, delivery.reason)}"
    if delivery.status == DeliveryStatus.FAILED and delivery.error:
        return f"Failed: {delivery.error}"
    return delivery.get_status_display()


def _when(at) -> str:
    if not at:
        return ""
    at = timezone.localtime(at)
    return date_format(at, "j M H:i" if at.year == timezone.localtime().year else "j M Y H:i")


def delivery_progress_words(delivery: Delivery) -> str:
    """How far the customer went: "shown, opened, clicked · converted 2 Dec 10:04 (€20.00)"."""
    reached = (("shown", delivery.delivered_at), ("opened", delivery.opened_at), ("clicked", delivery.clicked_at))
    steps = [name for name, at in reached if at]
    text = ", ".join(steps)
    if delivery.converted_at:
        converted = f"converted {_when(delivery.converted_at)}"
        if delivery.revenue:
            converted += f" ({display.money(delivery.revenue)})"
        text = f"{text} · {converted}" if text else converted
    return text[:1].upper() + text[1:]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("recipient", "campaign", "group", "what_happened", "sent", "progress")
    list_display_links = ("recipient",)
    list_filter = ("campaign__channel", "status", "reason", DeliveryGroupFilter)
    list_select_related = ("campaign", "customer", "variant")
    search_fields = ("=customer__external_id", "=provider_key")
    show_full_result_count = False
    fields = (
        "campaign",
        "recipient",
        "group",
        "what_happened",
        "title",
        "body",
        "sent",
        "progress",
        "attempts",
    )
    readonly_fields = fields

    def get_list_display(self, request):
        # the list of one campaign's deliveries (the report's link) need not repeat the campaign's name
        if "campaign__id__exact" in request.GET:
            return tuple(c for c in self.list_display if c != "campaign")
        return self.list_display

    @admin.display(description="customer", ordering="customer__external_id")
    def recipient(self, obj):
        return str(obj.customer)

    @admin.display(description="group", ordering="is_control", empty_value="")
    def group(self, obj):
        # Only the exception is marked: a recipient is the normal case, not a red cross.
        if obj.is_control:
            return "Control group"
        if obj.variant_id is not None:
            return f"Variant {obj.variant.label}" + ("" if obj.variant_test else " (the winner send)")
        return ""

    @admin.display(description="status", ordering="status")
    def what_happened(self, obj):
        return delivery_status_words(obj)

    @admin.display(description="sent", ordering="sent_at", empty_value="")
    def sent(self, obj):
        return _when(obj.sent_at)

    @admin.display(description="what the customer did", empty_value="")
    def progress(self, obj):
        return delivery_progress_words(obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # written by launches, sends and tracking only

    def has_delete_permission(self, request, obj=None):
        return False  # the record of what was sent: reports and recurring campaigns rely on it
