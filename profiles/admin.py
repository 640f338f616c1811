"""Operator screens for customers, catalogue items and behaviour events."""
import pandas as pd
from django.contrib import admin
from django.db import models
from django.db.models import Max, Min
from django.utils import timezone

from .models import Customer, Event, Item


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


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("external_id", "name", "email", "time_zone", "consent_in_app", "consent_email", "consent_push", "created_at")
    list_filter = ("consent_in_app", "consent_email", "consent_push", "time_zone")
    search_fields = ("=external_id", "name", "email")
    date_hierarchy = "created_at"
    readonly_fields = ("consent_updated_at",)
    inlines = [RecentEventInline]
    show_full_result_count = False

    def get_queryset(self, request):
        return _range_dates(super().get_queryset(request))


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
    list_per_page = 50

    def get_queryset(self, request):
        return _range_dates(super().get_queryset(request))
