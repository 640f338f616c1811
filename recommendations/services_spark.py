"""
The recommendations step on Apache Spark (settings.PIPELINE_BACKEND = "spark"; docs/spark.md).

`recommendations_compute_spark` keeps `services.recommendations_compute`'s run lifecycle (a
RecommenderRun created, its figures and laps recorded, the active run switched in one transaction,
old runs pruned; a failure fails the run, discards its rows and leaves the previous run in service)
and computes the rows on Spark:

1. events, customers, items, cluster memberships and recent impressions are read over JDBC (events
   in parallel ranges of customer id), and the interaction values built as `load_interactions`
   builds them: the configuration's event weights and time decay, explicit ratings as they are,
   customers without training consent left out;
2. the configuration's algorithm on its Spark counterpart (`recommendations.engine.spark`):
   item-based CF, user-based CF (the ranker's votes) and, for the factor model (PureSVD locally),
   implicit ALS. Any other algorithm is refused with an error that names the configuration;
3. every warm customer's top-N per kind, what they may not be suggested again left out, items shown
   recently down-weighted, short lists completed with the kind's popular items, each with its reason;
   customers without history get their clustering segment's popular list (or the overall one);
4. similar items (item-item cosine within a kind) and the popular lists;
5. Spark writes every row over JDBC with the run's id: rows of a run not yet active are invisible to
   readers, which look at the active run only.

Offline metrics (the holdout evaluation) stay with the local backend.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
from django.db.models import Max, Min
from django.utils import timezone

from common.spark import adaptive_execution_off, jdbc_read, jdbc_write, spark_session
from pipeline.models import RunStatus
from profiles.models import CONSENT_FIELDS, Customer, Event, Item
from segments.models import Membership, Segment, SegmentKind

from .models import Impression, PopularItem, Reason, Recommendation, SimilarItem
from .services import (
    REASON_TEXT,
    VERBS,
    _analyze,
    _Laps,
    _run_create,
    _run_fail,
    _run_switch,
    config_for_run,
    recommender_runs_prune,
    recommender_settings,
)

#: The algorithms the Spark backend computes, and what computes each there.
SPARK_ALGORITHMS = {
    "item_knn": "item-item cosine top-k and Σ x_uj W_ji (recommendations.engine.spark.item_similarities)",
    "user_knn": "the user-based ranker's neighbours and votes (user_ranker_neighbours, user_ranker_scores)",
    "pure_svd": "implicit ALS (pyspark.ml ALS, implicitPrefs) as the factor model",
}
#: Implicit ALS's settings for the factor model (the agreement with the `implicit` library's ALS on
#: ML-100K is measured with these; docs/spark.md).
ALS_PARAMS = {"iterations": 15, "regularization": 0.01, "alpha": 1.0, "seed": 0}


class SparkAlgorithmUnavailable(ValueError):
    """The configuration's algorithm has no Spark counterpart."""


def spark_plan(cfg: dict) -> dict:
    """What Spark computes for the run's configuration (recorded in the run's params); raises
    SparkAlgorithmUnavailable naming the configuration when its algorithm has no Spark counterpart."""
    spec = cfg["spec"]
    params = dict(cfg["model_params"])
    if spec.algorithm not in SPARK_ALGORITHMS:
        name = cfg["config_name"] or "the settings' default"
        raise SparkAlgorithmUnavailable(
            f"The recommender configuration {name!r} uses the algorithm {spec.algorithm!r}, which the Spark"
            f" backend does not compute (it computes {', '.join(SPARK_ALGORITHMS)}); serve another"
            " configuration or run this step on the local backend (PIPELINE_BACKEND=local)."
        )
    plan = {"algorithm": spec.algorithm, "computed_by": SPARK_ALGORITHMS[spec.algorithm]}
    if spec.algorithm == "pure_svd":
        plan["als"] = {
            "factors": int(params["factors"]),
            "value_transform": params.get("value_transform", "log1p"),
            **ALS_PARAMS,
        }
    return plan


