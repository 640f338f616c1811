"""Request and response shapes of the profiles API (also what the OpenAPI schema documents)."""

from importlib import import_module

from django.conf import settings
from rest_framework import serializers

from .models import ConsentChange, Customer, EventType, ItemKind, Lifecycle, PredictionBasis, PriceBand, Profile


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Position of the row in the submitted array (0-based).")
    field = serializers.CharField()
    reason = serializers.CharField()


class BatchErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = RowErrorSerializer(many=True)


class EventInSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        required=False, max_length=128, help_text="Your id for the event; a resend with the same id is skipped."
    )
    customer = serializers.CharField(max_length=128, help_text="The customer's external id.")
    item_kind = serializers.ChoiceField(choices=ItemKind.choices, required=False, default=ItemKind.PRODUCT)
    item = serializers.CharField(
        required=False, max_length=128, help_text="The item's external id (not needed for a search)."
    )
    type = serializers.ChoiceField(choices=EventType.choices)
    value = serializers.FloatField(
        required=False, help_text="A rating (0-10), or a quantity (> 0; default 1 for purchase, cart and return)."
    )
    amount = serializers.DecimalField(
        required=False, max_digits=14, decimal_places=2, min_value=0, help_text="Money, >= 0."
    )
    occurred_at = serializers.DateTimeField(
        help_text="ISO 8601 with a time zone offset, e.g. 2025-03-01T12:00:00+01:00."
    )
    context = serializers.DictField(required=False, help_text="Free JSON object: channel, campaign, device, ...")


class IngestResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField(
        help_text="Events skipped because their external_id was already stored or repeated in the batch."
    )
    invalid = serializers.IntegerField()
    customers_created = serializers.IntegerField()
    items_created = serializers.IntegerField()


class CustomerInSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=128)
    name = serializers.CharField(required=False, max_length=200)
    email = serializers.EmailField(required=False)
    time_zone = serializers.CharField(required=False, help_text="IANA time zone name.")
    consent_in_app = serializers.BooleanField(required=False)
    consent_email = serializers.BooleanField(required=False)
    consent_push = serializers.BooleanField(required=False)
    attributes = serializers.DictField(required=False)
    created_at = serializers.DateTimeField(required=False)


class ItemInSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ItemKind.choices, required=False, default=ItemKind.PRODUCT)
    external_id = serializers.CharField(max_length=128)
    title = serializers.CharField(required=False, max_length=300)
    category = serializers.CharField(required=False, max_length=120)
    price = serializers.DecimalField(required=False, max_digits=12, decimal_places=2, min_value=0)
    attributes = serializers.DictField(required=False)
    active = serializers.BooleanField(required=False)
    created_at = serializers.DateTimeField(required=False)


class UpsertResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class ProfileSerializer(serializers.Serializer):
    customer = serializers.CharField(source="customer.external_id")
    computed_at = serializers.DateTimeField()
    recency_days = serializers.FloatField(allow_null=True)
    frequency = serializers.IntegerField()
    monetary = serializers.FloatField()
    avg_order_value = serializers.FloatField(allow_null=True)
    r_score = serializers.IntegerField()
    f_score = serializers.IntegerField()
    m_score = serializers.IntegerField()
    rfm_code = serializers.CharField()
    interests = serializers.DictField(child=serializers.FloatField())
    top_categories = serializers.ListField(child=serializers.CharField())
    price_band = serializers.ChoiceField(choices=PriceBand.choices, allow_blank=True)
    median_price = serializers.FloatField(allow_null=True)
    active_days = serializers.IntegerField()
    first_seen = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    events_30d = serializers.IntegerField()
    community_posts = serializers.IntegerField()
    community_comments = serializers.IntegerField()
    community_likes = serializers.IntegerField()
    orders_total = serializers.IntegerField()
    lifecycle = serializers.ChoiceField(choices=Lifecycle.choices)
    # predictions over the horizon after computed_at (docs/profiles.md, "Predictions"); null where none
    prediction_basis = serializers.ChoiceField(
        choices=PredictionBasis.choices,
        allow_blank=True,
        help_text="model: from the customer's own history; prior: the population's figures (never bought); "
        "empty: no predictions (the last full run could fit no model).",
    )
    prediction_horizon_days = serializers.IntegerField(
        allow_null=True, help_text="The predictions cover this many days after computed_at."
    )
    p_alive = serializers.FloatField(
        allow_null=True, help_text="Probability (0-1) that the customer is still a buyer; null for the prior."
    )
    predicted_orders = serializers.FloatField(allow_null=True, help_text="Expected orders in the horizon.")
    predicted_value = serializers.FloatField(allow_null=True, help_text="Expected spend in the horizon.")
    churn_risk = serializers.FloatField(allow_null=True, help_text="Probability (0-1) of no order in the horizon.")
    next_order_at = serializers.DateTimeField(
        allow_null=True,
        help_text="By this moment the chance of having ordered again reaches one half; null where it never "
        "does (within ten years) or for the prior.",
    )
    affinity = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=1),
        help_text="Calibrated probability (0-1) of buying from each of the customer's candidate categories in the "
        "horizon (docs/profiles.md, 'Category affinity'); a category not listed is not a candidate.",
    )


class ErrorItemSerializer(serializers.Serializer):
    field = serializers.CharField(required=False)
    row = serializers.IntegerField(required=False, min_value=0)
    path = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)
    message = serializers.CharField(required=False)


class ErrorSerializer(serializers.Serializer):
    """The API's one error shape; its schema component ("Error") is common.schema.ERROR_SCHEMA."""

    detail = serializers.CharField()
    errors = ErrorItemSerializer(many=True)


class ForgetOutSerializer(serializers.Serializer):
    forgotten = serializers.BooleanField(help_text="Always true: the customer is forgotten.")
    removed = serializers.DictField(
        child=serializers.IntegerField(min_value=0),
        help_text="Rows removed or emptied, by kind: events, profile, consent_history, memberships, "
        "recommendations (suggestions and impressions), messages (deliveries emptied, kept for the "
        "campaigns' counts) and log_entries_rewritten.",
    )


class ExportCustomerSerializer(serializers.ModelSerializer):
    email = serializers.CharField(allow_blank=True, help_text="Empty when the shop sent none.")

    class Meta:
        model = Customer
        exclude = ["id"]


class ExportConsentChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentChange
        fields = ["channel", "granted", "source", "at"]


class ExportEventSerializer(serializers.Serializer):
    external_id = serializers.CharField(allow_null=True)
    type = serializers.ChoiceField(choices=EventType.choices)
    item_kind = serializers.ChoiceField(choices=ItemKind.choices, allow_null=True)
    item = serializers.CharField(allow_null=True, help_text="The item's external id.")
    value = serializers.FloatField(allow_null=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    occurred_at = serializers.DateTimeField()
    context = serializers.DictField()
    received_at = serializers.DateTimeField()


class ExportProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = Profile
        exclude = ["customer", "run"]


def customer_export_serializer() -> type[serializers.Serializer]:
    """The shape of profiles.privacy.customer_export: this app's parts, then each settings.PRIVACY_HOOKS
    module's part, described by the `PrivacyExportSerializer` of that app's serializers module."""
    fields = {
        "customer": ExportCustomerSerializer(),
        "consent_history": ExportConsentChangeSerializer(many=True),
        "events": ExportEventSerializer(many=True),
        "profile": ExportProfileSerializer(allow_null=True),
    }
    for hook in settings.PRIVACY_HOOKS:
        part = import_module(hook.rsplit(".", 1)[0] + ".serializers").PrivacyExportSerializer
        fields.update(part().get_fields())
    fields["exported_at"] = serializers.DateTimeField()
    return type("CustomerExportSerializer", (serializers.Serializer,), fields)
