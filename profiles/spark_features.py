"""Customer profile features on Apache Spark: the same definitions as ``profiles.features`` (and the
predictions of ``profiles.predictions``), as DataFrame expressions over the events.

Pure PySpark/numpy/pandas, no Django: ``profiles.services.compute_spark`` reads the tables over JDBC,
calls ``profile_frame`` and writes its result to a staging table. PySpark is imported inside the
functions, so importing this module loads neither PySpark nor a JVM.

The definitions are ``profiles/features.py``'s module docstring; what differs is only how they are
computed. Times travel as epoch microseconds (``t_us``, exact, as PostgreSQL stores them); days are
``t_us // 86_400_000_000`` (UTC). Each feature is a per-customer aggregate of one pass over the
events; the RFM scores need the whole population, so they count, per distinct value, how many buyers
are strictly worse (a cumulative sum over the distinct values, which are at most one per buyer).

Inputs:

events
    ``customer_id`` (long), ``type`` (string), ``value`` (double), ``amount`` (double), ``t_us``
    (long, epoch microseconds), ``order_id`` (string, purchases only), ``item_id`` (long).
items
    ``id``, ``category`` (string; empty = none), ``price`` (double).
customers
    ``id``: everyone gets a row, with zeros and nulls without events.

Output (``profile_frame``): one row per customer with the profile columns, timestamps as epoch
microseconds (``*_us``), ``interests`` as JSON text and ``top_categories`` as a JSON array text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import predictions
from .features import PROFILE_FIELDS

__all__ = [
    "FIT_MAX_BUYERS",
    "OUTPUT_COLUMNS",
    "ProfileParams",
    "fit_predictions",
    "profile_frame",
    "score_predictions",
]

US_PER_DAY = 86_400 * 10**6
_PRICE_TYPES = ("view", "click", "add_to_cart", "purchase")
#: The repeat-buying models are fitted on the driver from five numbers per buyer; above this many
#: buyers a uniform sample of them (the fit needs far fewer: docs/spark.md).
FIT_MAX_BUYERS = 2_000_000

#: The profile's moments, carried as epoch microseconds under these names.
MOMENTS_US = {
    "first_seen": "first_seen_us",
    "last_seen": "last_seen_us",
    "first_purchase_at": "first_purchase_us",
    "last_purchase_at": "last_purchase_us",
    "next_order_at": "next_order_us",
}
#: The staging table's columns: the stored profile's fields, moments as microseconds since the epoch.
OUTPUT_COLUMNS = ("customer_id", *(MOMENTS_US.get(f, f) for f in PROFILE_FIELDS))


@dataclass(frozen=True)
class ProfileParams:
    """The local step's parameters (``profiles.services.compute._profile_params``) and ``now``."""

    now_us: int
    window_days: float = 365
    weights: Mapping[str, float | str | None] = field(default_factory=dict)
    half_life_days: float = 60.0
    new_days: float = 30
    active_days: float = 90
    at_risk_days: float = 180
    recent_days: float = 30
    price_cuts: tuple[float, float] | None = None


def _weight(F, weights: Mapping[str, float | str | None]):
    """Each event's weight: ``weights[type]``; a rating's own value when its weight is explicit."""
    expr = None
    for etype, weight in weights.items():
        if etype == "rating" and (weight is None or weight == "explicit"):
            w = F.coalesce(F.col("value"), F.lit(0.0))
        else:
            w = F.lit(float(weight or 0.0))
        expr = F.when(F.col("type") == etype, w) if expr is None else expr.when(F.col("type") == etype, w)
    return F.lit(0.0) if expr is None else expr.otherwise(F.lit(0.0))


