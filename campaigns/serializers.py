"""Request and response shapes of the campaigns API (also what the OpenAPI schema documents)."""

from rest_framework import serializers

from .models import CampaignStatus, Channel, DeliveryStatus, SuppressReason


class InboxMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    title = serializers.CharField()
    body = serializers.CharField()
    sent_at = serializers.DateTimeField()
    opened_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True)


class InboxOutSerializer(serializers.Serializer):
    customer = serializers.CharField()
    results = InboxMessageSerializer(many=True)


class DeliveredOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(help_text="When the message was first reported shown; a repeat keeps it.")


class TrackOutSerializer(serializers.Serializer):
    """The answer to opened/clicked: the message's times as they now stand (a repeat keeps the first)."""

    id = serializers.IntegerField(help_text="The message (delivery) id.")
    opened_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was first opened; a click also counts as opening it."
    )
    clicked_at = serializers.DateTimeField(allow_null=True, help_text="When it was first clicked; null until then.")


class TrackInSerializer(serializers.Serializer):
    item = serializers.CharField(
        required=False, max_length=128, help_text="External id of the item clicked (clicks only)."
    )
    item_kind = serializers.CharField(required=False, default="product", max_length=16)


# Ids beyond a 64-bit integer cannot name a row (SQLite refuses to even compare them).
MAX_ID = 2**63 - 1


def _finite(value: float) -> None:
    if value != value:  # NaN passes min_value/max_value, since every comparison with it is false
        raise serializers.ValidationError("Must be a number, not NaN.")


class AudiencePreviewInSerializer(serializers.Serializer):
    segments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), allow_empty=True, max_length=1000
    )
    excluded_segments = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False, default=list, max_length=1000
    )
    channel = serializers.ChoiceField(choices=Channel.choices, default=Channel.IN_APP)
    control_percent = serializers.FloatField(min_value=0, max_value=100, default=10.0, validators=[_finite])


class AudiencePreviewOutSerializer(serializers.Serializer):
    members = serializers.IntegerField()
    consenting = serializers.IntegerField()
    no_consent = serializers.IntegerField()
    control_expected = serializers.IntegerField()
    treated_expected = serializers.IntegerField()


class ActivitySerializer(serializers.Serializer):
    campaign = serializers.IntegerField(source="campaign.pk")
    campaign_name = serializers.CharField(source="campaign.name")
    item = serializers.CharField(source="item.external_id")
    title = serializers.CharField(source="item.title")
    category = serializers.CharField(source="item.category")
    score = serializers.FloatField(allow_null=True)
    rank = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()


class ActivitiesOutSerializer(serializers.Serializer):
    customer = serializers.CharField()
    results = ActivitySerializer(many=True)


class SuppressedSerializer(serializers.Serializer):
    """Audience members who were not sent the message, by reason (every reason is always present)."""

    control = serializers.IntegerField(help_text="Held out as the control group.")
    no_consent = serializers.IntegerField(help_text="No consent for the channel.")
    frequency_cap = serializers.IntegerField(help_text="Over the frequency cap.")
    no_address = serializers.IntegerField(help_text="No address (email, push token) for the channel.")
    expired = serializers.IntegerField(help_text="The campaign ended before the send.")
    quiet_hours_deferred = serializers.IntegerField(
        help_text="Messages whose send was put off by quiet hours (counted apart: they may have been sent since)."
    )


