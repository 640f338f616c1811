from rest_framework import serializers

from .models import ExperimentStatus, Metric


class VariantOutSerializer(serializers.Serializer):
    letter = serializers.CharField(help_text="A is the control.")
    configuration = serializers.CharField(source="config.name", help_text="The recommender configuration served.")
    share = serializers.FloatField(help_text="Percent of the experiment's customers.")


class ExperimentOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=ExperimentStatus.choices)
    primary_metric = serializers.ChoiceField(choices=Metric.choices)
    guardrail_metrics = serializers.ListField(child=serializers.CharField())
    population = serializers.CharField(source="population.name", allow_null=True, default=None)
    mde_percent = serializers.FloatField(help_text="The smallest lift worth detecting, relative to the control (%).")
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    outcome = serializers.CharField(help_text="The verdict when it stopped, in words.")
    variants = VariantOutSerializer(many=True, source="variants.all")


class VariantResultSerializer(serializers.Serializer):
    letter = serializers.CharField()
    configuration = serializers.CharField()
    share = serializers.FloatField()
    customers = serializers.IntegerField(help_text="Exposed customers (shown the variant's suggestions).")
    value = serializers.FloatField(allow_null=True, help_text="The primary metric.")
    ci = serializers.ListField(child=serializers.FloatField(allow_null=True), help_text="Its 95% interval (low, high).")
    impressions = serializers.IntegerField()
    clicks = serializers.IntegerField(help_text="Attributed clicks.")
    conversions = serializers.IntegerField(help_text="Customers who bought an item shown to them.")
    revenue = serializers.FloatField(help_text="Attributed revenue.")


class ComparisonSerializer(serializers.Serializer):
    variant = serializers.CharField(help_text="The variant compared with the control (A).")
    difference = serializers.FloatField(allow_null=True, help_text="Variant minus control, in the metric's units.")
    relative = serializers.FloatField(allow_null=True, help_text="The difference relative to the control.")
    always_valid_ci = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="The mSPRT confidence sequence: valid at every look."
    )
    always_valid_p = serializers.FloatField(allow_null=True, help_text="The always-valid p-value that decides.")
    fixed_ci = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="The fixed-horizon interval (reference only)."
    )
    fixed_p = serializers.FloatField(allow_null=True, help_text="The fixed-horizon p-value (reference only).")
    significant = serializers.BooleanField()


class AnalysisSerializer(serializers.Serializer):
    metric = serializers.ChoiceField(choices=Metric.choices)
    mde = serializers.FloatField(allow_null=True, help_text="The lift worth detecting in the metric's units.")
    alpha = serializers.FloatField()
    variants = VariantResultSerializer(many=True)
    comparisons = ComparisonSerializer(many=True)
    guardrails = serializers.DictField(child=ComparisonSerializer(many=True))
    srm = serializers.DictField(help_text="The sample-ratio-mismatch check: chi2, p_value, mismatch, message.")
    verdict = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    winner = serializers.CharField(allow_null=True)


class LookSerializer(serializers.Serializer):
    day = serializers.DateField()
    verdict = serializers.CharField()
    winner = serializers.CharField(allow_null=True)
    comparisons = ComparisonSerializer(many=True)


class ExperimentReportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=ExperimentStatus.choices)
    primary_metric = serializers.ChoiceField(choices=Metric.choices)
    guardrail_metrics = serializers.ListField(child=serializers.CharField())
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    days_running = serializers.FloatField(allow_null=True)
    plan = serializers.DictField(allow_null=True, help_text="Fixed at the start: baseline, lift, sample, days.")
    analysis = AnalysisSerializer(allow_null=True, help_text="As of now while it runs, else its last look.")
    verdict = serializers.CharField(help_text="The verdict in words.")
    winner = serializers.CharField(allow_null=True, help_text="The variant the test named, if any.")
    outcome = serializers.CharField()
    looks = LookSerializer(many=True)


class CustomerVariantSerializer(serializers.Serializer):
    experiment = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=ExperimentStatus.choices)
    variant = serializers.CharField(help_text="A is the control.")
    configuration = serializers.CharField()
    channel = serializers.CharField(help_text="As impressions record it.")
    assigned_at = serializers.DateTimeField()


class CustomerExperimentsSerializer(serializers.Serializer):
    customer = serializers.CharField()
    experiments = CustomerVariantSerializer(many=True)


class ExportAssignmentSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    variant = serializers.CharField()
    configuration = serializers.CharField(help_text="The recommender configuration the variant served.")
    assigned_at = serializers.DateTimeField()


class PrivacyExportSerializer(serializers.Serializer):
    """experiments.privacy.export's part of a customer's export."""

    experiments = ExportAssignmentSerializer(many=True)