# ---------------------------------------------------------------------------- reading
def _id_range(model_cls, field: str = "id") -> tuple[int, int]:
    bounds = model_cls.objects.aggregate(lo=Min(field), hi=Max(field))
    return int(bounds["lo"] or 0), int(bounds["hi"] or 0)


def _weight_map(F, weights: dict):
    pairs = []
    for k, v in weights.items():
        if k != "rating":
            pairs += [F.lit(k), F.lit(float(v))]
    return F.create_map(*pairs) if pairs else None


def _values(F, ev, cfg: dict, decay_from: str):
    """The interaction values of events ``(user, item, type, value, t)``, as `interaction_matrix`
    computes them: implicit weights decayed (from the customer's latest implicit event, or the latest
    event of all) and summed, plus the pair's latest rating. DataFrame ``(user, item, value)``."""
    from pyspark.sql import Window

    wmap = _weight_map(F, cfg["weights"])
    w = F.coalesce(wmap[F.col("type")], F.lit(0.0)) if wmap is not None else F.lit(0.0)
    imp = ev.where(F.col("type") != "rating").withColumn("w", w).where(F.col("w") > 0)
    half_life = cfg["half_life_days"]
    if half_life:
        if decay_from == "customer":
            ref = F.max("t").over(Window.partitionBy("user"))
        else:
            ref = F.lit(ev.agg(F.max("t")).first()[0] or 0.0)
        age_days = F.greatest(ref - F.col("t"), F.lit(0.0)) / F.lit(86_400.0)
        imp = imp.withColumn("w", F.col("w") * F.pow(F.lit(0.5), age_days / F.lit(float(half_life))))
    implicit = imp.groupBy("user", "item").agg(F.sum("w").alias("imp"))
    rated = ev.where((F.col("type") == "rating") & F.col("value").isNotNull() & ~F.isnan("value"))
    explicit = rated.groupBy("user", "item").agg(F.max(F.struct("t", "value"))["value"].alias("rating"))
    both = implicit.join(explicit, ["user", "item"], "full_outer")
    value = F.coalesce(F.col("imp"), F.lit(0.0)) + F.coalesce(F.col("rating"), F.lit(0.0))
    return both.select("user", "item", value.alias("value")).where(F.col("value") != 0)


def _consent_rule(rule) -> list[str] | None:
    """The consent columns of which one must be true to train (None: everyone trains)."""
    if not rule:
        return None
    if rule == "any":
        channels = list(CONSENT_FIELDS)
    else:
        channels = [c.strip() for c in (rule.split(",") if isinstance(rule, str) else rule)]
    unknown = [c for c in channels if c not in CONSENT_FIELDS]
    if unknown:
        raise ValueError(
            f"TRAINING_REQUIRES_CONSENT names unknown channel(s) {unknown};"
            f" use any, or some of {sorted(CONSENT_FIELDS)}"
        )
    return [CONSENT_FIELDS[c] for c in channels]