class ConversionSerializer(serializers.Serializer):
    """Treated vs control conversion: a two-proportion z-test whose interval and p-value come from one
    (unpooled) statistic, so p_value < 0.05 exactly when the interval excludes 0 (experiments.stats). Every
    figure is null where it is undefined (an empty group; no control conversions for the relative uplift).
    Rates are fractions (0.0123 = 1.23 %)."""

    treated_n = serializers.IntegerField(help_text="Messages sent (the treated group).")
    treated_conversions = serializers.IntegerField()
    control_n = serializers.IntegerField(help_text="Customers held out (the control group).")
    control_conversions = serializers.IntegerField()
    treated_rate = serializers.FloatField(allow_null=True)
    control_rate = serializers.FloatField(allow_null=True)
    uplift_abs = serializers.FloatField(allow_null=True, help_text="treated_rate - control_rate.")
    uplift_abs_ci = serializers.ListField(
        child=serializers.FloatField(),
        min_length=2,
        max_length=2,
        allow_null=True,
        help_text="95 % confidence interval of uplift_abs, [low, high] (Wald, unpooled).",
    )
    uplift_rel = serializers.FloatField(allow_null=True, help_text="uplift_abs / control_rate.")
    uplift_rel_ci = serializers.ListField(
        child=serializers.FloatField(),
        min_length=2,
        max_length=2,
        allow_null=True,
        help_text="95 % confidence interval of uplift_rel, [low, high] (log risk ratio); null without conversions.",
    )
    z = serializers.FloatField(allow_null=True, help_text="uplift_abs over its (unpooled) standard error.")
    p_value = serializers.FloatField(
        allow_null=True, help_text="Two-sided p-value of the same z; below 0.05 exactly when the interval excludes 0."
    )
    significant = serializers.BooleanField(allow_null=True, help_text="p_value < 0.05.")


def _interval(help_text: str):
    return serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True, help_text=help_text
    )


class VariantRowSerializer(serializers.Serializer):
    """One message variant among the test's deliveries (the winner send to the rest is not counted)."""

    label = serializers.CharField(help_text="A, B, ...; A is the one the others are compared with.")
    variant = serializers.IntegerField(help_text="The variant's id.")
    share = serializers.FloatField(help_text="Its share of the split, a fraction.")
    sent = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    converted = serializers.IntegerField(help_text="Sent messages followed by the goal within the attribution window.")
    open_rate = serializers.FloatField(allow_null=True, help_text="opened / sent; null before any send.")
    open_rate_ci = _interval("95 % interval of open_rate (normal); null under 2 sends.")
    click_rate = serializers.FloatField(allow_null=True, help_text="clicked / sent.")
    click_rate_ci = _interval("95 % interval of click_rate (normal); null under 2 sends.")
    conversion_rate = serializers.FloatField(allow_null=True, help_text="converted / sent.")
    conversion_rate_ci = _interval("95 % interval of conversion_rate (normal); null under 2 sends.")
    difference = serializers.FloatField(
        allow_null=True, help_text="conversion_rate minus A's; null for A itself (and where undefined)."
    )
    difference_ci = _interval(
        "The difference's always-valid interval (mSPRT confidence sequence at level 'level'): valid however "
        "often the report is read; null for A."
    )
    p_value = serializers.FloatField(allow_null=True, help_text="The difference's always-valid p-value; null for A.")
    significant = serializers.BooleanField(allow_null=True, help_text="p_value < alpha / (variants - 1).")


class SrmSerializer(serializers.Serializer):
    """The sample-ratio check: the sent counts per variant against the shares (chi-square, flagged at p < 0.001)."""

    chi2 = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    mismatch = serializers.BooleanField(help_text="True: the split is broken and the test is not to be trusted.")


class WinnerSentSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When the test was decided and the rest queued.")
    variant = serializers.CharField(allow_null=True, help_text="The label the rest got.")
    customers = serializers.IntegerField(help_text="Customers of the rest who got it.")
    text = serializers.CharField(help_text="The decision in words, e.g. 'No winner after 24 h: the rest got A. ...'.")


