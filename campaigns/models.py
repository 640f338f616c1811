"""Campaigns aimed at segments, their deliveries over channels, and the record of who changed what."""

from __future__ import annotations

from datetime import time

from django.db import models
from django.db.models import Q
from django.utils import timezone

from profiles.models import Customer, EventType, Item, ItemKind
from segments.models import Segment


class CampaignKind(models.TextChoices):
    MESSAGE = "message", "Message"
    ACTIVITY = "activity", "Activity promotion"
    PRODUCTS = "products", "Product suggestions"


class Channel(models.TextChoices):
    IN_APP = "in_app", "In-app inbox"
    EMAIL = "email", "Email"
    PUSH = "push", "Push"


class ScheduleKind(models.TextChoices):
    NOW = "now", "Send now"
    AT = "at", "At a time"
    DAILY = "daily", "Daily, to new members"
    WEEKLY = "weekly", "Weekly, to new members"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


#: The only allowed moves; services refuse anything else.
TRANSITIONS: dict[str, frozenset[str]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.SCHEDULED: frozenset(
        {CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED, CampaignStatus.CANCELLED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.SCHEDULED, CampaignStatus.CANCELLED}),
    CampaignStatus.COMPLETED: frozenset(),
    CampaignStatus.CANCELLED: frozenset(),
}


class CampaignsAuditAction(models.TextChoices):
    """What operators do to campaigns (this app's actions in the audit log, accounts/actions.py)."""

    CAMPAIGN_CREATED = "campaign.created", "Campaign created"
    CAMPAIGN_CHANGED = "campaign.changed", "Campaign changed"
    CAMPAIGN_DELETED = "campaign.deleted", "Campaign deleted"
    CAMPAIGN_SCHEDULED = "campaign.scheduled", "Campaign scheduled"
    CAMPAIGN_LAUNCHED = "campaign.launched", "Campaign launched"
    CAMPAIGN_PAUSED = "campaign.paused", "Campaign paused"
    CAMPAIGN_RESUMED = "campaign.resumed", "Campaign resumed"
    CAMPAIGN_CANCELLED = "campaign.cancelled", "Campaign cancelled"
    CAMPAIGN_COMPLETED = "campaign.completed", "Campaign completed"
    CAMPAIGN_WINNER_SENT = "campaign.winner_sent", "Campaign test decided, winner sent to the rest"