def load_frames(spark, cfg: dict, *, now: datetime) -> dict:
    """The run's data as Spark DataFrames (see the module docstring)."""
    from pyspark.sql import functions as F

    lo, hi = _id_range(Customer)
    consent = _consent_rule(cfg["training_consent"])
    cols = ", ".join(["id", *(consent or [])])
    customers = jdbc_read(spark, f"(SELECT {cols} FROM {Customer._meta.db_table}) AS c")
    trainable = customers.where(_any(F, [F.col(c) for c in consent]) if consent else F.lit(True))
    trainable = trainable.select(F.col("id").alias("user"))
    items = jdbc_read(spark, f"(SELECT id, kind, active, title FROM {Item._meta.db_table}) AS i").select(
        F.col("id").alias("item"), "kind", "active", F.coalesce("title", F.lit("")).alias("title")
    )
    since = pd.Timestamp(now) - pd.Timedelta(days=cfg["window_days"])
    events = jdbc_read(
        spark,
        f"(SELECT customer_id, item_id, type, value, occurred_at FROM {Event._meta.db_table}"
        f" WHERE item_id IS NOT NULL AND occurred_at >= '{since.isoformat()}') AS e",
        partition_column="customer_id",
        lower=lo,
        upper=hi,
    ).select(
        F.col("customer_id").alias("user"),
        F.col("item_id").alias("item"),
        "type",
        F.col("value").cast("double").alias("value"),
        F.col("occurred_at").cast("double").alias("t"),
    )
    events = events.cache()
    train = events.join(trainable, "user", "left_semi") if consent else events
    x = _values(F, train, cfg, cfg["decay_from"]).cache()
    recent = _values(F, train, cfg, "latest").cache()

    # pairs never to suggest again: the configured event types on items of the configured kinds
    rules = [(F.col("kind") == k) & F.col("type").isin(list(types)) for k, types in cfg["exclude"].items() if types]
    exclude = events.join(items.select("item", "kind"), "item")
    exclude = exclude.where(_any(F, rules)).select("user", "item").distinct() if rules else exclude.limit(0)
    exclude = exclude.select("user", "item").cache()
    code_of = {e: len(VERBS) - j for j, (e, _) in enumerate(VERBS)}  # as load_interactions codes them
    codes = [F.lit(v) for e, c in code_of.items() for v in (e, c)]
    verb = (
        train.withColumn("code", F.create_map(*codes)[F.col("type")])
        .where(F.col("code").isNotNull())
        .groupBy("user", "item")
        .agg(F.max("code").alias("code"))
    )
    shown_since = pd.Timestamp(now) - pd.Timedelta(days=cfg["impression_window_days"])
    shown = jdbc_read(
        spark,
        f"(SELECT customer_id, item_id FROM {Impression._meta.db_table}"
        f" WHERE shown_at >= '{shown_since.isoformat()}') AS s",
    )
    shown = shown.groupBy(F.col("customer_id").alias("user"), F.col("item_id").alias("item")).agg(
        F.count(F.lit(1)).alias("times")
    )
    members = jdbc_read(
        spark,
        f"(SELECT m.segment_id, m.customer_id FROM {Membership._meta.db_table} m"
        f" JOIN {Segment._meta.db_table} s ON s.id = m.segment_id"
        f" WHERE s.kind = '{SegmentKind.CLUSTER.value}' AND s.active) AS m",
    )
    # one clustering segment per customer; the first if a rerun is racing
    members = members.groupBy(F.col("customer_id").alias("user")).agg(F.min("segment_id").alias("segment_id"))
    return {
        "customers": customers.select(F.col("id").alias("user")).cache(),
        "items": items.cache(),
        "events": events,
        "x": x,
        "recent": recent,
        "exclude": exclude,
        "verb": verb,
        "shown": shown,
        "members": members.cache(),
    }


def _any(F, conditions):
    out = conditions[0]
    for c in conditions[1:]:
        out = out | c
    return out


