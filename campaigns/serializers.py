"""Request and response shapes of the campaigns API (also what the OpenAPI schema documents)."""

from rest_framework import serializers

from .models import Channel


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


class ReportSerializer(serializers.Serializer):
    """The report's figures (see docs/campaigns.md for each)."""

    campaign = serializers.IntegerField()
    audience = serializers.IntegerField()
    control = serializers.IntegerField()
    suppressed = serializers.DictField(child=serializers.IntegerField())
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opened = serializers.IntegerField()
    clicked = serializers.IntegerField()
    open_rate = serializers.FloatField(allow_null=True)
    click_rate = serializers.FloatField(allow_null=True)
    conversion = serializers.DictField()
    attributed_revenue = serializers.CharField()
