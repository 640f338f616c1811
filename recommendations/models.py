"""Recommender runs and what they computed: per-customer suggestions, item neighbours, fallbacks.

Every row a run writes carries the run's id, and readers only look at the active run, so a run
being written (or one that failed halfway) is never seen; switching the active run is one UPDATE
pair in one transaction (see services.recommendations_compute).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from pipeline.models import PipelineStep, RunStatus
from profiles.models import Customer, Item, ItemKind


class Reason(models.TextChoices):
    ITEM = "item", "Because you … X"
    SIMILAR_USERS = "similar_users", "Customers with similar taste"
    SEGMENT_POPULAR = "segment_popular", "Popular in your segment"
    POPULAR = "popular", "Popular right now"


class RecommendationsAuditAction(models.TextChoices):
    """What operators do to recommender configurations (this app's actions in the audit log)."""

    CONFIG_CREATED = "recommender_config.created", "Recommender configuration created"
    CONFIG_CHANGED = "recommender_config.changed", "Recommender configuration changed"
    CONFIG_DELETED = "recommender_config.deleted", "Recommender configuration deleted"
    CONFIG_MADE_DEFAULT = "recommender_config.made_default", "Recommender configuration made the default"


class Algorithm(models.TextChoices):
    """The algorithms of recommendations/algorithms.py (a test keeps the two lists equal)."""

    PURE_SVD = "pure_svd", "PureSVD (the default model)"
    ITEM_KNN = "item_knn", "Item-based collaborative filtering"
    USER_KNN = "user_knn", "User-based collaborative filtering"
    RP3BETA = "rp3beta", "RP3beta (graph walk)"
    SASREC = "sasrec", "Sequence model (SASRec)"
    POPULARITY = "popularity", "Popularity"
    BLEND = "blend", "Blend of configurations"


class RecommenderConfig(models.Model):
    """A named recommender configuration an operator can choose: the algorithm, the parameters that
    differ from its defaults, and the feedback weights and time decay it learns from.

    Exactly one configuration is the default: the one the pipeline serves unless a run names another.
    A blend weighs other (non-blend) configurations' scores; its components are BlendComponent rows.
    """

    name = models.CharField(max_length=80, unique=True)
    description = models.TextField(blank=True, help_text="What this configuration is for (shown in the list).")
    algorithm = models.CharField(max_length=20, choices=Algorithm.choices, default=Algorithm.PURE_SVD)
    params = models.JSONField(
        default=dict, blank=True, help_text="The parameters that differ from the algorithm's defaults."
    )
    event_weights = models.JSONField(
        default=dict,
        blank=True,
        help_text="How much each event type counts, where it differs from the shop's EVENT_WEIGHTS.",
    )
    half_life_days = models.FloatField(
        null=True,
        blank=True,
        help_text="Days after which an event counts half (empty: the shop's RECOMMENDER_HALF_LIFE_DAYS).",
    )
    is_default = models.BooleanField(default=False, help_text="Served unless a run names another. Exactly one.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name"]
        verbose_name = "recommender configuration"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="reco_config_one_default"
            ),
            models.CheckConstraint(
                condition=Q(half_life_days__isnull=True) | Q(half_life_days__gt=0),
                name="reco_config_half_life_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BlendComponent(models.Model):
    """One configuration inside a blend, with its weight."""

    blend = models.ForeignKey(RecommenderConfig, on_delete=models.CASCADE, related_name="components")
    config = models.ForeignKey(
        RecommenderConfig,
        on_delete=models.PROTECT,
        related_name="in_blends",
        verbose_name="configuration",
        limit_choices_to=~Q(algorithm=Algorithm.BLEND),
    )
    weight = models.FloatField(default=1.0, help_text="Relative weight (scores are normalised per customer first).")

    class Meta:
        ordering = ["-weight", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["blend", "config"], name="reco_blend_component_once"),
            models.CheckConstraint(condition=Q(weight__gt=0), name="reco_blend_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.config} × {self.weight:g}"


class RecommenderRun(models.Model):
    """One recomputation of the suggestions: algorithm, parameters, sizes, offline metrics, timings.

    A run serves a channel: the shop's own ("", what every customer gets) or a side channel that an
    upper app routes some customers to (an experiment's variant, `settings.RECOMMENDATIONS_ROUTER`).
    Each channel has at most one active run, switched the same way.
    """

    step = models.ForeignKey(PipelineStep, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING, db_index=True)
    is_active = models.BooleanField(
        default=False, help_text="The run the API and the admin serve (on its channel). At most one per channel."
    )
    channel = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="Empty for the shop's own suggestions; a side channel (e.g. an experiment's variant) "
        "otherwise, served only to the customers routed to it.",
    )
    algorithm = models.CharField(max_length=40, default="pure_svd")
    config = models.ForeignKey(
        RecommenderConfig,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        verbose_name="configuration",
        help_text="The configuration this run served (its name and parameters are also kept in params).",
    )
    params = models.JSONField(
        default=dict, blank=True, help_text="Model parameters, weights, half-life, exclusions, sizes of lists."
    )
    sizes = models.JSONField(
        default=dict, blank=True, help_text="Customers, items, events, interactions, rows written."
    )
    metrics = models.JSONField(
        default=dict, blank=True, help_text="Offline metrics on the holdout, per kind and for the baseline."
    )
    durations = models.JSONField(default=dict, blank=True, help_text="Seconds per phase.")
    # The product kind's headline figures, as columns so the run list can sort and chart them.
    ndcg_at_10 = models.FloatField(null=True, blank=True, verbose_name="NDCG@10")
    precision_at_10 = models.FloatField(null=True, blank=True, verbose_name="precision@10")
    recall_at_10 = models.FloatField(null=True, blank=True, verbose_name="recall@10")
    coverage = models.FloatField(null=True, blank=True, verbose_name="coverage@10")
    n_customers = models.PositiveIntegerField(default=0)
    n_recommendations = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel"], condition=Q(is_active=True), name="reco_run_one_active_per_channel"
            ),
        ]

    def __str__(self) -> str:
        state = self.get_status_display().lower() + (", in service" if self.is_active else "")
        return f"Recommender run of {self.started_at:%d %b %Y %H:%M} ({state})"