class Campaign(models.Model):
    name = models.CharField(max_length=200)
    goal = models.TextField(blank=True, help_text="What the campaign is for, in words.")
    kind = models.CharField(max_length=16, choices=CampaignKind.choices, default=CampaignKind.MESSAGE)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.IN_APP)

    segments = models.ManyToManyField(Segment, related_name="+", help_text="Members of any of these are the audience.")
    excluded_segments = models.ManyToManyField(
        Segment, related_name="+", blank=True, help_text="Members of these are left out."
    )

    promoted_item = models.ForeignKey(
        Item,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        limit_choices_to={"kind": ItemKind.ACTIVITY},
        help_text="For an activity promotion: the activity.",
    )
    recommendation_kind = models.CharField(max_length=16, choices=ItemKind.choices, default=ItemKind.PRODUCT)
    recommendation_count = models.PositiveSmallIntegerField(
        default=3, help_text="Top-N suggestions put in the message's context."
    )
    title_template = models.CharField(
        max_length=500, help_text="Django template syntax, e.g. Hello {{ customer.first_name }}."
    )
    body_template = models.TextField(help_text="Django template syntax; see docs/campaigns.md for the context.")

    schedule = models.CharField(max_length=10, choices=ScheduleKind.choices, default=ScheduleKind.NOW)
    send_at = models.DateTimeField(null=True, blank=True, help_text="For 'at a time' and recurring: the first send.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="No sends after this; the campaign completes.")
    window_start = models.TimeField(
        null=True, blank=True, default=time(9, 0), help_text="Send window start, customer's local time."
    )
    window_end = models.TimeField(
        null=True, blank=True, default=time(21, 0), help_text="Send window end, customer's local time."
    )

    frequency_cap_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Override of CAMPAIGN_FREQUENCY_CAP_COUNT."
    )
    frequency_cap_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Override of CAMPAIGN_FREQUENCY_CAP_DAYS."
    )
    control_percent = models.FloatField(default=10.0, help_text="Share of the audience held out, 0 to 100.")

    goal_event_type = models.CharField(max_length=20, choices=EventType.choices, default=EventType.PURCHASE)
    goal_item = models.ForeignKey(Item, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    goal_category = models.CharField(max_length=120, blank=True)
    attribution_days = models.PositiveIntegerField(default=7)

    # Message variants (CampaignVariant rows; docs/campaigns.md, "Variants"): the test and its decision.
    variant_mde = models.FloatField(
        default=1.0,
        help_text="Variants: the smallest lift worth detecting, in percentage points of conversion "
        "(sets the test's sensitivity; 1.0 = one point).",
    )
    variant_test_percent = models.FloatField(
        null=True,
        blank=True,
        help_text="Variants, automatic winner send: share of the recipients (0 to 100) who get the test; the "
        "rest get the winner after the test window. Empty: every recipient gets a variant.",
    )
    variant_test_hours = models.PositiveIntegerField(
        default=24, help_text="Variants, automatic winner send: hours after the launch when the test is decided."
    )
    winner = models.ForeignKey(
        "CampaignVariant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    winner_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    winner_verdict = models.CharField(max_length=300, blank=True, editable=False)

    status = models.CharField(
        max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT, db_index=True
    )
    launched_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="Recurring: the next audience refresh.")
    completed_at = models.DateTimeField(null=True, blank=True)
    attributed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("launch_campaign", "Can launch or schedule a campaign"),
            ("pause_campaign", "Can pause or resume a campaign"),
            ("cancel_campaign", "Can cancel a campaign"),
            ("send_test_campaign", "Can send a campaign's test message to oneself"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(control_percent__gte=0) & Q(control_percent__lte=100), name="campaign_control_0_100"
            ),
            models.CheckConstraint(
                condition=~Q(kind="activity") | Q(promoted_item__isnull=False), name="campaign_activity_has_item"
            ),
            models.CheckConstraint(condition=Q(recommendation_count__lte=20), name="campaign_reco_count_max_20"),
            models.CheckConstraint(
                condition=Q(variant_test_percent__isnull=True)
                | (Q(variant_test_percent__gt=0) & Q(variant_test_percent__lt=100)),
                name="campaign_variant_test_0_100",
            ),
            models.CheckConstraint(condition=Q(variant_mde__gt=0), name="campaign_variant_mde_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_recurring(self) -> bool:
        return self.schedule in (ScheduleKind.DAILY, ScheduleKind.WEEKLY)


class CampaignVariant(models.Model):
    """One message variant of a campaign: its own title and body templates and its share of the test.

    Variants are compared with the first one by label ("A"); an empty template means the campaign's own.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    label = models.CharField(max_length=8, help_text="A, B, C, ...: the report names the variant by it.")
    title_template = models.CharField(max_length=500, blank=True, help_text="Empty: the campaign's own title.")
    body_template = models.TextField(blank=True, help_text="Empty: the campaign's own body.")
    share = models.FloatField(default=50.0, help_text="Its weight in the split (the weights are made to add up).")

    class Meta:
        ordering = ["campaign", "label"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "label"], name="campaign_variant_label_uniq"),
            models.CheckConstraint(condition=Q(share__gt=0), name="campaign_variant_share_positive"),
        ]

    def __str__(self) -> str:
        return f"Variant {self.label}"


class StatusChange(models.Model):
    """Every move of a campaign's status: from, to, who and when."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=12, choices=CampaignStatus.choices)
    to_status = models.CharField(max_length=12, choices=CampaignStatus.choices)
    by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["campaign", "at", "id"]


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DEFERRED = "deferred", "Deferred (quiet hours)"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    SUPPRESSED = "suppressed", "Suppressed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    WAITING = "waiting", "Waiting for the test's winner"


class SuppressReason(models.TextChoices):
    CONTROL = "control", "Control group"
    NO_CONSENT = "no_consent", "No consent for the channel"
    FREQUENCY_CAP = "frequency_cap", "Frequency cap"
    NO_ADDRESS = "no_address", "No address for the channel"
    EXPIRED = "expired", "Campaign ended before the send"


class Delivery(models.Model):
    """One customer of a campaign's audience snapshot, treated or held out, and what became of the message."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    is_control = models.BooleanField(default=False)
    variant = models.ForeignKey(
        CampaignVariant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    variant_test = models.BooleanField(
        default=False,
        db_default=False,  # rows COPYed without the column (every path but the variants' launch) are no test
        help_text="Part of the variants' test (the analysis counts only these, not the winner send).",
    )
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    reason = models.CharField(max_length=16, choices=SuppressReason.choices, blank=True)
    title = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True)
    items = models.JSONField(default=list, blank=True, help_text="Ids of the items the message carried.")
    provider_key = models.CharField(
        max_length=80, null=True, blank=True, unique=True, help_text="Idempotency key sent to the channel."
    )
    claim = models.CharField(max_length=64, blank=True, help_text="The task attempt that claimed the row.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(null=True, blank=True, help_text="Deferred by quiet hours until then.")
    deferred_until = models.DateTimeField(null=True, blank=True, help_text="Kept once deferred, for the report.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["campaign", "id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer"], name="delivery_campaign_customer_uniq"),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="delivery_sent_has_time"
            ),
            models.CheckConstraint(
                condition=~Q(is_control=True) | Q(status="suppressed"), name="delivery_control_not_sent"
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status_idx"),
            # The frequency cap counts a customer's recent contacts across all campaigns.
            models.Index(fields=["customer", "claimed_at"], name="delivery_customer_claimed_idx"),
            models.Index(fields=["status", "due_at"], name="delivery_status_due_idx"),
        ]

    def __str__(self) -> str:
        return f"Message of “{self.campaign.name}”"