# ---------------------------------------------------------------------------- computing
def _candidates(F, spark_engine, frames: dict, plan: dict, cfg: dict):
    """The model's scored pairs ``(user, item, score, reason_item, count)`` for every warm customer,
    restricted to active items (the kinds are split later)."""
    spec = cfg["spec"]
    p = dict(cfg["model_params"])
    x = frames["x"]
    active = frames["items"].where(F.col("active")).select("item", "kind")
    if spec.algorithm == "item_knn":
        xt = spark_engine.transform_values(x, "binary" if p.get("binary") else p["value_transform"])
        sims = spark_engine.item_similarities(xt, int(p["k"]), similarity=p["similarity"], shrinkage=p["shrinkage"])
        scores = spark_engine.item_knn_scores(xt, sims).select(
            "user", "item", "score", F.col("reason").alias("reason_item"), F.lit(None).cast("long").alias("count")
        )
        return scores.join(active, "item")
    if spec.algorithm == "user_knn":
        xt = spark_engine.transform_values(x, p["value_transform"])
        n_items = frames["items"].count()
        nb = spark_engine.user_ranker_neighbours(
            xt,
            k=int(p["k"]),
            similarity=p["similarity"],
            shrinkage=p["shrinkage"],
            exponent=p["exponent"],
            n_items=n_items,
        )
        scores = spark_engine.user_ranker_scores(xt, nb, beta=p["beta"]).select(
            "user", "item", "score", F.lit(None).cast("long").alias("reason_item"), "count"
        )
        return scores.join(active, "item")
    als = plan["als"]
    # ALS's iterations and the JDBC read's plan make a deep lineage: cut it before and after the fit
    xt = spark_engine.transform_values(x, als["value_transform"]).localCheckpoint(eager=True)
    model = spark_engine.als_fit(
        xt,
        factors=als["factors"],
        iterations=als["iterations"],
        regularization=als["regularization"],
        alpha=als["alpha"],
        seed=als["seed"],
    )
    user_factors = model.userFactors.localCheckpoint(eager=True)
    item_factors = model.itemFactors.localCheckpoint(eager=True)
    # the three kinds' candidates in one scoring pass, the top 2n of each kind per customer,
    # materialised at once (common.spark.adaptive_execution_off says why adaptive execution is off)
    with adaptive_execution_off(xt.sparkSession):
        top = spark_engine.factor_top_n(
            user_factors,
            item_factors,
            xt,
            n=2 * cfg["top_n"],
            exclude=frames["exclude"],
            exclude_history=False,
            candidates=active,
            group="kind",
        ).localCheckpoint(eager=True)
    return top.select(
        "user", "item", "kind", "score", F.col("reason").alias("reason_item"), F.lit(None).cast("long").alias("count")
    )


def _popularity(F, frames: dict):
    """Overall popularity of every item (Σ of the recent values; 0 for items nobody has), with kind and active."""
    pop = frames["recent"].groupBy("item").agg(F.sum("value").alias("pop"))
    return frames["items"].join(pop, "item", "left").withColumn("pop", F.coalesce("pop", F.lit(0.0)))


def _warm_rows(F, Window, cand, frames: dict, cfg: dict, pop):
    """Every warm customer's top-N per kind with reasons (`services.warm_lists`' rules)."""
    n = cfg["top_n"]
    penalty = float(cfg["impression_penalty"])
    cand = cand.join(frames["exclude"], ["user", "item"], "left_anti").where(F.col("score") != 0)
    # items shown recently move down: × penalty per showing (÷ for a negative score)
    cand = cand.join(frames["shown"], ["user", "item"], "left").withColumn(
        "f", F.pow(F.lit(penalty), F.coalesce("times", F.lit(0)).cast("double"))
    )
    cand = cand.withColumn(
        "score",
        F.when(F.col("score") > 0, F.col("score") * F.col("f")).otherwise(
            F.col("score") / F.greatest(F.col("f"), F.lit(1e-12))
        ),
    )
    model_rows = cand.select(
        "user", "item", "kind", "score", "reason_item", "count", F.lit(0).alias("prio"), F.col("score").alias("ord")
    )
    # completion: the kind's 2n most popular active items, after the model's own, said to be popular
    w = Window.partitionBy("kind").orderBy(F.desc("pop"), F.asc("item"))
    fallback = pop.where(F.col("active")).withColumn("p", F.row_number().over(w)).where(F.col("p") <= 2 * n)
    warm = frames["x"].select("user").distinct()
    filler = (
        warm.crossJoin(F.broadcast(fallback.select("item", "kind", "p")))
        .join(frames["exclude"], ["user", "item"], "left_anti")
        .select(
            "user",
            "item",
            "kind",
            F.lit(0.0).alias("score"),
            F.lit(None).cast("long").alias("reason_item"),
            F.lit(None).cast("long").alias("count"),
            F.lit(1).alias("prio"),
            (-F.col("p")).cast("double").alias("ord"),
        )
    )
    rows = model_rows.unionByName(filler)
    first = Window.partitionBy("user", "item").orderBy("prio")
    rows = rows.withColumn("k", F.row_number().over(first)).where(F.col("k") == 1).drop("k")
    rank = Window.partitionBy("user", "kind").orderBy("prio", F.desc("ord"), "item")
    rows = rows.withColumn("rank", F.row_number().over(rank)).where(F.col("rank") <= n)
    return _with_reasons(F, rows, frames)


