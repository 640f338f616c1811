"""Operator screens for customers, catalogue items and behaviour events."""
import json
import logging

import pandas as pd
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection, models
from django.utils.functional import cached_property
from django.urls import reverse
from django.utils.html import format_html
from django.utils.module_loading import import_string
from django.db.models import Max, Min
from django.utils import timezone

from . import access, services
from .audit import AuditedAdminMixin, audit_record
from .models import ApiKey, ApiKeyScope, AuditAction, AuditEntry, ConsentChange, Customer, Event, Item, Profile

log = logging.getLogger(__name__)


class RangeDatesQuerySet(models.QuerySet):
    """Date drill-down without a full scan.

    The admin's date hierarchy asks for the DISTINCT months (or days) of every row, which scans the
    whole events table. This answers with the periods between the first and last date instead (two
    index lookups), which may include a period with no rows.
    """

    _FREQ = {"year": "YS", "month": "MS", "day": "D"}

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if not bounds["first"]:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        first = pd.Timestamp(bounds["first"]).tz_convert(zone)
        last = pd.Timestamp(bounds["last"]).tz_convert(zone)
        start = {"year": first.normalize().replace(month=1, day=1), "month": first.normalize().replace(day=1)}.get(kind, first.normalize())
        periods = pd.date_range(start, last, freq=self._FREQ[kind])
        values = [p.to_pydatetime() for p in periods]
        return values if order == "ASC" else values[::-1]


class EstimatedCountPaginator(Paginator):
    """Pages of a table of tens of millions of rows without counting them all on every page load.

    Unfiltered, PostgreSQL's own row estimate (pg_class.reltuples) stands in for COUNT(*), which
    would scan the whole table; filtered lists are counted exactly.
    """

    @cached_property
    def count(self):
        qs = self.object_list
        if connection.vendor == "postgresql" and isinstance(qs, models.QuerySet) and not qs.query.where:
            with connection.cursor() as cur:
                cur.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [qs.model._meta.db_table])
                row = cur.fetchone()
            if row and row[0] > 100_000:
                return int(row[0])
        return super().count


def _range_dates(qs: models.QuerySet) -> RangeDatesQuerySet:
    return RangeDatesQuerySet(model=qs.model, query=qs.query, using=qs._db)


class RecentEventInline(admin.TabularInline):
    model = Event
    fk_name = "customer"
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("occurred_at", "type", "item", "value", "amount")
    readonly_fields = fields
    ordering = ("-occurred_at",)
    show_change_link = True
    verbose_name_plural = "Recent events (latest 20)"

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("item")
        # The inline shows the latest 20; slicing keeps the page cheap for busy customers.
        ids = list(qs.filter(customer_id=request.resolver_match.kwargs.get("object_id")).order_by("-occurred_at").values_list("id", flat=True)[:20])
        return qs.filter(id__in=ids)


class ConsentChangeInline(admin.TabularInline):
    model = ConsentChange
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("at", "channel", "granted", "source", "changed_by")
    readonly_fields = fields
    verbose_name_plural = "Consent history"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("changed_by")


