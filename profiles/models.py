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


#: The consent channels and the Customer column that holds each one's consent. Campaign channels,
#: rule conditions ({"consent": "email"}), TRAINING_REQUIRES_CONSENT and the consent history name
#: channels by these keys.
CONSENT_FIELDS = {"in_app": "consent_in_app", "email": "consent_email", "push": "consent_push"}


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
    # What happened to a campaign's message (the campaigns app records them through events_ingest).
    MESSAGE_DELIVERED = "message_delivered", "Message delivered"
    MESSAGE_OPENED = "message_opened", "Message opened"
    MESSAGE_CLICKED = "message_clicked", "Message clicked"


class Event(models.Model):
    """One thing a customer did. Idempotent by the sender's own `external_id`."""

    external_id = models.CharField(
        max_length=128, null=True, blank=True, help_text="The sender's id; a resend is skipped."
    )
    # The composite indexes below lead with these columns, so the FKs need no index of their own.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, null=True, blank=True, related_name="events", db_index=False
    )
    type = models.CharField(max_length=20, choices=EventType.choices)
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
            models.CheckConstraint(condition=Q(type__in=[t.value for t in EventType]), name="event_type_known"),
        ]
        indexes = [
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time_idx"),
            models.Index(fields=["item", "type"], name="event_item_type_idx"),
            models.Index(fields=["type", "occurred_at"], name="event_type_time_idx"),
            # Recent-first lists, the admin's date drill-down (min/max) and time-window reads.
            models.Index(fields=["occurred_at"], name="event_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} · {self.occurred_at:%d %b %Y %H:%M}"


class Lifecycle(models.TextChoices):
    NEW = "new", "New"
    ACTIVE = "active", "Active"
    AT_RISK = "at-risk", "At risk"
    LAPSED = "lapsed", "Lapsed"
    NEVER_BOUGHT = "never-bought", "Never bought"


class PriceBand(models.TextChoices):
    LOW = "low", "Low"
    MID = "mid", "Mid"
    HIGH = "high", "High"


class PredictionBasis(models.TextChoices):
    MODEL = "model", "Their own history"
    PRIOR = "prior", "Population prior (too little history)"


class Profile(models.Model):
    """Computed features of one customer (see profiles/features.py for the definitions).

    Written only by `profiles_compute`, which stamps every row it writes with its run and time.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="profile")
    run = models.ForeignKey("pipeline.PipelineStep", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    computed_at = models.DateTimeField()
    recency_days = models.FloatField(null=True, blank=True, help_text="Days since the last purchase.")
    frequency = models.PositiveIntegerField(default=0, help_text="Orders in the window.")
    monetary = models.FloatField(default=0, help_text="Spend in the window, returns netted.")
    avg_order_value = models.FloatField(null=True, blank=True)
    # 1-5 by quintile among buyers; 0 (code "000") for a customer who never bought.
    r_score = models.PositiveSmallIntegerField(default=0)
    f_score = models.PositiveSmallIntegerField(default=0)
    m_score = models.PositiveSmallIntegerField(default=0)
    rfm_code = models.CharField(max_length=3, default="000")
    interests = models.JSONField(default=dict, blank=True, help_text="Share of interest per category (sums to 1).")
    top_categories = models.JSONField(default=list, blank=True)
    top_category = models.CharField(max_length=120, blank=True)
    median_price = models.FloatField(null=True, blank=True)
    price_band = models.CharField(max_length=8, choices=PriceBand.choices, blank=True)
    active_days = models.PositiveIntegerField(default=0, help_text="Days with any event in the window.")
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    events_30d = models.PositiveIntegerField(default=0)
    n_events = models.PositiveIntegerField(default=0, help_text="Events in the window.")
    community_posts = models.PositiveIntegerField(default=0)
    community_comments = models.PositiveIntegerField(default=0)
    community_likes = models.PositiveIntegerField(default=0)
    orders_total = models.PositiveIntegerField(default=0)
    first_purchase_at = models.DateTimeField(null=True, blank=True)
    last_purchase_at = models.DateTimeField(null=True, blank=True)
    lifecycle = models.CharField(max_length=16, choices=Lifecycle.choices, default=Lifecycle.NEVER_BOUGHT)
    # Predictions over the next `prediction_horizon_days` after `computed_at` (docs/profiles.md,
    # "Predictions"): BG/NBD for orders and whether the customer is still a buyer, Gamma-Gamma for spend.
    p_alive = models.FloatField(null=True, blank=True, help_text="Probability the customer is still an active buyer.")
    predicted_orders = models.FloatField(null=True, blank=True, help_text="Expected orders in the horizon.")
    predicted_value = models.FloatField(null=True, blank=True, help_text="Expected spend in the horizon.")
    churn_risk = models.FloatField(null=True, blank=True, help_text="Probability of no order in the horizon.")
    next_order_at = models.DateTimeField(
        null=True, blank=True, help_text="By this date the customer has even odds of having ordered again."
    )
    prediction_basis = models.CharField(
        max_length=8, choices=PredictionBasis.choices, blank=True, default="", db_default=""
    )
    prediction_horizon_days = models.PositiveSmallIntegerField(null=True, blank=True)
    affinity = models.JSONField(
        default=dict,
        db_default=models.Value({}, output_field=models.JSONField()),
        blank=True,
        help_text="Probability of buying from each candidate category in the horizon.",
    )

    class Meta:
        # No secondary indexes: every profile is rewritten on each run (an index per column would
        # multiply that cost), and rule segments reach profiles by customer id, the primary key.
        constraints = [
            models.CheckConstraint(condition=Q(r_score__lte=5), name="profile_r_score_0_5"),
            models.CheckConstraint(condition=Q(f_score__lte=5), name="profile_f_score_0_5"),
            models.CheckConstraint(condition=Q(m_score__lte=5), name="profile_m_score_0_5"),
        ]

    def __str__(self) -> str:
        return f"{self.get_lifecycle_display()} customer, RFM {self.rfm_code}"


class ConsentChange(models.Model):
    """A change of a customer's marketing consent: what, when, through what, by whom."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=10, choices=[("in_app", "In-app"), ("email", "Email"), ("push", "Push")])
    granted = models.BooleanField()
    source = models.CharField(max_length=20, help_text="api, admin, import, unsubscribe, ...")
    changed_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["customer", "-at"], name="consent_customer_at_idx")]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} consent {'granted' if self.granted else 'withdrawn'} ({self.source})"


class ProfilesAuditAction(models.TextChoices):
    """What operators do to customers and their consent (this app's actions in the audit log, accounts/actions.py)."""

    CUSTOMER_CREATED = "customer.created", "Customer created"
    CUSTOMER_CHANGED = "customer.changed", "Customer changed"
    CUSTOMER_DELETED = "customer.deleted", "Customer deleted"
    CUSTOMER_FORGOTTEN = "customer.forgotten", "Customer forgotten"
    CONSENT_CHANGED = "consent.changed", "Consent changed"


class ForgottenCustomer(models.Model):
    """A customer forgotten on request, remembered only as a keyed hash of their external id (see
    profiles.privacy.forgotten_digest), so that events, links and tokens never bring them back."""

    digest = models.CharField(
        max_length=64, unique=True, help_text="HMAC-SHA256 of the external id; not reversible without the key."
    )
    forgotten_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "forgotten customer"

    def __str__(self) -> str:
        return f"forgotten customer {self.digest[:12]}…"