def _with_reasons(F, rows, frames: dict):
    """``reason``, ``reason_item_id`` and ``reason_text`` of warm rows (`services._item_reasons`)."""
    titles = frames["items"].select(F.col("item").alias("reason_item"), F.col("title").alias("name"))
    verb = frames["verb"].select("user", F.col("item").alias("reason_item"), "code")
    rows = rows.join(titles, "reason_item", "left").join(verb, ["user", "reason_item"], "left")
    templates = [v if "{}" in v else v + " {}" for v in ["interacted with"] + [v for _, v in VERBS][::-1]]
    before = F.create_map(*[a for c, t in enumerate(templates) for a in (F.lit(c), F.lit(t.split("{}")[0]))])
    after = F.create_map(*[a for c, t in enumerate(templates) for a in (F.lit(c), F.lit(t.split("{}")[1]))])
    code = F.coalesce(F.col("code"), F.lit(0)).cast("int")
    name = F.when(F.col("reason_item") == F.col("item"), F.lit("it")).otherwise(F.col("name"))
    by_item = (F.col("prio") == 0) & F.col("reason_item").isNotNull()
    popular = F.col("prio") == 1
    counted = F.when(F.col("count") == 1, F.lit("a customer with similar taste bought this")).otherwise(
        F.concat(F.format_number(F.col("count"), 0), F.lit(" customers with similar taste bought this"))
    )
    text = (
        F.when(by_item, F.concat(F.lit("because you "), before[code], name, after[code]))
        .when(popular, F.lit(REASON_TEXT[Reason.POPULAR]))
        .when(F.col("count") > 0, counted)
        .otherwise(F.lit(REASON_TEXT[Reason.SIMILAR_USERS]))
    )
    reason = (
        F.when(by_item, F.lit(Reason.ITEM.value))
        .when(popular, F.lit(Reason.POPULAR.value))
        .otherwise(F.lit(Reason.SIMILAR_USERS.value))
    )
    return rows.select(
        "user",
        "item",
        "kind",
        "rank",
        "score",
        reason.alias("reason"),
        F.when(by_item, F.col("reason_item")).alias("reason_item_id"),
        F.substring(text, 1, 300).alias("reason_text"),
    )


def _popular_lists(F, Window, frames: dict, cfg: dict, pop):
    """Per kind, the popular list of every clustering segment and the overall one (segment null):
    ``(segment_id, kind, item, rank, score, reason)``, as `Popularity.recommend_for_group` ranks them."""
    n = cfg["top_n"]
    active = pop.where(F.col("active")).select("item", "kind", "pop")
    overall = active.select(F.lit(None).cast("long").alias("segment_id"), "item", "kind", "pop", F.lit(0.0).alias("g"))
    group = (
        frames["recent"].join(frames["members"], "user").groupBy("segment_id", "item").agg(F.sum("value").alias("g"))
    )
    segments = frames["members"].select("segment_id").distinct()
    per_segment = (
        segments.crossJoin(active)
        .join(group, ["segment_id", "item"], "left")
        .withColumn("g", F.coalesce("g", F.lit(0.0)))
        .select("segment_id", "item", "kind", "pop", "g")
    )
    both = per_segment.unionByName(overall)
    w = Window.partitionBy("segment_id", "kind").orderBy(F.desc("g"), F.desc("pop"), F.asc("item"))
    ranked = both.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n)
    reason = F.when(F.col("g") > 0, F.lit(Reason.SEGMENT_POPULAR.value)).otherwise(F.lit(Reason.POPULAR.value))
    return ranked.select("segment_id", "kind", "item", "rank", F.col("g").alias("score"), reason.alias("reason"))