# A run's suggestions, similar items and popular lists are derived rows: the recommender writes them
# in bulk from ids it has just read, and they leave with their run. Their foreign keys are not
# checked by the database (db_constraint=False): PostgreSQL checks a deferred key at commit, one
# look-up per key per row, and for a run of 100,000 suggestions that took 2.1 s, four times the COPY
# itself (docs/benchmarks.md, "Load"). Django still applies on_delete when a run, a customer or an
# item is deleted through it, and every read joins the rows to the tables they point to.


class Recommendation(models.Model):
    """One suggestion of a run: customer, item, its rank within the item's kind, and why."""

    # (run, customer, kind, rank) is unique and indexed; it serves the API's lookup and the pruning.
    run = models.ForeignKey(
        RecommenderRun, on_delete=models.CASCADE, related_name="recommendations", db_index=False, db_constraint=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="recommendations", db_index=False, db_constraint=False
    )
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    kind = models.CharField(max_length=16, choices=ItemKind.choices, help_text="The item's kind, copied for the index.")
    rank = models.PositiveSmallIntegerField(help_text="1 = best.")
    score = models.FloatField()
    reason = models.CharField(max_length=20, choices=Reason.choices)
    reason_item = models.ForeignKey(
        Item,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
        help_text="For “because you … X”: X, one of the customer's own items.",
    )
    reason_text = models.CharField(max_length=300, help_text="The reason in words, as a customer reads it.")

    class Meta:
        ordering = ["run", "customer", "kind", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "customer", "kind", "rank"], name="reco_run_customer_kind_rank_uniq"
            ),
            models.CheckConstraint(condition=Q(rank__gte=1), name="reco_rank_positive"),
        ]

    def __str__(self) -> str:
        return f"Suggestion #{self.rank} ({self.get_kind_display().lower()})"


class SimilarItem(models.Model):
    """The top neighbours of an item within its kind, per run (item-item cosine, see services)."""

    run = models.ForeignKey(
        RecommenderRun, on_delete=models.CASCADE, related_name="similar_items", db_index=False, db_constraint=False
    )
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    similar = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    rank = models.PositiveSmallIntegerField()
    score = models.FloatField()

    class Meta:
        ordering = ["run", "item", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["run", "item", "rank"], name="reco_similar_run_item_rank_uniq"),
            models.CheckConstraint(condition=~Q(item=models.F("similar")), name="reco_similar_not_itself"),
        ]


class PopularItem(models.Model):
    """A run's popular items per kind, overall (segment empty) and per clustering segment.

    Customers who had no history when the run was computed got these as their suggestions;
    customers who arrived after it are answered from here.
    """

    run = models.ForeignKey(
        RecommenderRun, on_delete=models.CASCADE, related_name="popular_items", db_index=False, db_constraint=False
    )
    segment = models.ForeignKey(
        "segments.Segment",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(max_length=16, choices=ItemKind.choices)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    rank = models.PositiveSmallIntegerField()
    score = models.FloatField()

    class Meta:
        ordering = ["run", "segment", "kind", "rank"]
        indexes = [models.Index(fields=["run", "kind", "segment", "rank"], name="reco_popular_lookup_idx")]


class Impression(models.Model):
    """An item shown to a customer (by a campaign, a page, an email). The recommender down-weights
    items a customer was shown recently and did not act on; see services.impressions_record."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+", db_index=False)
    shown_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=60, blank=True, help_text="Who showed it, e.g. campaign:12.")
    channel = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="The suggestions' channel when the list was served (an experiment's variant), else empty.",
    )

    class Meta:
        ordering = ["-shown_at"]
        indexes = [
            models.Index(fields=["shown_at"], name="reco_impression_time_idx"),
            models.Index(fields=["customer", "shown_at"], name="reco_impression_cust_idx"),
        ]
