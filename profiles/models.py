"""Customers, catalogue items and behaviour events: the source of truth everything else is computed from."""
from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Customer(models.Model):
    """A shop customer, known by the shop's own id."""

    external_id = models.CharField(max_length=128, unique=True, help_text="The shop's own customer id.")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Paris.")
    consent_in_app = models.BooleanField("in-app consent", default=True)
    consent_email = models.BooleanField("email consent", default=False)
    consent_push = models.BooleanField("push consent", default=False)
    consent_updated_at = models.DateTimeField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["external_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})" if self.name else self.external_id


class ItemKind(models.TextChoices):
    PRODUCT = "product", "Product"
    ACTIVITY = "activity", "Marketing activity"
    POST = "post", "Community post"


class Item(models.Model):
    """Anything a customer can be suggested: a product, a marketing activity or a community post."""

    kind = models.CharField(max_length=16, choices=ItemKind.choices, default=ItemKind.PRODUCT)
    external_id = models.CharField(max_length=128)
    title = models.CharField(max_length=300, blank=True)
    category = models.CharField(max_length=120, blank=True, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "external_id"], name="item_kind_external_id_uniq"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gte=0), name="item_price_non_negative"),
        ]
        indexes = [models.Index(fields=["kind", "active"], name="item_kind_active_idx")]

    def __str__(self) -> str:
        return self.title or f"{self.kind} {self.external_id}"


class EventType(models.TextChoices):
    VIEW = "view", "View"
    CLICK = "click", "Click"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    PURCHASE = "purchase", "Purchase"
    RATING = "rating", "Rating"
    FAVORITE = "favorite", "Favorite"
    LIKE = "like", "Like"
    COMMENT = "comment", "Comment"
    POST = "post", "Post"
    SHARE = "share", "Share"
    SEARCH = "search", "Search"
    RETURN = "return", "Return"


class Event(models.Model):
    """One thing a customer did. Idempotent by the sender's own `external_id`."""

    external_id = models.CharField(max_length=128, null=True, blank=True, help_text="The sender's id; a resend is skipped.")
    # The composite indexes below lead with these columns, so the FKs need no index of their own.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, null=True, blank=True, related_name="events", db_index=False)
    type = models.CharField(max_length=16, choices=EventType.choices)
    value = models.FloatField(null=True, blank=True, help_text="A rating, or a quantity.")
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True, help_text="Money.")
    occurred_at = models.DateTimeField()
    context = models.JSONField(default=dict, blank=True, help_text="Channel, campaign, device, ...")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"], condition=Q(external_id__isnull=False), name="event_external_id_uniq"
            ),
            models.CheckConstraint(
                condition=Q(type__in=[t.value for t in EventType]), name="event_type_known"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time_idx"),
            models.Index(fields=["item", "type"], name="event_item_type_idx"),
            models.Index(fields=["type", "occurred_at"], name="event_type_time_idx"),
            # Recent-first lists, the admin's date drill-down (min/max) and time-window reads.
            models.Index(fields=["occurred_at"], name="event_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} by {self.customer_id} at {self.occurred_at:%Y-%m-%d %H:%M}"