@admin.register(Customer)
class CustomerAdmin(AuditedAdminMixin, admin.ModelAdmin):
    # Who changed a customer, and which fields; personal values are not copied into the log, and
    # consent changes have entries of their own.
    audit_actions = (AuditAction.CUSTOMER_CREATED, AuditAction.CUSTOMER_CHANGED, AuditAction.CUSTOMER_DELETED)
    audit_exclude = tuple(services.CONSENT_CHANNELS)
    list_display = ("external_id", "name", "email", "time_zone", "consent_in_app", "consent_email", "consent_push", "created_at")
    list_filter = ("consent_in_app", "consent_email", "consent_push", "time_zone")
    search_fields = ("=external_id", "name", "email")
    date_hierarchy = "created_at"
    readonly_fields = ("consent_updated_at",)
    show_full_result_count = False

    def get_inlines(self, request, obj):
        # The page's sections come from several apps (segments, suggestions, messages); which, and in
        # what order, is listed in settings.CUSTOMER_ADMIN_SECTIONS, so profiles names no app above it.
        return [import_string(path) for path in settings.CUSTOMER_ADMIN_SECTIONS]

    def audit_label(self, obj) -> str:
        return obj.external_id

    def save_model(self, request, obj, form, change):
        consent = {f: form.cleaned_data[f] for f in services.CONSENT_CHANNELS if f in form.changed_data}
        if change and consent:
            # consents go through the service, which stamps and records each change
            stored = Customer.objects.get(pk=obj.pk)
            for f in consent:
                setattr(obj, f, getattr(stored, f))
            super().save_model(request, obj, form, change)
            services.customer_consent_set(customer=obj, source="admin", user=request.user, **consent)
            return
        super().save_model(request, obj, form, change)

    def get_queryset(self, request):
        return _range_dates(super().get_queryset(request))

    # Delete (the button and the bulk action) forgets: a cascade would take the customer's campaign
    # deliveries with it and change past reports, and would leave their identity in the logs.
    FORGET_SUMMARY = ("forgotten rather than deleted: events, profile, segment memberships, suggestions, impressions and "
                      "consent history are removed, name, email and attributes cleared and the external id replaced by a "
                      "pseudonym; campaign deliveries stay counted in reports, emptied of what they said")

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        summary = [f"{self.audit_label(o)}: {self.FORGET_SUMMARY}" for o in objs]
        perms_needed = set() if self.has_delete_permission(request) else {Customer._meta.verbose_name}
        return summary, {"customers to forget": len(objs)}, perms_needed, []

    def delete_model(self, request, obj):
        from .privacy import customer_forget

        customer_forget(customer=obj, by=request.user, source="admin", request=request)

    def delete_queryset(self, request, queryset):
        from .privacy import customer_forget

        for customer in queryset.order_by("pk"):
            customer_forget(customer=customer, by=request.user, source="admin", request=request)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("external_id", "kind", "title", "category", "price", "active", "created_at")
    list_filter = ("kind", "active", "category")
    search_fields = ("=external_id", "title", "category")
    date_hierarchy = "created_at"
    list_editable = ("active",)
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "type", "customer", "item", "value", "amount", "external_id")
    list_filter = ("type", "item__kind")
    list_select_related = ("customer", "item")
    search_fields = ("=external_id", "=customer__external_id", "=item__external_id")
    date_hierarchy = "occurred_at"
    raw_id_fields = ("customer", "item")
    readonly_fields = ("received_at",)
    # Counting millions of events on every page load is what makes admin lists slow.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50

    def get_queryset(self, request):
        return _range_dates(super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        """An exact id: the event's, its customer's or its item's.

        Resolving the customer and item ids first (each an indexed lookup) lets the database use
        the events' indexes; an OR across the joined tables would scan every event.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        customers = list(Customer.objects.filter(external_id=term).values_list("id", flat=True))
        items = list(Item.objects.filter(external_id=term).values_list("id", flat=True))
        condition = models.Q(external_id=term)
        if customers:
            condition |= models.Q(customer_id__in=customers)
        if items:
            condition |= models.Q(item_id__in=items)
        return queryset.filter(condition), False


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    extra = 0
    max_num = 0
    verbose_name = verbose_name_plural = "Profile (computed)"
    fields = (
        ("lifecycle", "rfm_code", "r_score", "f_score", "m_score"),
        ("recency_days", "frequency", "monetary", "avg_order_value"),
        ("top_categories", "price_band", "median_price"),
        ("active_days", "events_30d", "n_events", "orders_total"),
        ("community_posts", "community_comments", "community_likes"),
        ("first_seen", "last_seen", "computed_at"),
        "interests",
    )
    readonly_fields = [f for row in fields for f in (row if isinstance(row, tuple) else (row,))]


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("customer", "lifecycle", "rfm_code", "recency_days", "frequency", "monetary", "top_category", "computed_at")
    list_filter = ("lifecycle", "price_band", "r_score", "f_score", "m_score")
    list_select_related = ("customer",)
    search_fields = ("=customer__external_id", "customer__name", "=rfm_code", "top_category")
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Profile._meta.fields]

    def has_add_permission(self, request):
        return False


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "scopes_text", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("created_by",)
    search_fields = ("name", "=prefix")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ("prefix", "created_by", "created_at", "last_used_at", "revoked_at") if obj else ()

    @admin.display(description="scopes")
    def scopes_text(self, obj):
        return ", ".join(obj.scopes)

    def has_delete_permission(self, request, obj=None):
        return False  # a key is revoked (action "Revoke"), never deleted: the audit log and last use stay readable

    def save_model(self, request, obj, form, change):
        if change:
            before = ApiKey.objects.get(pk=obj.pk)
            super().save_model(request, obj, form, change)
            changes = {f: {"from": getattr(before, f), "to": getattr(obj, f)} for f in ("name", "scopes")
                       if getattr(before, f) != getattr(obj, f)}
            if changes:
                audit_record(action=AuditAction.API_KEY_CHANGED, request=request, target=obj, source="admin", changes=changes)
            return
        key, full = access.api_key_create(name=obj.name, scopes=form.cleaned_data["scopes"], user=request.user)
        obj.pk = key.pk
        obj.prefix = key.prefix
        audit_record(action=AuditAction.API_KEY_CREATED, request=request, target=key, source="admin", changes={"scopes": key.scopes})
        # Shown once: only a hash of the secret is stored.
        messages.warning(request, format_html(
            "The new key is <code style='user-select:all'>{}</code>. Copy it now: it is not stored and cannot be shown again. "
            "Send it as <code>Authorization: Api-Key {}</code>.", full, full))

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            access.api_key_revoke(key=key)
            audit_record(action=AuditAction.API_KEY_REVOKED, request=request, target=key, source="admin")
        messages.success(request, "Revoked; requests with these keys and the customer tokens they issued are refused from now on.")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read-only: nobody edits or deletes history through the admin."""

    list_display = ("at", "actor_label", "action", "target_link", "source", "ip")
    list_filter = ("action", "source")
    date_hierarchy = "at"
    search_fields = ("=actor_label", "=target_id", "target_label")
    list_select_related = ("actor",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ("at", "actor", "actor_label", "action", "source", "target_type", "target_id", "target_label", "changes_text", "ip")
    exclude = ("changes",)

    @admin.display(description="target")
    def target_link(self, obj):
        if obj.target_type and obj.target_id:
            app_label, _, model = obj.target_type.partition(".")
            try:
                url = reverse(f"admin:{app_label}_{model}_change", args=[obj.target_id])
            except Exception:
                return obj.target_label or f"{obj.target_type} {obj.target_id}"
            return format_html('<a href="{}">{}</a>', url, obj.target_label or obj.target_id)
        return obj.target_label

    @admin.display(description="changes")
    def changes_text(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, ensure_ascii=False, default=str))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Users and groups: Django's admin replaced by one that refuses escalation and audits every change.
from . import admin_users  # noqa: E402,F401