class VariantsSerializer(serializers.Serializer):
    """The message variants' test (docs/campaigns.md, "Variants"; method in docs/experiments.md)."""

    mde = serializers.FloatField(help_text="The smallest lift worth detecting, a fraction (0.01 = one point).")
    alpha = serializers.FloatField(help_text="The test's overall error rate, 0.05.")
    level = serializers.FloatField(help_text="Each difference interval's level, 1 - alpha / (variants - 1).")
    rows = VariantRowSerializer(many=True)
    srm = SrmSerializer()
    verdict = serializers.ChoiceField(
        choices=["better", "a_better", "no_difference_yet", "sample_ratio_mismatch"],
        help_text="better: a variant converts better than A (winner); a_better: A better than every other; "
        "no_difference_yet; sample_ratio_mismatch: the split is broken.",
    )
    winner = serializers.CharField(allow_null=True, help_text="The winner's label, only when the test names one.")
    text = serializers.CharField(help_text="The verdict in words.")
    test_share = serializers.FloatField(
        allow_null=True, help_text="Automatic winner send: the recipients' share in the test; null without it."
    )
    test_hours = serializers.IntegerField(allow_null=True, help_text="Hours after the launch the test is decided.")
    waiting = serializers.IntegerField(help_text="Customers of the rest still waiting for the winner.")
    winner_sent = WinnerSentSerializer(allow_null=True)


class GoalSerializer(serializers.Serializer):
    """What counts as a conversion, and for how long after the message."""

    event_type = serializers.CharField(help_text="The event that counts as a conversion, e.g. purchase.")
    item = serializers.IntegerField(allow_null=True, help_text="The goal item's internal id, if the goal is one item.")
    category = serializers.CharField(allow_blank=True, help_text="The goal category, if any (empty for none).")
    attribution_days = serializers.IntegerField(help_text="The attribution window after a message, in days.")


class ReportSerializer(serializers.Serializer):
    """The report's figures (see docs/campaigns.md for each). Rates are fractions; money is a decimal string."""

    campaign = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    channel = serializers.ChoiceField(choices=Channel.choices)
    launched_at = serializers.DateTimeField(allow_null=True)
    attributed_at = serializers.DateTimeField(allow_null=True, help_text="When conversions were last attributed.")
    audience = serializers.IntegerField(help_text="Customers in the audience snapshot, control included.")
    control = serializers.IntegerField(help_text="Of whom held out.")
    suppressed = SuppressedSerializer()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Queued, deferred or being sent.")
    open_rate = serializers.FloatField(allow_null=True, help_text="opened / sent; null before any send.")
    click_rate = serializers.FloatField(allow_null=True, help_text="clicked / sent; null before any send.")
    conversion = ConversionSerializer()
    attributed_revenue = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="Revenue attributed to treated messages."
    )
    control_revenue = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="Revenue of the control group in the same window."
    )
    revenue_per_treated = serializers.FloatField(allow_null=True)
    revenue_per_control = serializers.FloatField(allow_null=True)
    goal = GoalSerializer()
    variants = VariantsSerializer(allow_null=True, help_text="Null for a campaign without message variants.")


class ExportItemSerializer(serializers.Serializer):
    kind = serializers.CharField(required=False)
    external_id = serializers.CharField(required=False)
    title = serializers.CharField(required=False)
    id = serializers.IntegerField(required=False, help_text="Only for an item since deleted: its old internal id.")


class ExportMessageSerializer(serializers.Serializer):
    """One delivery to the customer, in their export."""

    campaign = serializers.CharField(help_text="The campaign's name.")
    channel = serializers.ChoiceField(choices=Channel.choices)
    is_control = serializers.BooleanField()
    variant = serializers.CharField(allow_null=True, help_text="The message variant's label (A, B, ...), if any.")
    variant_test = serializers.BooleanField(help_text="Sent as part of the variants' test (not the winner send).")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    reason = serializers.ChoiceField(choices=SuppressReason.choices, allow_blank=True)
    title = serializers.CharField(allow_blank=True)
    body = serializers.CharField(allow_blank=True)
    items = ExportItemSerializer(many=True)
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField(allow_null=True)
    deferred_until = serializers.DateTimeField(allow_null=True)
    claimed_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True)
    converted_at = serializers.DateTimeField(allow_null=True)
    revenue = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)


class PrivacyExportSerializer(serializers.Serializer):
    """campaigns.privacy.export's part of a customer's export."""

    messages = ExportMessageSerializer(many=True)