def _prepared(events, items, p: ProfileParams):
    """The events up to ``now`` with their item's category and price and the per-event terms."""
    from pyspark.sql import functions as F

    cats = items.select(
        F.col("id").alias("item_id"),
        F.when(F.col("category") == "", None).otherwise(F.col("category")).alias("category"),
        F.col("price").cast("double").alias("item_price"),
    )
    ev = events.where(F.col("t_us") <= F.lit(p.now_us)).join(F.broadcast(cats), on="item_id", how="left")
    age_us = F.lit(p.now_us) - F.col("t_us")
    qty = F.coalesce(F.col("value"), F.lit(1.0))
    return ev.select(
        "customer_id",
        "type",
        "t_us",
        "category",
        "item_price",
        F.floor(F.col("t_us") / F.lit(US_PER_DAY)).alias("day"),
        (age_us < F.lit(p.window_days * US_PER_DAY)).alias("in_win"),
        (age_us < F.lit(p.recent_days * US_PER_DAY)).alias("recent"),
        F.coalesce(F.col("amount").cast("double"), F.coalesce(qty * F.col("item_price"), F.lit(0.0))).alias("money"),
        # an order: its order id when it has one, else the purchases of its UTC day
        F.when(F.col("order_id").isNotNull(), F.concat(F.lit("o:"), F.col("order_id")))
        .otherwise(F.concat(F.lit("d:"), F.floor(F.col("t_us") / F.lit(US_PER_DAY)).cast("string")))
        .alias("order_key"),
        (_weight(F, p.weights) * F.pow(F.lit(0.5), age_us / F.lit(US_PER_DAY) / F.lit(float(p.half_life_days)))).alias(
            "contrib"
        ),
    )


def _per_customer(ev, p: ProfileParams):
    """Purchases, activity and the priced events' median, one row per customer with events."""
    from pyspark.sql import functions as F

    purchase = F.col("type") == "purchase"
    ret = F.col("type") == "return"
    win = F.col("in_win")
    priced = F.col("type").isin(*_PRICE_TYPES) & win & F.col("item_price").isNotNull() & ~F.isnan("item_price")

    def count_if(cond):
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    return ev.groupBy("customer_id").agg(
        F.max(F.when(purchase, F.col("t_us"))).alias("last_purchase_us"),
        F.min(F.when(purchase, F.col("t_us"))).alias("first_purchase_us"),
        F.countDistinct(F.when(purchase & win, F.col("order_key"))).cast("long").alias("frequency"),
        F.countDistinct(F.when(purchase, F.col("order_key"))).cast("long").alias("orders_total"),
        F.sum(F.when(purchase & win, F.col("money")).otherwise(0.0)).alias("spend"),
        F.sum(F.when(ret & win, F.col("money")).otherwise(0.0)).alias("refunds"),
        # exact, interpolating between the two middle values as pandas' median does
        F.percentile(F.when(priced, F.col("item_price")), F.lit(0.5)).alias("median_price"),
        F.countDistinct(F.when(win, F.col("day"))).cast("long").alias("active_days"),
        F.max("t_us").alias("last_seen_us"),
        F.min("t_us").alias("first_seen_us"),
        count_if(F.col("recent")).alias("events_30d"),
        count_if(win).alias("n_events"),
        count_if((F.col("type") == "post") & win).alias("community_posts"),
        count_if((F.col("type") == "comment") & win).alias("community_comments"),
        count_if((F.col("type") == "like") & win).alias("community_likes"),
    )


