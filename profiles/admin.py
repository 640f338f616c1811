"""Operator screens for customers, catalogue items and behaviour events."""
from django.contrib import admin

from .models import Customer, Event, Item


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