def _cold_rows(F, Window, frames: dict, lists):
    """Customers without history: their segment's list (or the overall one), less what they may not
    be suggested again, ranked again."""
    cold = frames["customers"].join(frames["x"].select("user").distinct(), "user", "left_anti")
    cold = cold.join(frames["members"], "user", "left")
    seg_lists = lists.where(F.col("segment_id").isNotNull())
    overall = lists.where(F.col("segment_id").isNull()).drop("segment_id")
    in_seg = cold.where(F.col("segment_id").isNotNull()).join(seg_lists, "segment_id")
    no_seg = cold.where(F.col("segment_id").isNull()).drop("segment_id").crossJoin(F.broadcast(overall))
    rows = in_seg.drop("segment_id").unionByName(no_seg)
    rows = rows.join(frames["exclude"], ["user", "item"], "left_anti")
    w = Window.partitionBy("user", "kind").orderBy("rank")
    texts = {r.value: t for r, t in REASON_TEXT.items()}
    text = F.when(F.col("reason") == Reason.SEGMENT_POPULAR.value, F.lit(texts[Reason.SEGMENT_POPULAR.value]))
    text = text.otherwise(F.lit(texts[Reason.POPULAR.value]))
    return rows.withColumn("rank", F.row_number().over(w)).select(
        "user",
        "item",
        "kind",
        "rank",
        "score",
        "reason",
        F.lit(None).cast("long").alias("reason_item_id"),
        text.alias("reason_text"),
    )


def _similar(F, Window, spark_engine, frames: dict, cfg: dict):
    """Top neighbours of every item within its kind, inactive neighbours left out (`services.similar_rows`)."""
    n = cfg["similar_n"]
    k = max(cfg["similar_k"], n + 10)
    kinds = frames["items"].select("item", "kind", "active")
    x = frames["x"]
    sims = spark_engine._cosine_exact(x, 0.0).where(F.col("score") > 0)
    sims = sims.join(kinds.select("item", "kind"), "item").join(
        kinds.select(F.col("item").alias("other"), F.col("kind").alias("okind"), F.col("active").alias("oactive")),
        "other",
    )
    sims = sims.where(F.col("kind") == F.col("okind"))
    sims = spark_engine.top_per_group(sims, "item", "score", "other", k).where(F.col("oactive"))
    sims = spark_engine.top_per_group(sims.drop("rank"), "item", "score", "other", n)
    return sims.select(
        F.col("item").alias("item_id"),
        F.col("other").alias("similar_id"),
        "rank",
        F.round("score", 6).alias("score"),
    )


def _write_rows(F, rows, run_id: int, laps=None, lap: str = "") -> int:
    """Compute ``rows`` once (cached), then write them over JDBC; with ``laps``, the computing and
    the writing are timed apart (``<lap>`` and ``<lap>_write``)."""
    out = rows.select(
        F.lit(run_id).cast("long").alias("run_id"),
        F.col("user").alias("customer_id"),
        F.col("item").alias("item_id"),
        "kind",
        F.col("rank").cast("int").alias("rank"),
        F.round(F.col("score").cast("double"), 6).alias("score"),
        "reason",
        "reason_item_id",
        "reason_text",
    ).cache()
    count = out.count()
    if laps is not None:
        laps.lap(lap)
    if count:
        jdbc_write(out, Recommendation._meta.db_table)
    if laps is not None:
        laps.lap(f"{lap}_write")
    out.unpersist()
    return count


