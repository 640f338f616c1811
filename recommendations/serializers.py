from decimal import Decimal

from django.conf import settings
from rest_framework import serializers

from profiles.models import ItemKind

from .models import Reason


def max_limit() -> int:
    return int(settings.RECOMMENDER_TOP_N)


ITEM_KINDS = frozenset(k.value for k in ItemKind)


def plain_list_query(params) -> dict | None:
    """kind and limit when both are plainly valid (the frontend's usual request), else None: then
    ListQuerySerializer decides, and words the error."""
    kind = params.get("kind", ItemKind.PRODUCT.value)
    limit = params.get("limit", "10")
    if kind in ITEM_KINDS and limit.isascii() and limit.isdigit() and 1 <= int(limit) <= max_limit():
        return {"kind": kind, "limit": int(limit)}
    return None


class ListQuerySerializer(serializers.Serializer):
    """?kind=product&limit=10, with errors that say what is allowed."""

    kind = serializers.CharField(required=False, default=ItemKind.PRODUCT.value)
    limit = serializers.CharField(required=False, default="10")

    def validate_kind(self, value: str) -> str:
        allowed = [k.value for k in ItemKind]
        if value not in allowed:
            raise serializers.ValidationError(f"kind must be one of {', '.join(allowed)}; got {value!r}.")
        return value

    def validate_limit(self, value) -> int:
        top = max_limit()
        try:
            limit = int(value)
        except (TypeError, ValueError):
            raise serializers.ValidationError(f"limit must be a whole number from 1 to {top}; got {value!r}.") from None
        if not 1 <= limit <= top:
            raise serializers.ValidationError(f"limit must be from 1 to {top}; got {limit}.")
        return limit


class ItemOutSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    kind = serializers.ChoiceField(choices=ItemKind.choices)
    title = serializers.CharField()
    category = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)


class RecommendationOutSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    item = ItemOutSerializer()
    score = serializers.FloatField()
    reason = serializers.ChoiceField(
        choices=Reason.choices,
        help_text="Why it is suggested: item (because of an item of the customer's own, named by reason_item), "
        "similar_users, segment_popular or popular.",
    )
    reason_text = serializers.CharField(help_text="The reason in words, e.g. “because you bought Espresso maker #12”.")
    reason_item = serializers.CharField(
        source="reason_item.external_id",
        allow_null=True,
        default=None,
        help_text="For reason item: the external id of the customer's own item.",
    )


class RecommendationsOutSerializer(serializers.Serializer):
    customer = serializers.CharField()
    kind = serializers.ChoiceField(choices=ItemKind.choices)
    run = serializers.IntegerField(allow_null=True)
    results = RecommendationOutSerializer(many=True)


_PRICE = ItemOutSerializer().fields["price"]


def _price(value) -> str | None:
    """ItemOutSerializer's price text. PostgreSQL gives a Decimal with the column's two places, whose
    str() is what DecimalField gives; anything else (SQLite gives floats) goes through the field."""
    if value is None:
        return None
    if type(value) is Decimal and value.as_tuple().exponent == -_PRICE.decimal_places:
        return str(value)
    return _PRICE.to_representation(value)


def recommendations_out(*, customer: str, kind: str, rows: list[tuple]) -> dict:
    """What RecommendationsOutSerializer gives, key for key and value for value, built straight from
    `selectors.recommendation_rows_for_external_id` rows: on the API's hot path the serializer's
    field machinery cost more than the query (docs/benchmarks.md, "Load")."""
    results = [
        {
            "rank": int(rank),
            "item": {
                "external_id": ext,
                "kind": item_kind,
                "title": title,
                "category": category,
                "price": _price(price),
            },
            "score": float(score),
            "reason": reason,
            "reason_text": reason_text,
            "reason_item": reason_item,
        }
        for _, rank, score, reason, reason_text, ext, item_kind, title, category, price, reason_item in rows
    ]
    return {"customer": customer, "kind": kind, "run": rows[0][0] if rows else None, "results": results}


class SimilarOutSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    item = ItemOutSerializer(source="similar")
    score = serializers.FloatField()


class SimilarItemsOutSerializer(serializers.Serializer):
    item = serializers.CharField()
    kind = serializers.ChoiceField(choices=ItemKind.choices)
    run = serializers.IntegerField(allow_null=True)
    results = SimilarOutSerializer(many=True)


class ExportRecommendationSerializer(serializers.Serializer):
    """One of the customer's stored suggestions (active run), in their export."""

    kind = serializers.CharField()
    rank = serializers.IntegerField()
    item = serializers.CharField(help_text="The item's external id.")
    score = serializers.FloatField()
    reason = serializers.CharField(help_text="The reason in words.")
    reason_code = serializers.ChoiceField(choices=Reason.choices)
    reason_item = serializers.CharField(allow_null=True, help_text="For reason item: the customer's own item.")


class ExportImpressionSerializer(serializers.Serializer):
    item_kind = serializers.CharField()
    item = serializers.CharField(help_text="The item's external id.")
    shown_at = serializers.DateTimeField()
    source = serializers.CharField()
    channel = serializers.CharField(help_text="The experiment variant's channel the list came from, else empty.")


class PrivacyExportSerializer(serializers.Serializer):
    """recommendations.privacy.export's part of a customer's export."""

    recommendations = ExportRecommendationSerializer(many=True)
    impressions = ExportImpressionSerializer(many=True)


class ImpressionsInSerializer(serializers.Serializer):
    """What the shop showed a customer: the suggestions of one kind, in the order shown."""

    kind = serializers.ChoiceField(choices=ItemKind.choices, default=ItemKind.PRODUCT.value)
    items = serializers.ListField(
        child=serializers.CharField(max_length=128),
        min_length=1,
        max_length=100,
        help_text="The external ids of the items shown (1 to 100).",
    )
    source = serializers.CharField(
        max_length=60, required=False, default="api", help_text="Where they were shown, e.g. home-page."
    )
    shown_at = serializers.DateTimeField(required=False, help_text="When (default: now).")


class ImpressionsOutSerializer(serializers.Serializer):
    customer = serializers.CharField()
    recorded = serializers.IntegerField(help_text="Impressions stored.")
    channel = serializers.CharField(
        help_text="The suggestions' channel the customer is served from (an experiment variant's), else empty."
    )
