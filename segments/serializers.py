from rest_framework import serializers

from .models import SegmentKind


class SegmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.ChoiceField(choices=SegmentKind.choices)
    size = serializers.IntegerField()
    active = serializers.BooleanField()
    refreshed_at = serializers.DateTimeField(allow_null=True)
    rule = serializers.JSONField(
        allow_null=True, help_text="Rule segments: the condition tree (docs/rules.md); null for clustering segments."
    )
    centroid = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        allow_null=True,
        help_text="Clustering segments: the typical member's features (recency_days, frequency, monetary, ...); "
        "null for rule segments (and a feature no member has is null).",
    )


class MembershipSerializer(serializers.Serializer):
    customer = serializers.CharField(source="customer.external_id")
    name = serializers.CharField(source="customer.name")
    since = serializers.DateTimeField()


class CustomerSegmentSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="segment.id")
    name = serializers.CharField(source="segment.name")
    kind = serializers.ChoiceField(source="segment.kind", choices=SegmentKind.choices)
    since = serializers.DateTimeField()


class RulePreviewInSerializer(serializers.Serializer):
    rule = serializers.JSONField(help_text="The condition tree (see docs/rules.md).")
    segment_id = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="The segment being edited, for cycle detection."
    )


class RulePreviewOutSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    description = serializers.CharField()


class ExportMembershipSerializer(serializers.Serializer):
    segment = serializers.CharField(help_text="The segment's name.")
    since = serializers.DateTimeField()


class PrivacyExportSerializer(serializers.Serializer):
    """segments.privacy.export's part of a customer's export."""

    segments = ExportMembershipSerializer(many=True)