def recommendations_compute_spark(
    *,
    step=None,
    progress: Callable[[float, str], None] | None = None,
    now: datetime | None = None,
    config: str = "",
) -> dict:
    """The pipeline's "recommendations" step on Spark (see the module docstring); the same figures as
    `services.recommendations_compute` returns, offline metrics aside."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from .engine import spark as spark_engine

    progress = progress or (lambda fraction, message="": None)
    cfg = recommender_settings(config_for_run(config))
    plan = spark_plan(cfg)  # before the run: a configuration Spark cannot compute is refused outright
    now = now or timezone.now()
    spark = spark_session()
    run = _run_create(cfg, step=step, now=now)
    run.params = {**run.params, "backend": "spark", "spark": plan}
    run.save(update_fields=["params"])
    laps = _Laps()
    try:
        progress(0.02, "reading events over JDBC")
        frames = load_frames(spark, cfg, now=now)
        n_customers = frames["customers"].count()
        warm_users = frames["x"].select("user").distinct().cache()
        n_warm = warm_users.count()
        sizes = {
            "customers": n_customers,
            "items": frames["items"].count(),
            "events": frames["events"].count(),
            "interactions": frames["x"].count(),
            "customers_with_history": n_warm,
            "customers_cold": n_customers - n_warm,
        }
        laps.lap("read")
        progress(0.2, f"{sizes['events']:,} events, {n_customers:,} customers; fitting {plan['algorithm']} on Spark")
        pop = _popularity(F, frames).cache()
        cand = _candidates(F, spark_engine, frames, plan, cfg)
        laps.lap("fit")  # the model, and for a factor model its scoring (materialised there)
        progress(0.4, f"suggestions for {n_warm:,} customers with history")
        written = _write_rows(F, _warm_rows(F, Window, cand, frames, cfg, pop), run.pk, laps, "recommend")
        progress(0.75, f"popular lists and {sizes['customers_cold']:,} customers without history")
        lists = _popular_lists(F, Window, frames, cfg, pop).cache()
        written += _write_rows(F, _cold_rows(F, Window, frames, lists), run.pk)
        popular = lists.select(
            F.lit(run.pk).cast("long").alias("run_id"),
            "segment_id",
            "kind",
            F.col("item").alias("item_id"),
            F.col("rank").cast("int").alias("rank"),
            F.round("score", 6).alias("score"),
        )
        jdbc_write(popular, PopularItem._meta.db_table)
        laps.lap("cold_start")
        progress(0.88, "similar items")
        similar = (
            _similar(F, Window, spark_engine, frames, cfg).withColumn("run_id", F.lit(run.pk).cast("long")).cache()
        )
        sizes["similar_pairs"] = similar.count()
        if sizes["similar_pairs"]:
            jdbc_write(similar, SimilarItem._meta.db_table)
        laps.lap("similar_items")
        sizes["recommendations"] = written
        progress(0.96, "refreshing the planner's statistics")
        _analyze()
        progress(0.97, "switching the active run")
        metrics = {"note": "offline metrics are computed by the local backend only"}
        _run_switch(run, sizes=sizes, metrics=metrics, laps=laps)
        pruned = recommender_runs_prune(keep=cfg["keep_runs"])
        for frame in (*frames.values(), warm_users, pop, lists, similar):
            frame.unpersist()
        progress(1.0, f"{written:,} suggestions for {n_customers:,} customers (Spark)")
        return {
            "run": run.pk,
            "status": run.status,
            "algorithm": run.algorithm,
            "backend": "spark",
            "params": run.params,
            "sizes": sizes,
            "durations": laps.durations,
            "pruned_runs": pruned,
            "configuration": cfg["config_name"],
            "channel": "",
            **({"_status": "skipped"} if run.status == RunStatus.STALE else {}),
        }
    except Exception as exc:
        _run_fail(run, exc, laps)
        raise