def _interests(ev):
    """``interests`` (JSON of category -> share, rounded to 6 places) and ``top_categories`` (JSON array
    of up to three, by share then name) per customer with a weighted event on a category."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    g = (
        ev.where((F.col("contrib") > 0) & F.col("category").isNotNull())
        .groupBy("customer_id", "category")
        .agg(F.sum("contrib").alias("w"))
    )
    g = g.withColumn("share", F.col("w") / F.sum("w").over(Window.partitionBy("customer_id")))
    ranked = g.withColumn(
        "pos", F.row_number().over(Window.partitionBy("customer_id").orderBy(F.desc("share"), F.asc("category")))
    )
    return ranked.groupBy("customer_id").agg(
        F.to_json(
            F.map_from_entries(
                F.transform(
                    F.array_sort(F.collect_list(F.struct("pos", "category", "share"))),
                    lambda s: F.struct(s["category"], F.round(s["share"], 6)),
                )
            )
        ).alias("interests"),
        F.to_json(
            F.transform(
                F.slice(F.array_sort(F.collect_list(F.struct("pos", "category"))), 1, 3), lambda s: s["category"]
            )
        ).alias("top_categories"),
    )


def _strictly_worse(frame, column: str, *, higher_is_better: bool):
    """For each distinct value of ``column``: how many rows are strictly worse (``value``, ``worse``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    counts = frame.groupBy(F.col(column).alias("value")).agg(F.count(F.lit(1)).alias("n"))
    order = F.asc("value") if higher_is_better else F.desc("value")
    # One window over the distinct values (at most one per buyer): the cumulative count before each.
    before = Window.orderBy(order).rowsBetween(Window.unboundedPreceding, -1)
    return counts.select("value", F.coalesce(F.sum("n").over(before), F.lit(0)).alias("worse"))


def _score_rfm(features):
    """``r_score``, ``f_score``, ``m_score`` (1-5, 0 for never-bought) and ``rfm_code``, as
    ``profiles.features.score_rfm``: ``1 + floor(5 x buyers strictly worse / buyers)``."""
    from pyspark.sql import functions as F

    buyers = features.where(F.col("recency_days").isNotNull())
    n_buyers = buyers.count()
    out = features
    for score, column, better in (
        ("r_score", "recency_days", False),
        ("f_score", "frequency", True),
        ("m_score", "monetary", True),
    ):
        if not n_buyers:
            out = out.withColumn(score, F.lit(0).cast("int"))
            continue
        worse = _strictly_worse(buyers, column, higher_is_better=better).withColumnRenamed("value", column)
        worse = worse.withColumnRenamed("worse", f"_{score}_worse")
        out = out.join(worse, on=column, how="left")
        value = F.least(F.lit(1) + F.floor(F.lit(5) * F.col(f"_{score}_worse") / F.lit(n_buyers)), F.lit(5))
        out = out.withColumn(score, F.when(F.col("recency_days").isNotNull(), value).otherwise(0).cast("int"))
        out = out.drop(f"_{score}_worse")
    return out.withColumn(
        "rfm_code",
        F.concat(F.col("r_score").cast("string"), F.col("f_score").cast("string"), F.col("m_score").cast("string")),
    )


def _features(events, items, customers, p: ProfileParams):
    """Every customer's features before scoring and predictions (``profiles.features.compute_features``)."""
    from pyspark.sql import functions as F

    ev = _prepared(events, items, p).cache()
    per = _per_customer(ev, p)
    base = customers.select(F.col("id").cast("long").alias("customer_id"))
    f = base.join(per, on="customer_id", how="left").join(_interests(ev), on="customer_id", how="left")
    bought = F.col("last_purchase_us").isNotNull()
    recency = F.when(bought, (F.lit(p.now_us) - F.col("last_purchase_us")) / F.lit(US_PER_DAY))
    monetary = F.round(F.coalesce(F.col("spend"), F.lit(0.0)) - F.coalesce(F.col("refunds"), F.lit(0.0)), 6)
    frequency = F.coalesce(F.col("frequency"), F.lit(0)).cast("long")
    low, high = p.price_cuts if p.price_cuts is not None else (float("nan"), float("nan"))
    median = F.col("median_price")
    if np.isnan(low) or np.isnan(high):
        band = F.when(median.isNotNull(), F.lit("mid"))  # no cuts: nothing is below or above them
    else:
        band = F.when(median.isNull(), None).when(median < low, "low").when(median > high, "high").otherwise("mid")
    first_age = (F.lit(p.now_us) - F.col("first_purchase_us")) / F.lit(US_PER_DAY)
    orders_total = F.coalesce(F.col("orders_total"), F.lit(0)).cast("long")
    lifecycle = (
        F.when(~bought, "never-bought")
        .when((first_age <= p.new_days) & (orders_total == 1), "new")
        .when(F.col("recency_days") <= p.active_days, "active")
        .when(F.col("recency_days") <= p.at_risk_days, "at-risk")
        .otherwise("lapsed")
    )
    f = (
        f.withColumn("recency_days", recency)
        .withColumn("frequency", frequency)
        .withColumn("monetary", monetary)
        .withColumn("orders_total", orders_total)
        .withColumn("avg_order_value", F.when(F.col("frequency") > 0, F.col("monetary") / F.col("frequency")))
        .withColumn("price_band", band)
        .withColumn("lifecycle", lifecycle)
        .withColumn("interests", F.coalesce(F.col("interests"), F.lit("{}")))
        .withColumn("top_categories", F.coalesce(F.col("top_categories"), F.lit("[]")))
        .withColumn("top_category", F.coalesce(F.get_json_object("top_categories", "$[0]"), F.lit("")))
    )
    for col in ("active_days", "events_30d", "n_events", "community_posts", "community_comments", "community_likes"):
        f = f.withColumn(col, F.coalesce(F.col(col), F.lit(0)).cast("long"))
    return f.drop("spend", "refunds"), ev


# --- predictions ---------------------------------------------------------------------------------


def _summary(features, now_us: int):
    """BG/NBD's and Gamma-Gamma's inputs per customer (``profiles.predictions.summarise``): x (repeat
    orders, -1 without any), t_x and T in whole UTC days, n (orders in the window), m (mean order value)."""
    from pyspark.sql import functions as F

    today = now_us // US_PER_DAY
    bought = F.col("orders_total") > 0
    first_day = F.floor(F.col("first_purchase_us") / F.lit(US_PER_DAY))
    last_day = F.floor(F.col("last_purchase_us") / F.lit(US_PER_DAY))
    return features.select(
        "customer_id",
        F.when(bought, F.col("orders_total") - 1).otherwise(-1).cast("long").alias("x"),
        F.when(bought, last_day - first_day).otherwise(0).cast("double").alias("t_x"),
        F.when(bought, F.lit(today) - first_day).otherwise(0).cast("double").alias("T"),
        F.col("frequency").cast("double").alias("n"),
        F.coalesce(F.col("avg_order_value"), F.lit(float("nan"))).cast("double").alias("m"),
    )


def fit_predictions(summary, *, horizon_days: float, seed: int = 0) -> tuple[dict, str]:
    """Fit BG/NBD and Gamma-Gamma on the driver from the buyers' summaries (at most ``FIT_MAX_BUYERS``,
    a uniform sample beyond) and the not-yet-buyers' prior, as ``profiles.predictions.predict`` does
    on a full run. Returns the fitted parameters (``model``, ``spend``, ``prior``, ``spend_reason``;
    or ``reason``/``reason_code`` when no model can be fitted) and how many buyers the fit read."""
    from pyspark.sql import functions as F

    # in customer order, as the local step passes them: the Gamma-Gamma fit is flat near its optimum
    # (q near 1 on many shops), where the order of the sums moves the optimiser's answer
    buyers = summary.where(F.col("x") >= 0).select("customer_id", "x", "t_x", "T", "n", "m")
    sizes = summary.agg(F.count(F.when(F.col("x") >= 0, 1)).alias("buyers"), F.count(F.lit(1)).alias("all")).first()
    n_buyers, never = int(sizes["buyers"]), int(sizes["all"] - sizes["buyers"])
    sampled = n_buyers > FIT_MAX_BUYERS
    if sampled:
        buyers = buyers.sample(fraction=FIT_MAX_BUYERS / n_buyers, seed=seed)
    frame = buyers.orderBy("customer_id").toPandas()
    x = np.concatenate([frame["x"].to_numpy(dtype=np.int64), np.full(never, -1, dtype=np.int64)])
    t_x = np.concatenate([frame["t_x"].to_numpy(dtype=float), np.zeros(never)])
    T = np.concatenate([frame["T"].to_numpy(dtype=float), np.zeros(never)])
    n = np.concatenate([frame["n"].to_numpy(dtype=float), np.zeros(never)])
    m = np.concatenate([frame["m"].to_numpy(dtype=float), np.full(never, np.nan)])
    read = f"{len(frame):,} of {n_buyers:,} buyers" if sampled else f"{n_buyers:,} buyers"
    try:
        model, spend, spend_reason = predictions.fit(x, t_x, T, n, m)
    except predictions.NoModel as exc:
        return {"reason": exc.reason, "reason_code": exc.code}, read
    prior = predictions.empirical_prior(x, T, n, m, horizon_days=horizon_days)
    return {"model": model, "spend": spend, "prior": prior, "spend_reason": spend_reason}, read


def score_predictions(summary, fitted: dict, *, horizon_days: float, now_us: int):
    """The prediction columns per customer, scored in Spark partition by partition with the fitted
    parameters (``profiles.predictions.predict`` on each partition: its formulas are per customer)."""
    model, spend, prior = fitted.get("model"), fitted.get("spend"), fitted.get("prior")
    horizon = float(horizon_days)
    schema = (
        "customer_id long, p_alive double, predicted_orders double, predicted_value double, churn_risk double,"
        " next_order_us double, prediction_basis string, prediction_horizon_days int"
    )

    def score(batches):
        for b in batches:
            if model is None:
                out = pd.DataFrame(
                    {c: np.full(len(b), np.nan) for c in ("p_alive", "predicted_orders", "predicted_value")}
                )
                out["churn_risk"] = np.nan
                out["next_order_days"] = np.nan
                out["prediction_basis"] = ""
            else:
                out = predictions.predict(
                    b["x"].to_numpy(),
                    b["t_x"].to_numpy(),
                    b["T"].to_numpy(),
                    b["n"].to_numpy(),
                    b["m"].to_numpy(),
                    horizon_days=horizon,
                    model=model,
                    spend=spend,
                    prior=prior,
                ).frame
            has = out["prediction_basis"].to_numpy() != ""
            yield pd.DataFrame(
                {
                    "customer_id": b["customer_id"].to_numpy(dtype=np.int64),
                    "p_alive": out["p_alive"].to_numpy(dtype=float),
                    "predicted_orders": out["predicted_orders"].to_numpy(dtype=float),
                    "predicted_value": out["predicted_value"].to_numpy(dtype=float),
                    "churn_risk": out["churn_risk"].to_numpy(dtype=float),
                    "next_order_us": now_us + out["next_order_days"].to_numpy(dtype=float) * US_PER_DAY,
                    "prediction_basis": out["prediction_basis"].astype(str).to_numpy(),
                    "prediction_horizon_days": pd.array(np.where(has, int(horizon), None), dtype="Int32"),
                }
            )

    return summary.mapInPandas(score, schema=schema)


def profile_frame(events, items, customers, p: ProfileParams, *, horizon_days: float, predict: bool = True):
    """Every customer's profile row (``OUTPUT_COLUMNS``) and what the predictions recorded.

    ``predict=False`` leaves the prediction columns empty (no fit)."""
    from pyspark.sql import functions as F

    features, ev = _features(events, items, customers, p)
    features = _score_rfm(features.cache())
    info: dict = {"horizon_days": int(horizon_days)}
    if predict:
        summary = _summary(features, p.now_us).cache()
        fitted, read = fit_predictions(summary, horizon_days=horizon_days)
        info["fit_read"] = read
        if "reason" in fitted:
            info.update(reason=fitted["reason"], reason_code=fitted["reason_code"])
            fitted = {}
        else:
            info.update(
                fitted=True,
                bgnbd=fitted["model"].as_dict(),
                gamma_gamma=fitted["spend"].as_dict() if fitted["spend"] is not None else None,
                prior=fitted["prior"],
            )
            if fitted["spend"] is None:
                info["spend_reason"] = fitted["spend_reason"] or "no Gamma-Gamma parameters"
        scored = score_predictions(summary, fitted, horizon_days=horizon_days, now_us=p.now_us)
        features = features.join(scored, on="customer_id", how="left")
    else:
        for col in ("p_alive", "predicted_orders", "predicted_value", "churn_risk", "next_order_us"):
            features = features.withColumn(col, F.lit(None).cast("double"))
        features = features.withColumn("prediction_basis", F.lit("")).withColumn(
            "prediction_horizon_days", F.lit(None).cast("int")
        )
    out = features.select(*OUTPUT_COLUMNS)
    return out, ev, info
