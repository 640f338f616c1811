"""Operator screens for customers, catalogue items and behaviour events."""

import logging

import pandas as pd
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db import models
from django.db.models import Max, Min
from django.utils import timezone

from accounts.audit import AuditedAdminMixin
from common.paginators import EstimatedCountPaginator

from . import customer_page, services
from .models import Customer, Event, Item, Profile, ProfilesAuditAction

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
        start = {"year": first.normalize().replace(month=1, day=1), "month": first.normalize().replace(day=1)}.get(
            kind, first.normalize()
        )
        periods = pd.date_range(start, last, freq=self._FREQ[kind])
        values = [p.to_pydatetime() for p in periods]
        return values if order == "ASC" else values[::-1]


def _range_dates(qs: models.QuerySet) -> RangeDatesQuerySet:
    return RangeDatesQuerySet(model=qs.model, query=qs.query, using=qs._db)


@admin.register(Customer)
class CustomerAdmin(AuditedAdminMixin, admin.ModelAdmin):
    # Who changed a customer, and which fields; personal values are not copied into the log, and
    # consent changes have entries of their own.
    audit_actions = (
        ProfilesAuditAction.CUSTOMER_CREATED,
        ProfilesAuditAction.CUSTOMER_CHANGED,
        ProfilesAuditAction.CUSTOMER_DELETED,
    )
    audit_exclude = tuple(services.CONSENT_CHANNELS)
    audit_personal = ("name", "email", "attributes", "time_zone")
    list_display = (
        "external_id",
        "name",
        "email",
        "time_zone",
        "consent_in_app",
        "consent_email",
        "consent_push",
        "created_at",
    )
    list_filter = ("consent_in_app", "consent_email", "consent_push", "time_zone")
    search_fields = ("=external_id", "name", "email")
    date_hierarchy = "created_at"
    readonly_fields = ("consent_updated_at",)
    show_full_result_count = False

    # The change page is the customer's "360" (profiles/customer_page.py): a header card, the timeline,
    # interests, suggestions, consent; the form to edit them sits below, folded.
    change_form_template = "admin/profiles/customer/change_form.html"
    fieldsets = (
        (None, {"fields": (("name", "email"), ("external_id", "time_zone"))}),
        ("Consent", {"fields": (("consent_in_app", "consent_email", "consent_push"), "consent_updated_at")}),
        ("More", {"fields": ("attributes", "created_at")}),
    )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        customer = self.get_object(request, unquote(object_id)) if object_id else None
        if customer is not None and self.has_view_or_change_permission(request, customer):
            # The page's sections come from several apps (segments, suggestions, messages); which, and in
            # what order, is listed in settings.CUSTOMER_ADMIN_SECTIONS, so profiles names no app above it.
            extra_context = {
                **(extra_context or {}),
                # the header card names the customer; the page's own heading says what the page is
                "title": "Customer",
                "subtitle": None,
                "sections": customer_page.sections_for(customer, request=request),
            }
        return super().change_view(request, object_id, form_url, extra_context)

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
    FORGET_SUMMARY = (
        "forgotten rather than deleted: events, profile, segment memberships, suggestions, impressions and "
        "consent history are removed, name, email and attributes cleared and the external id replaced by a "
        "pseudonym; campaign deliveries stay counted in reports, emptied of what they said"
    )

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


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = (
        "customer",
        "lifecycle",
        "rfm_code",
        "recency_days",
        "frequency",
        "monetary",
        "top_category",
        "computed_at",
    )
    list_filter = ("lifecycle", "price_band", "r_score", "f_score", "m_score")
    list_select_related = ("customer",)
    search_fields = ("=customer__external_id", "customer__name", "=rfm_code", "top_category")
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Profile._meta.fields]

    def has_add_permission(self, request):
        return False
