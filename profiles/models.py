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

    external_id = models.CharField(max_length=128, null=True, blank=True, help_text="The sender's id; a resend is skipped.")
    # The composite indexes below lead with these columns, so the FKs need no index of their own.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, null=True, blank=True, related_name="events", db_index=False)
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


class Profile(models.Model):
    """Computed features of one customer (see profiles/features.py for the definitions).

    Written only by `profiles_compute`, which stamps every row it writes with its run and time.
    """

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="profile")
    run = models.ForeignKey("PipelineStep", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
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

    class Meta:
        # No secondary indexes: every profile is rewritten on each run (an index per column would
        # multiply that cost), and rule segments reach profiles by customer id, the primary key.
        constraints = [
            models.CheckConstraint(condition=Q(r_score__lte=5), name="profile_r_score_0_5"),
            models.CheckConstraint(condition=Q(f_score__lte=5), name="profile_f_score_0_5"),
            models.CheckConstraint(condition=Q(m_score__lte=5), name="profile_m_score_0_5"),
        ]

    def __str__(self) -> str:
        return f"profile of {self.customer_id} ({self.rfm_code}, {self.lifecycle})"


class StepStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class PipelineRun(models.Model):
    """One run of the recomputation pipeline (profiles → segments → recommendations → ...)."""

    steps = models.JSONField(default=list, help_text="The steps asked for, in order.")
    trigger = models.CharField(max_length=16, default="shell", help_text="schedule, admin, shell or api")
    requested_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.QUEUED, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("run_pipeline", "Can start a recomputation")]

    def __str__(self) -> str:
        return f"pipeline #{self.pk} ({', '.join(self.steps)}) {self.status}"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class PipelineStep(models.Model):
    """One recomputation step: what it did, how long it took, how it ended."""

    pipeline = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, null=True, blank=True, related_name="step_runs")
    name = models.CharField(max_length=40, db_index=True)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.QUEUED)
    progress = models.FloatField(default=0, help_text="0 to 1 while running.")
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Sizes, figures and timings the step reports.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["name", "status", "-finished_at"], name="step_name_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} {self.status}"


class Lease(models.Model):
    """A named lock with an expiry, so two pipeline runs never overlap and a crashed holder's lock lapses."""

    name = models.CharField(max_length=60, unique=True)
    holder = models.CharField(max_length=120)
    expires_at = models.DateTimeField()


class ApiKeyScope(models.TextChoices):
    INGEST_EVENTS = "ingest_events", "Ingest events"
    READ_RECOMMENDATIONS = "read_recommendations", "Read recommendations (and issue customer tokens)"
    MANAGE_CUSTOMERS = "manage_customers", "Manage customers and items"


class ApiKey(models.Model):
    """A key for the shop's backend. Only a hash of the secret is stored; the key is shown once."""

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'shop backend (production)'.")
    prefix = models.CharField(max_length=12, unique=True, help_text="The key's public part, to recognise it in lists and logs.")
    hashed_secret = models.CharField(max_length=128)
    scopes = models.JSONField(default=list, help_text="What the key may do.")
    created_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


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
        return f"{self.customer_id} {self.channel} {'granted' if self.granted else 'withdrawn'} ({self.source})"


class AuditAction(models.TextChoices):
    SEGMENT_CREATED = "segment.created", "Segment created"
    SEGMENT_CHANGED = "segment.changed", "Segment changed"
    SEGMENT_DELETED = "segment.deleted", "Segment deleted"
    CAMPAIGN_CREATED = "campaign.created", "Campaign created"
    CAMPAIGN_CHANGED = "campaign.changed", "Campaign changed"
    CAMPAIGN_DELETED = "campaign.deleted", "Campaign deleted"
    CAMPAIGN_SCHEDULED = "campaign.scheduled", "Campaign scheduled"
    CAMPAIGN_LAUNCHED = "campaign.launched", "Campaign launched"
    CAMPAIGN_PAUSED = "campaign.paused", "Campaign paused"
    CAMPAIGN_RESUMED = "campaign.resumed", "Campaign resumed"
    CAMPAIGN_CANCELLED = "campaign.cancelled", "Campaign cancelled"
    CAMPAIGN_COMPLETED = "campaign.completed", "Campaign completed"
    CUSTOMER_CREATED = "customer.created", "Customer created"
    CUSTOMER_CHANGED = "customer.changed", "Customer changed"
    CUSTOMER_DELETED = "customer.deleted", "Customer deleted"
    CUSTOMER_FORGOTTEN = "customer.forgotten", "Customer forgotten"
    CONSENT_CHANGED = "consent.changed", "Consent changed"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    API_KEY_CHANGED = "api_key.changed", "API key changed"
    USER_CREATED = "user.created", "User created"
    USER_CHANGED = "user.changed", "User changed"
    USER_DELETED = "user.deleted", "User deleted"
    USER_CHANGE_REFUSED = "user.change_refused", "User change refused (escalation)"
    GROUP_CREATED = "group.created", "Group created"
    GROUP_CHANGED = "group.changed", "Group changed"
    GROUP_DELETED = "group.deleted", "Group deleted"
    GROUP_CHANGE_REFUSED = "group.change_refused", "Group change refused (escalation)"
    PIPELINE_STARTED = "pipeline.started", "Recomputation started"
    LOGIN = "auth.login", "Signed in"
    LOGIN_FAILED = "auth.login_failed", "Sign-in refused"


class AuditEntry(models.Model):
    """Who did what, when: one row per operator action. Append-only; holds no personal data of customers."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=150, help_text="The operator's username, api-key:PREFIX, shell:USER or system; kept if the account goes.")
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    source = models.CharField(max_length=20, help_text="admin, api, shell, schedule, system")
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["action", "-at"], name="audit_action_at_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            models.Index(fields=["actor_label", "-at"], name="audit_actor_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target_label}".strip()


class ForgottenCustomer(models.Model):
    """A customer forgotten on request, remembered only as a keyed hash of their external id (see
    profiles.privacy.forgotten_digest), so that events, links and tokens never bring them back."""

    digest = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the external id; not reversible without the key.")
    forgotten_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "forgotten customer"

    def __str__(self) -> str:
        return f"forgotten customer {self.digest[:12]}…"
