"""Experiments between recommender configurations: the experiment, its variants, who is in which, and
the daily looks at the results (docs/experiments.md)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from profiles.models import Customer
from recommendations.models import RecommenderConfig


class ExperimentsAuditAction(models.TextChoices):
    """What operators do to experiments (this app's actions in the audit log)."""

    EXPERIMENT_CREATED = "experiment.created", "Experiment created"
    EXPERIMENT_CHANGED = "experiment.changed", "Experiment changed"
    EXPERIMENT_DELETED = "experiment.deleted", "Experiment deleted"
    EXPERIMENT_STARTED = "experiment.started", "Experiment started"
    EXPERIMENT_STOPPED = "experiment.stopped", "Experiment stopped"
    EXPERIMENT_PROMOTED = "experiment.promoted", "Experiment winner made the default"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Metric(models.TextChoices):
    """What an experiment measures per exposed customer (docs/experiments.md, "Attribution")."""

    CLICK_THROUGH = "click_through", "Click-through of suggestions (clicks per impression)"
    CONVERSION = "conversion", "Conversion (bought a suggested item within the attribution window)"
    REVENUE = "revenue", "Revenue per customer (from suggested items, within the attribution window)"


def new_salt() -> str:
    return secrets.token_hex(8)


class Experiment(models.Model):
    """An A/B test of recommender configurations: its variants split the population by hashing."""

    name = models.CharField(max_length=120, unique=True)
    hypothesis = models.TextField(blank=True, help_text="What you expect and why (shown on the report).")
    population = models.ForeignKey(
        "segments.Segment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only the customers of this segment take part (empty: every customer).",
    )
    primary_metric = models.CharField(max_length=20, choices=Metric.choices, default=Metric.CONVERSION)
    guardrail_metrics = models.JSONField(
        default=list,
        blank=True,
        help_text="Metrics that must not get worse (a significant harm stops the call for a winner).",
    )
    attribution_days = models.PositiveSmallIntegerField(
        default=7, help_text="A click or purchase counts for an impression of the same item this many days before it."
    )
    mde_percent = models.FloatField(
        default=10.0,
        verbose_name="smallest lift worth detecting (%)",
        help_text="Relative to the control, e.g. 10 for +10%. Sets the sample size and the test's sensitivity.",
    )
    baseline = models.FloatField(
        null=True,
        blank=True,
        help_text="The primary metric today; empty: measured from the last 28 days of impressions.",
    )
    alpha = models.FloatField(default=0.05, help_text="Chance of calling a winner when there is none (0.05).")
    power = models.FloatField(default=0.8, help_text="Chance of finding a lift of the declared size (0.8).")
    status = models.CharField(
        max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT, db_index=True
    )
    salt = models.CharField(max_length=32, default=new_salt, editable=False, help_text="The assignment's hash key.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    winner = models.ForeignKey(
        "Variant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Named by the test."
    )
    outcome = models.CharField(max_length=300, blank=True, help_text="The verdict when it stopped, in words.")
    plan = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Fixed at the start: the baseline, the lift in the metric's units (which sets the test), the "
        "guard-rails' harm worth catching, the customers needed and the expected days.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # two experiments on the same suggestions would each change what the other measures
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="experiment_one_running"),
            models.CheckConstraint(condition=Q(mde_percent__gt=0), name="experiment_mde_positive"),
            models.CheckConstraint(condition=Q(alpha__gt=0) & Q(alpha__lt=0.5), name="experiment_alpha_range"),
            models.CheckConstraint(condition=Q(power__gt=0.5) & Q(power__lt=1), name="experiment_power_range"),
            models.CheckConstraint(condition=Q(attribution_days__gte=1), name="experiment_attribution_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def ended_at(self):
        return self.stopped_at or timezone.now()


class Variant(models.Model):
    """One arm: the recommender configuration its customers are served, and its share of the traffic."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(help_text="0 is the control (A), then B, C, ...")
    config = models.ForeignKey(
        RecommenderConfig, on_delete=models.PROTECT, related_name="+", verbose_name="recommender configuration"
    )
    share = models.FloatField(default=50.0, help_text="Percent of the experiment's customers.")

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "position"], name="experiment_variant_position_uniq"),
            models.CheckConstraint(condition=Q(share__gt=0) & Q(share__lte=100), name="experiment_variant_share"),
        ]

    def __str__(self) -> str:
        return f"{self.letter}: {self.config}" if self.config_id else self.letter

    @property
    def letter(self) -> str:
        return chr(ord("A") + self.position) if self.position < 26 else f"V{self.position}"

    @property
    def channel(self) -> str:
        """The run channel of this variant's suggestions (recommendations.models.RecommenderRun.channel)."""
        return f"experiment-{self.experiment_id}-{self.pk}"


class Assignment(models.Model):
    """A customer's variant in an experiment, recorded when the pipeline enrolled them (the hash decides;
    the row keeps the fact and its time)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["experiment", "customer"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "customer"], name="experiment_assignment_once"),
        ]
        indexes = [models.Index(fields=["customer"], name="experiment_assignment_cust_idx")]


class Look(models.Model):
    """One day's analysis of a running experiment. The next look builds on it: the always-valid p-value
    is the running minimum and the interval the running intersection (experiments.stats.compare)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="looks")
    day = models.DateField()
    taken_at = models.DateTimeField(default=timezone.now)
    verdict = models.CharField(max_length=120)
    winner = models.ForeignKey(Variant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    analysis = models.JSONField(default=dict, help_text="Per variant estimates and comparisons, the SRM check.")

    class Meta:
        ordering = ["experiment", "day"]
        constraints = [models.UniqueConstraint(fields=["experiment", "day"], name="experiment_look_per_day")]

    def __str__(self) -> str:
        return f"{self.experiment} on {self.day:%d %b %Y}"
