"""The recommender's Spark counterparts (issue #15): the engine's models on Spark DataFrames.

Everything here takes and returns DataFrames of ``(user, item, value)`` (integer ids, float values:
the interaction matrix's stored entries) and imports PySpark, so the engine package does not import
this module: callers name it (``from recommendations.engine import spark as spark_engine``). No
Django, as for the rest of the engine. docs/spark.md tells the algorithms, what each
agrees with locally and how closely.

- :func:`item_similarities`: item-item cosine, top ``k`` per item (``ItemKNN.similarity_``): exact,
  by a sparse self-join on users, or DIMSUM sampling (``RowMatrix.columnSimilarities``) for very large
  catalogues;
- :func:`item_knn_scores`: ``Σ_j x_uj W_ji`` with the reason, the user's ``j`` contributing most
  (``ItemKNN`` and its explanations);
- :func:`user_knn_predict`: the seed's mean-centred user-based formula (``UserKNN``, as
  scikit-surprise's ``KNNWithMeans``), for given ``(user, item)`` pairs;
- :func:`user_ranker_neighbours` / :func:`user_ranker_scores`: the neighbours' votes that rank
  (``UserKNNRanker``);
- :func:`als_fit` and :func:`factor_top_n`: implicit-feedback ALS (``pyspark.ml``) and the top ``n``
  of a factor model for every user with what the user has seen excluded, explained as PureSVD is;
- :func:`top_n`: the best ``n`` rows per user (or per user and group) of scored pairs.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

USER, ITEM, VALUE = "user", "item", "value"
VALUE_TRANSFORMS = ("none", "log1p", "binary")


def _check_columns(df: DataFrame, needed, what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {', '.join(needed)}; missing {', '.join(missing)} (has {df.columns})")


def transform_values(df: DataFrame, how: str) -> DataFrame:
    """``value`` as the engine's ``value_transform``: ``none``, ``log1p`` (of max(v, 0)) or ``binary``
    (1 per entry); entries that become 0 are dropped, as a sparse matrix drops them."""
    if how not in VALUE_TRANSFORMS:
        raise ValueError(f"value_transform must be one of {VALUE_TRANSFORMS}, got {how!r}")
    if how == "log1p":
        df = df.withColumn(VALUE, F.log1p(F.greatest(F.col(VALUE), F.lit(0.0))))
    elif how == "binary":
        df = df.withColumn(VALUE, F.lit(1.0))
    return df.where(F.col(VALUE) != 0)


def top_per_group(df: DataFrame, group, score: str, tie: str, n: int, rank: str = "rank") -> DataFrame:
    """The ``n`` rows of largest ``score`` per ``group`` (a column or columns), ties to the lower
    ``tie``; their position (1 = best) in ``rank``."""
    group = [group] if isinstance(group, str) else list(group)
    w = Window.partitionBy(*group).orderBy(F.desc(score), F.asc(tie))
    return df.withColumn(rank, F.row_number().over(w)).where(F.col(rank) <= n)


# ---------------------------------------------------------------------------- item-item
def item_similarities(
    df: DataFrame,
    k: int,
    *,
    similarity: str = "cosine",
    shrinkage: float = 0.0,
    method: str = "exact",
    threshold: float = 0.1,
) -> DataFrame:
    """Top-``k`` item neighbours: DataFrame ``(item, other, score)``, positive scores only, the
    item itself left out (row ``item`` of ``ItemKNN.similarity_``; ties to the lower ``other``).

    ``method="exact"``: ``x_i·x_j / (‖x_i‖ ‖x_j‖)``, the dot products by a self-join of the entries on
    users (its cost is Σ_u n_u², the users' squared history lengths), times ``n_ij / (n_ij +
    shrinkage)`` (``n_ij``: users with both). ``"adjusted_cosine"`` first subtracts each user's mean.

    ``method="dimsum"``: DIMSUM sampling (Zadeh & Carlsson, ``RowMatrix.columnSimilarities``):
    similarities above ``threshold`` are estimated with bounded relative error, pairs below it are
    sampled less (0 = exact, all pairs). It needs the classic (non-Connect) session's RDDs and gives
    no co-counts, so no ``shrinkage``.
    """
    _check_columns(df, (USER, ITEM, VALUE), "item_similarities")
    if similarity not in ("cosine", "adjusted_cosine"):
        raise ValueError(f"similarity must be 'cosine' or 'adjusted_cosine', got {similarity!r}")
    if k < 1:
        raise ValueError("k must be >= 1")
    x = df.select(F.col(USER).cast("long"), F.col(ITEM).cast("long"), F.col(VALUE).cast("double"))
    if similarity == "adjusted_cosine":
        means = x.groupBy(USER).agg(F.avg(VALUE).alias("m"))
        x = x.join(means, USER).select(USER, ITEM, (F.col(VALUE) - F.col("m")).alias(VALUE))
    if method == "exact":
        pairs = _cosine_exact(x, shrinkage)
    elif method == "dimsum":
        if shrinkage:
            raise ValueError("DIMSUM gives no co-counts to shrink by: use shrinkage=0 with method='dimsum'")
        pairs = _cosine_dimsum(x, threshold)
    else:
        raise ValueError(f"method must be 'exact' or 'dimsum', got {method!r}")
    pairs = pairs.where(F.col("score") > 0)
    return top_per_group(pairs, ITEM, "score", "other", k).drop("rank")


def _cosine_exact(x: DataFrame, shrinkage: float) -> DataFrame:
    norms = x.groupBy(ITEM).agg(F.sqrt(F.sum(F.col(VALUE) * F.col(VALUE))).alias("norm"))
    a = x.select(USER, F.col(ITEM).alias("i"), F.col(VALUE).alias("vi"))
    b = x.select(USER, F.col(ITEM).alias("j"), F.col(VALUE).alias("vj"))
    dots = (
        a.join(b, USER)
        .where(F.col("i") < F.col("j"))  # one half; the other is its mirror
        .groupBy("i", "j")
        .agg(F.sum(F.col("vi") * F.col("vj")).alias("dot"), F.count(F.lit(1)).alias("n"))
    )
    dots = dots.unionByName(dots.select(F.col("j").alias("i"), F.col("i").alias("j"), "dot", "n"))
    ni = norms.select(F.col(ITEM).alias("i"), F.col("norm").alias("ni"))
    nj = norms.select(F.col(ITEM).alias("j"), F.col("norm").alias("nj"))
    score = F.when((F.col("ni") > 0) & (F.col("nj") > 0), F.col("dot") / F.col("ni") / F.col("nj")).otherwise(0.0)
    if shrinkage:
        score = score * (F.col("n") / (F.col("n") + F.lit(float(shrinkage))))
    return (
        dots.join(ni, "i").join(nj, "j").select(F.col("i").alias(ITEM), F.col("j").alias("other"), score.alias("score"))
    )


def _cosine_dimsum(x: DataFrame, threshold: float) -> DataFrame:
    from pyspark.mllib.linalg import Vectors
    from pyspark.mllib.linalg.distributed import RowMatrix

    spark = x.sparkSession
    if not hasattr(spark, "sparkContext") or type(spark).__module__.startswith("pyspark.sql.connect"):
        raise ValueError("DIMSUM (RowMatrix.columnSimilarities) needs a classic Spark session, not Spark Connect")
    ids = x.select(ITEM).distinct().withColumn("col", F.dense_rank().over(Window.orderBy(ITEM)) - 1)
    n_cols = ids.count()
    rows = (
        x.join(ids, ITEM)
        .groupBy(USER)
        .agg(F.sort_array(F.collect_list(F.struct("col", VALUE))).alias("entries"))
        .rdd.map(lambda r: Vectors.sparse(n_cols, [e[0] for e in r.entries], [e[1] for e in r.entries]))
    )
    sims = RowMatrix(rows).columnSimilarities(float(threshold)).entries  # upper triangle, i < j
    both = sims.flatMap(lambda e: ((int(e.i), int(e.j), float(e.value)), (int(e.j), int(e.i), float(e.value))))
    frame = spark.createDataFrame(both, schema="ci long, cj long, score double")
    back_i = ids.select(F.col("col").alias("ci"), F.col(ITEM).alias("item_"))
    back_j = ids.select(F.col("col").alias("cj"), F.col(ITEM).alias("other"))
    return frame.join(back_i, "ci").join(back_j, "cj").select(F.col("item_").alias(ITEM), "other", "score")


def item_knn_scores(df: DataFrame, sims: DataFrame) -> DataFrame:
    """``score(u, i) = Σ_j x_uj W_ji`` (``W``: :func:`item_similarities`) for every item reached,
    with ``reason``: the user's item ``j`` of largest ``x_uj W_ji`` (ties: the lower ``j``), as
    ``ItemKNN`` explains a suggestion. DataFrame ``(user, item, score, reason)``."""
    x = df.select(USER, F.col(ITEM).alias("j"), VALUE)
    w = sims.select(F.col(ITEM).alias("j"), F.col("other").alias(ITEM), F.col("score").alias("w"))
    contrib = x.join(w, "j").select(USER, ITEM, "j", (F.col(VALUE) * F.col("w")).alias("c"))
    return contrib.groupBy(USER, ITEM).agg(
        F.sum("c").alias("score"),
        # the largest contribution, then the lower j (the negated j is largest)
        (-F.max(F.struct(F.col("c"), (-F.col("j")).alias("nj")))["nj"]).alias("reason"),
    )


# ---------------------------------------------------------------------------- user-based
def _co_rated_sums(x: DataFrame) -> DataFrame:
    """For every pair of users with a co-rated item (a user with itself included): the co-rated
    count and sums ``(u, v, n, si, sj, sqi, sqj, prods)`` (the self-join of the entries on items)."""
    a = x.select(F.col(USER).alias("u"), ITEM, F.col(VALUE).alias("ru"))
    b = x.select(F.col(USER).alias("v"), ITEM, F.col(VALUE).alias("rv"))
    return (
        a.join(b, ITEM)
        .groupBy("u", "v")
        .agg(
            F.count(F.lit(1)).cast("double").alias("n"),
            F.sum("ru").alias("si"),
            F.sum("rv").alias("sj"),
            F.sum(F.col("ru") * F.col("ru")).alias("sqi"),
            F.sum(F.col("rv") * F.col("rv")).alias("sqj"),
            F.sum(F.col("ru") * F.col("rv")).alias("prods"),
        )
    )


def user_similarities(
    df: DataFrame, *, similarity: str = "pearson", shrinkage: float = 0.0, min_support: int = 1
) -> DataFrame:
    """Positive user-user similarities over co-rated items, as scikit-surprise (and ``UserKNN``)
    computes them: ``(u, v, sim)``, ``u == v`` included with similarity 1 (the caller keeps or drops it)."""
    if similarity not in ("pearson", "cosine", "msd"):
        raise ValueError(f"similarity must be one of ('pearson', 'cosine', 'msd'), got {similarity!r}")
    x = df.select(USER, ITEM, F.col(VALUE).cast("double"))
    if similarity in ("pearson", "msd"):
        low = x.agg(F.min(VALUE)).first()[0]
        if low is not None and low <= 0:  # both are shift-invariant; keeps the sums exact as UserKNN does
            x = x.withColumn(VALUE, F.col(VALUE) + F.lit(1.0 - float(np.floor(low))))
    s = _co_rated_sums(x)
    n, si, sj, sqi, sqj, prods = (F.col(c) for c in ("n", "si", "sj", "sqi", "sqj", "prods"))
    if similarity == "msd":
        sim = F.lit(1.0) / ((sqi + sqj - F.lit(2.0) * prods) / n + F.lit(1.0))
    elif similarity == "cosine":
        den = F.sqrt(sqi * sqj)
        sim = F.when(den != 0, prods / den).otherwise(0.0)
    else:
        num = n * prods - si * sj
        den = F.sqrt((n * sqi - si * si) * (n * sqj - sj * sj))
        sim = F.when(den != 0, num / den).otherwise(0.0)
    if shrinkage:
        sim = sim * (n / (n + F.lit(float(shrinkage))))
    sim = F.when(n < F.lit(max(int(min_support), 1)), 0.0).otherwise(sim)
    sim = F.when(F.col("u") == F.col("v"), 1.0).otherwise(sim)
    return s.select("u", "v", sim.alias("sim")).where(F.col("sim") > 0)


def user_knn_predict(
    df: DataFrame,
    pairs: DataFrame,
    *,
    k: int = 40,
    similarity: str = "pearson",
    shrinkage: float = 0.0,
    min_support: int = 1,
    neighbourhood: str = "per_item",
    min_k: int = 1,
    rating_range="auto",
) -> DataFrame:
    """The seed's mean-centred formula (``UserKNN``'s, scikit-surprise's ``KNNWithMeans``) for the
    ``(user, item)`` rows of ``pairs``: ``pairs`` with a ``prediction`` column,

    ``P(u,i) = mean(u) + Σ_v w_uv (r_vi − mean(v)) / Σ_v w_uv``

    over ``u``'s ``k`` most similar users who rated ``i`` (``"per_item"``; ``u`` itself counts with
    similarity 1 where it rated ``i``) or ``u``'s ``k`` most similar users chosen once (``"global"``,
    ``u`` left out) — similarity descending, ties to the lower user id. Fewer than ``min_k``
    neighbours: ``mean(u)``; a user or item without ratings: the global mean; clipped to
    ``rating_range`` (``"auto"``: the training values' min and max; None: no clipping).
    """
    if neighbourhood not in ("per_item", "global"):
        raise ValueError(f"neighbourhood must be 'per_item' or 'global', got {neighbourhood!r}")
    if k < 1:
        raise ValueError("k must be >= 1")
    _check_columns(pairs, (USER, ITEM), "user_knn_predict's pairs")
    x = df.select(USER, ITEM, F.col(VALUE).cast("double"))
    stats = x.agg(F.avg(VALUE), F.min(VALUE), F.max(VALUE)).first()
    global_mean = float(stats[0]) if stats[0] is not None else 0.0
    if rating_range == "auto":
        lo, hi = (float(stats[1]), float(stats[2])) if stats[1] is not None else (None, None)
    elif rating_range is None:
        lo = hi = None
    else:
        lo, hi = (float(v) for v in rating_range)
    means = x.groupBy(USER).agg(F.avg(VALUE).alias("mean"))
    centred = x.join(means.select(F.col(USER).alias("v"), F.col("mean").alias("mv")), F.col(USER) == F.col("v"))
    centred = centred.select("v", ITEM, (F.col(VALUE) - F.col("mv")).alias("rc"))
    sims = user_similarities(x, similarity=similarity, shrinkage=shrinkage, min_support=min_support)
    q = pairs.select(F.col(USER).alias("u"), F.col(ITEM)).distinct()
    if neighbourhood == "global":
        nb = top_per_group(sims.where(F.col("u") != F.col("v")), "u", "sim", "v", k).drop("rank")
        contrib = q.join(nb, "u").join(centred, ["v", ITEM])
    else:
        contrib = q.join(centred, ITEM).join(sims, ["u", "v"])
        contrib = top_per_group(contrib, ["u", ITEM], "sim", "v", k).drop("rank")
    agg = contrib.groupBy("u", ITEM).agg(
        F.sum(F.col("sim") * F.col("rc")).alias("num"), F.sum("sim").alias("den"), F.count(F.lit(1)).alias("cnt")
    )
    support = x.select(ITEM).distinct().withColumn("item_known", F.lit(True))
    out = (
        q.join(agg, ["u", ITEM], "left")
        .join(means.select(F.col(USER).alias("u"), "mean"), "u", "left")
        .join(support, ITEM, "left")
    )
    enough = (F.coalesce(F.col("cnt"), F.lit(0)) >= F.lit(int(min_k))) & (F.coalesce(F.col("den"), F.lit(0.0)) != 0)
    est = F.col("mean") + F.when(enough, F.col("num") / F.col("den")).otherwise(0.0)
    est = F.when(F.col("mean").isNotNull() & F.col("item_known").isNotNull(), est).otherwise(F.lit(global_mean))
    if lo is not None:
        est = F.least(F.greatest(est, F.lit(lo)), F.lit(hi))
    preds = out.select(F.col("u").alias(USER), ITEM, est.alias("prediction"))
    return pairs.join(preds, [USER, ITEM], "left")


def user_ranker_neighbours(
    df: DataFrame, *, k: int, similarity: str = "cosine", shrinkage: float = 0.0, exponent: float = 1.0, n_items: int
) -> DataFrame:
    """``UserKNNRanker``'s neighbours ``(u, v, sim)``: the cosine (or Pearson) of the users' full rows
    over the ``n_items`` of the catalogue (absent = 0), times ``n_uv / (n_uv + shrinkage)``, to the
    power ``exponent``; positive only, the ``k`` largest per user (ties: the lower ``v``)."""
    if similarity not in ("cosine", "pearson"):
        raise ValueError(f"similarity must be 'cosine' or 'pearson', got {similarity!r}")
    x = df.select(USER, ITEM, F.col(VALUE).cast("double"))
    row = x.groupBy(USER).agg(F.sum(VALUE).alias("s"), F.sum(F.col(VALUE) * F.col(VALUE)).alias("sq"))
    m = F.col("s") / F.lit(float(max(n_items, 1)))
    if similarity == "pearson":
        norm = F.sqrt(F.greatest(F.col("sq") - F.lit(float(n_items)) * m * m, F.lit(0.0)))
    else:
        norm = F.sqrt(F.col("sq"))
    row = row.select(USER, m.alias("m"), F.when(norm > 0, F.lit(1.0) / norm).otherwise(0.0).alias("inv"))
    s = _co_rated_sums(x).where(F.col("u") != F.col("v"))
    ru = row.select(F.col(USER).alias("u"), F.col("m").alias("mu"), F.col("inv").alias("iu"))
    rv = row.select(F.col(USER).alias("v"), F.col("m").alias("mv"), F.col("inv").alias("iv"))
    s = s.join(ru, "u").join(rv, "v")
    dot = F.col("prods")
    if similarity == "pearson":
        dot = dot - F.col("mu") * F.col("mv") * F.lit(float(n_items))
    sim = dot * F.col("iu") * F.col("iv")
    if shrinkage:
        sim = sim * (F.col("n") / (F.col("n") + F.lit(float(shrinkage))))
    sim = F.greatest(sim, F.lit(0.0))
    if exponent != 1.0:
        sim = F.pow(sim, F.lit(float(exponent)))
    pairs = s.select("u", "v", sim.alias("sim")).where(F.col("sim") > 0)
    return top_per_group(pairs, "u", "sim", "v", k).drop("rank")


def user_ranker_scores(df: DataFrame, neighbours: DataFrame, *, beta: float = 0.0) -> DataFrame:
    """``score(u, i) = Σ_{v ∈ N_k(u)} s_uv x_vi pop(i)^-beta`` (``pop``: users with the item), with
    ``count``, the neighbours who have the item ("N customers with similar taste bought this").
    DataFrame ``(user, item, score, count)``."""
    x = df.select(F.col(USER).alias("v"), ITEM, F.col(VALUE).cast("double"))
    pop = x.groupBy(ITEM).agg(F.pow(F.count(F.lit(1)).cast("double"), F.lit(-float(beta))).alias("pw"))
    votes = neighbours.join(x, "v").join(pop, ITEM)
    return votes.groupBy(F.col("u").alias(USER), ITEM).agg(
        F.sum(F.col("sim") * F.col(VALUE) * F.col("pw")).alias("score"), F.count(F.lit(1)).alias("count")
    )


# ---------------------------------------------------------------------------- factor models
def als_fit(
    df: DataFrame,
    *,
    factors: int = 64,
    iterations: int = 15,
    regularization: float = 0.01,
    alpha: float = 1.0,
    seed: int = 0,
    blocks: int = 2,
):
    """Implicit-feedback ALS (Hu, Koren & Volinsky; ``pyspark.ml.recommendation.ALS`` with
    ``implicitPrefs=True``): confidence ``1 + alpha·x_ui``, preference 1 for every entry. Spark scales
    ``regularization`` by each user's and item's number of entries (ALS-WR), so the value that matches
    ``implicit``'s unscaled one is smaller (docs/spark.md). User and item ids must fit
    in 32 bits; ``blocks``: the user and item blocks (about the executors' cores).
    Returns the fitted ``ALSModel`` (``userFactors``, ``itemFactors``: ``id``, ``features``)."""
    from pyspark.ml.recommendation import ALS

    bounds = df.agg(F.max(USER), F.max(ITEM), F.min(USER), F.min(ITEM)).first()
    if bounds[0] is not None and (max(bounds[0], bounds[1]) >= 2**31 or min(bounds[2], bounds[3]) < 0):
        raise ValueError("ALS needs user and item ids between 0 and 2**31 - 1")
    als = ALS(
        rank=int(factors),
        maxIter=int(iterations),
        regParam=float(regularization),
        alpha=float(alpha),
        implicitPrefs=True,
        userCol=USER,
        itemCol=ITEM,
        ratingCol=VALUE,
        seed=int(seed),
        nonnegative=False,
        coldStartStrategy="drop",
    )
    als = als.setNumUserBlocks(int(blocks)).setNumItemBlocks(int(blocks))
    data = df.select(F.col(USER).cast("int"), F.col(ITEM).cast("int"), F.col(VALUE).cast("float"))
    return als.fit(data)


def factor_top_n(
    user_factors: DataFrame,
    item_factors: DataFrame,
    history: DataFrame,
    *,
    n: int,
    exclude: DataFrame | None = None,
    exclude_history: bool = True,
    candidates: DataFrame | None = None,
    group: str | None = None,
    reasons: bool = True,
    block: int = 512,
) -> DataFrame:
    """The top ``n`` items of every user of ``user_factors`` by ``p_u · q_i``, with the items the user
    has (``history``, unless ``exclude_history`` is false) and the pairs of ``exclude`` left out —
    exactly, not by cutting a longer list (ALS's ``recommendForAllUsers`` does not exclude) — and each
    explained by ``reason``, the user's item ``j`` of largest ``x_uj (q_j · q_i)`` (as ``PureSVD``
    explains; ties: the lower ``j``; null when no item of the user contributes positively).
    DataFrame ``(user, item, score, reason, rank)``, with ``group`` after ``item`` when given.

    ``user_factors``/``item_factors``: ``(id, features)`` as an ``ALSModel`` has them; ``candidates``:
    a DataFrame of the ``item`` ids that may be suggested (default all), with a ``group`` column when
    ``group`` is given: then the top ``n`` is per user and group (the recommender's kinds), from one
    scoring pass. Scored as the local engine scores: the item factors (a few MB per 10,000 items) are
    shipped to every Python worker with the function, each worker takes its users ``block`` at a time
    with their history and excluded items (one list per user), multiplies the block by the candidates'
    factors with BLAS and keeps the top ``n`` with the engine's own ``topn_from_scores`` (ties to the
    lower item). No (user, item) pair is materialised in Spark and nothing is sorted there.
    """
    from ._base import topn_from_scores

    n = int(n)
    block = max(1, int(block))
    q_all = item_factors.select(F.col("id").cast("long").alias(ITEM), F.col("features")).toPandas()
    q_all = q_all.sort_values(ITEM, kind="stable")
    all_ids = q_all[ITEM].to_numpy(np.int64)
    rank_dim = len(q_all["features"].iloc[0]) if len(q_all) else 0
    q_mat = np.stack(q_all["features"].to_numpy()).astype(np.float64) if len(q_all) else np.zeros((0, 0))
    if candidates is None:
        cand_pos = np.arange(all_ids.size)
        cand_group = np.zeros(all_ids.size, dtype=object)
        groups = [None]
    else:
        cols = [ITEM] + ([group] if group else [])
        cand = candidates.select(*cols).distinct().toPandas()
        if group and cand[ITEM].duplicated().any():
            raise ValueError(f"factor_top_n: an item is in more than one {group!r}")
        cand = cand[cand[ITEM].isin(all_ids)].sort_values(ITEM, kind="stable")
        cand_pos = np.searchsorted(all_ids, cand[ITEM].to_numpy(np.int64))
        cand_group = cand[group].to_numpy() if group else np.zeros(len(cand), dtype=object)
        groups = sorted(set(cand_group.tolist()), key=str) if group else [None]
    cand_ids = all_ids[cand_pos]
    q_cand = q_mat[cand_pos] if cand_pos.size else np.zeros((0, rank_dim))
    by_group = [(g, np.flatnonzero(cand_group == g) if group else np.arange(cand_ids.size)) for g in groups]

    h = history.select(USER, ITEM, F.col(VALUE).cast("double"))
    lists = h.groupBy(USER).agg(F.collect_list(ITEM).alias("h_items"), F.collect_list(VALUE).alias("h_vals"))
    blocked = []
    if exclude_history:
        blocked.append(h.select(USER, ITEM))
    if exclude is not None:
        blocked.append(exclude.select(USER, ITEM))
    uf = user_factors.select(F.col("id").cast("long").alias(USER), F.col("features").alias("pu"))
    uf = uf.join(lists, USER, "left")
    if blocked:
        b = blocked[0]
        for other in blocked[1:]:
            b = b.unionByName(other)
        uf = uf.join(b.groupBy(USER).agg(F.collect_set(ITEM).alias("blocked")), USER, "left")
    else:
        uf = uf.withColumn("blocked", F.lit(None).cast("array<long>"))
    want_reasons = bool(reasons)

    def _flat(col) -> tuple[np.ndarray, np.ndarray]:
        """(row, value) of every element of a column of lists (None: empty)."""
        lens = np.fromiter((0 if v is None else len(v) for v in col), dtype=np.int64, count=len(col))
        vals = [v for v in col if v is not None and len(v)]
        flat = np.concatenate(vals) if vals else np.zeros(0)
        return np.repeat(np.arange(len(col)), lens), flat

    def score(batches):
        import pandas as pd

        for frame in batches:
            for start in range(0, len(frame), block):
                part = frame.iloc[start : start + block]
                users = part[USER].to_numpy(np.int64)
                p = np.stack(part["pu"].to_numpy()).astype(np.float64)
                s = p @ q_cand.T
                rows, items = _flat(part["blocked"].to_numpy())
                pos = np.searchsorted(cand_ids, items.astype(np.int64))
                hit = pos < cand_ids.size
                hit[hit] = cand_ids[pos[hit]] == items[hit].astype(np.int64)
                s[rows[hit], pos[hit]] = -np.inf
                h_rows, h_items = _flat(part["h_items"].to_numpy())
                _, h_vals = _flat(part["h_vals"].to_numpy())
                h_pos = np.searchsorted(all_ids, h_items.astype(np.int64))
                ok = h_pos < all_ids.size
                ok[ok] = all_ids[h_pos[ok]] == h_items[ok].astype(np.int64)
                h_rows, h_pos, h_vals = h_rows[ok], h_pos[ok], h_vals[ok].astype(np.float64)
                for g, cols in by_group:
                    if not cols.size:
                        continue
                    top, top_s = topn_from_scores(s[:, cols], n)
                    keep = top >= 0
                    r_idx, k_idx = np.nonzero(keep)
                    item_pos = cols[top[keep]]
                    reason = np.full(r_idx.size, -1, dtype=np.int64)
                    if want_reasons and h_rows.size and r_idx.size:
                        reason = _reasons(r_idx, item_pos, h_rows, h_pos, h_vals, len(part))
                    reason_ids = pd.array(all_ids[np.maximum(reason, 0)] if all_ids.size else reason, dtype="Int64")
                    reason_ids[reason < 0] = pd.NA
                    out = pd.DataFrame(
                        {
                            USER: users[r_idx],
                            ITEM: cand_ids[item_pos],
                            "score": top_s[keep],
                            "reason": reason_ids,
                            "rank": (k_idx + 1).astype(np.int32),
                        }
                    )
                    if group:
                        out.insert(2, group, g)
                    yield out

    def _reasons(r_idx, item_pos, h_rows, h_pos, h_vals, n_rows) -> np.ndarray:
        """For every listed (row, candidate): the position of the row's history item j of largest
        ``x_uj (q_j · q_i)`` (> 0; ties: the lower j), -1 where none contributes positively. Pairs the
        listed items with their row's history entries (rows sorted), one dot per pair."""
        order = np.lexsort((h_pos, h_rows))
        h_rows, h_pos, h_vals = h_rows[order], h_pos[order], h_vals[order]
        h_start = np.searchsorted(h_rows, np.arange(n_rows))
        h_len = np.searchsorted(h_rows, np.arange(n_rows), side="right") - h_start
        per = h_len[r_idx]
        pair = np.repeat(np.arange(r_idx.size), per)
        offs = np.arange(pair.size) - np.repeat(np.cumsum(per) - per, per)
        e = h_start[r_idx][pair] + offs
        c = np.empty(pair.size)
        for lo in range(0, pair.size, 1 << 16):  # bounded memory: 65,536 dots at a time
            sl = slice(lo, lo + (1 << 16))
            c[sl] = h_vals[e[sl]] * np.einsum("ij,ij->i", q_mat[h_pos[e[sl]]], q_mat[item_pos[pair[sl]]])
        best = np.full(r_idx.size, -1, dtype=np.int64)
        good = c > 0
        if not good.any():
            return best
        pair, e, c = pair[good], e[good], c[good]
        # per pair: the largest c, then the lower j (history sorted by j within a row)
        order = np.lexsort((h_pos[e], -c, pair))
        first = np.r_[True, pair[order][1:] != pair[order][:-1]]
        best[pair[order][first]] = h_pos[e[order][first]]
        return best

    group_type = dict(candidates.dtypes)[group] if group else ""
    grouped = f"{group} {group_type}, " if group else ""
    schema = f"{USER} long, {ITEM} long, {grouped}score double, reason long, rank int"
    return uf.mapInPandas(score, schema)


# ---------------------------------------------------------------------------- ranking
def top_n(scores: DataFrame, n: int, *, exclude: DataFrame | None = None, group: str | None = None) -> DataFrame:
    """The ``n`` best ``(user, item, score, …)`` rows per user (per user and ``group`` when given),
    best first in ``rank``, ties to the lower item; pairs of ``exclude`` (``user, item``) left out
    and scores of exactly 0 (no evidence) too."""
    if exclude is not None:
        scores = scores.join(exclude.select(USER, ITEM).distinct(), [USER, ITEM], "left_anti")
    scores = scores.where(F.col("score") != 0)
    return top_per_group(scores, [USER] + ([group] if group else []), "score", ITEM, n)
