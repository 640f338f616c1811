"""Clustering of customer profiles in Apache Spark (spark.ml): the Spark backend's twin of
``segments.clustering``.

Pure PySpark, numpy and pandas, no Django: the segments service hands it a DataFrame of profiles
(one row per customer, read over JDBC) and writes what it returns. Everything that grows with the
number of customers stays in Spark (the feature matrix, the labels); what comes back to Python is
bounded by k and the number of features (curves, centroids, sizes, quantiles), so the naming,
matching and k rule of ``segments.clustering`` are reused on it as they are.

What maps to what (docs/spark.md, "Segments on Spark"):

1. ``build_features``: the columns, imputation, ``log1p`` and standardisation of
   ``clustering.build_feature_matrix``, as Spark column expressions. The price-level fills are the
   population medians (``percentile_approx`` with accuracy 10^5: exact in rank below 100,000 buyers,
   but an element of the data where pandas interpolates between the two middle ones); the scaling
   is sklearn's ``StandardScaler`` (population standard deviation, a constant column kept at 0),
   not ``pyspark.ml.feature.StandardScaler`` (sample standard deviation).
2. ``choose_k``: ``KMeans`` (k-means||, ``seed``) for each k on a sample of at most
   ``selection_sample`` rows; inertia is the summary's ``trainingCost``. The silhouette is, by
   default, sklearn's ``silhouette_score`` (Euclidean distances between every pair) on a sample of
   at most ``silhouette_sample`` rows (4,000) brought to the driver, as the local path computes it.
   ``silhouette_on="evaluator"`` uses ``ClusteringEvaluator`` instead, over the whole search
   sample in linear time; it only offers *squared* Euclidean (or cosine) distances, which run
   higher and spread further between k (0.72-0.76 where sklearn's is 0.53-0.55 on the demo), so
   the rule's 0.01 margin is cleared more easily: on the default demo shop it moved the knee from
   5 to 6 (splitting 39 customers off), where the local path keeps 5. The knee and the rule are
   ``clustering.select_k``, the same code as the local path.
   sklearn's ``n_init`` restarts are ``n_init`` seeds (3, as the local search), the fit with the
   most centres, then the lowest cost, kept: Spark's k-means|| start alone lands in a poor local
   minimum too often to find the knee reliably.
3. The fit on all rows: ``KMeans`` (the search's model of the chosen k when the search sample was
   every row) or, for ``method="agglomerative"``, ``BisectingKMeans``: Spark's hierarchical
   clustering is divisive (top-down bisection) on all rows, where the local one is Ward's
   agglomerative linkage on a 5,000-row sample; the k search fits a tree per k.
4. Clusters numbered by size (``clustering.size_order``), centroids as the mean of each cluster's
   rows in the scaled space, given back in original units the local way; names by
   ``clustering.describe_cluster`` against the population's q20/q50/q80
   (``percentile_approx``, nulls skipped as pandas does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.ml.clustering import BisectingKMeans, KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.metrics import silhouette_score

from .clustering import (
    _MEDIAN_FILLED,
    COMMUNITY_COLUMNS,
    DEFAULT_FEATURES,
    LOG_FEATURES,
    ClusterViews,
    KSelection,
    select_k,
    size_order,
)

__all__ = ["SILHOUETTES", "SparkClusteringResult", "SparkFeatures", "build_features", "choose_k", "cluster_profiles"]

METHODS = {"kmeans": "KMeans", "agglomerative": "BisectingKMeans"}
QUANTILE_ACCURACY = 100_000


@dataclass
class SparkFeatures:
    """The scaled feature vectors of a population, in Spark, and the way back to original units.

    ``frame`` has the id column and ``features`` (a vector, standardised); ``mean`` and ``scale``
    are the standardisation (of the log1p'd columns where logged); ``stats`` the population
    quantiles ``describe_cluster`` reads (``clustering.population_stats``' frame)."""

    frame: DataFrame
    id_col: str
    columns: list[str]
    log_columns: list[str]
    fill_values: dict[str, float]
    mean: np.ndarray
    scale: np.ndarray
    stats: pd.DataFrame
    n: int

    def to_scaled(self, original: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Original-unit rows (e.g. an earlier run's stored centroids) -> this run's scaled space."""
        frame = pd.DataFrame(original, columns=self.columns) if isinstance(original, np.ndarray) else original
        vals = frame[self.columns].astype(float).copy()
        for c in self.log_columns:
            vals[c] = np.log1p(np.maximum(vals[c], 0.0))
        return (vals.to_numpy() - self.mean) / self.scale

    def to_original(self, scaled: np.ndarray) -> pd.DataFrame:
        """Scaled rows -> original units (inverse of scaling and of log1p)."""
        vals = pd.DataFrame(np.atleast_2d(scaled) * self.scale + self.mean, columns=self.columns)
        for c in self.log_columns:
            vals[c] = np.maximum(np.expm1(vals[c]), 0.0)
        return vals


def _number(name: str):
    col = F.col(name).cast("double")
    return F.when(F.isnan(col), F.lit(None).cast("double")).otherwise(col)


def build_features(
    profiles: DataFrame,
    *,
    id_col: str = "customer_id",
    features: Sequence[str] = DEFAULT_FEATURES,
    log_features: Iterable[str] = LOG_FEATURES,
    fill_values: Mapping[str, float] | None = None,
    window_days: float = 365.0,
    rows_per_partition: int = 100_000,
) -> SparkFeatures:
    """Select, impute, log-scale and standardise profile features, as ``clustering.build_feature_matrix``
    does (two aggregation passes over the profiles). The result is cached in one partition per
    ``rows_per_partition`` rows: k-means runs a Spark job per iteration, and on small populations
    the tasks' overhead, not the arithmetic, is what costs."""
    present = set(profiles.columns)
    if id_col not in present:
        raise ValueError(f"profiles lack the id column {id_col!r}")
    observed = []
    for col in features:
        if col == "community_actions" and col not in present:
            missing = [c for c in COMMUNITY_COLUMNS if c not in present]
            if missing:
                raise ValueError(f"profiles lack {', '.join(missing)} to derive community_actions")
            expr = sum((F.coalesce(_number(c), F.lit(0.0)) for c in COMMUNITY_COLUMNS), F.lit(0.0))
        elif col not in present:
            raise ValueError(f"profiles lack feature column {col!r}")
        else:
            expr = _number(col)
        observed.append(expr.alias(col))
    columns = list(features)
    obs = profiles.select(F.col(id_col), *observed)

    # Pass 1: size, the population's quantiles and means (nulls skipped), the price-level medians.
    aggs = [F.count(F.lit(1)).alias("_n")]
    for c in columns:
        aggs += [
            F.percentile_approx(c, [0.2, 0.5, 0.8], QUANTILE_ACCURACY).alias(f"q_{c}"),
            F.avg(c).alias(f"m_{c}"),
        ]
    first = obs.agg(*aggs).first()
    n = int(first["_n"])
    if n == 0:
        raise ValueError("no profiles to cluster")
    stats = pd.DataFrame(
        [
            [*(float(v) if v is not None else np.nan for v in (first[f"q_{c}"] or [None] * 3)), first[f"m_{c}"]]
            for c in columns
        ],
        index=columns,
        columns=["q20", "q50", "q80", "mean"],
        dtype=float,
    )
    fills = dict.fromkeys(columns, 0.0)
    if "recency_days" in fills:
        fills["recency_days"] = float(window_days)
    for c in _MEDIAN_FILLED:
        if c in fills:
            med = stats.loc[c, "q50"]
            fills[c] = float(med) if pd.notna(med) else 0.0
    fills.update(fill_values or {})
    logs = [c for c in columns if c in set(log_features)]
    values = []
    for c in columns:
        v = F.coalesce(F.col(c), F.lit(float(fills[c])))
        if c in logs:
            v = F.log1p(F.greatest(v, F.lit(0.0)))
        values.append(v.alias(c))
    vals = obs.select(F.col(id_col), *values)

    # Pass 2: StandardScaler's mean and population standard deviation (1 for a constant column).
    second = vals.agg(*[F.avg(c).alias(f"m_{c}") for c in columns], *[F.stddev_pop(c).alias(f"s_{c}") for c in columns])
    second = second.first()
    mean = np.array([second[f"m_{c}"] for c in columns], dtype=float)
    std = np.array([second[f"s_{c}"] or 0.0 for c in columns], dtype=float)
    scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
    scaled = vals.select(
        F.col(id_col),
        *[((F.col(c) - float(m)) / float(s)).alias(c) for c, m, s in zip(columns, mean, scale, strict=True)],
    )
    frame = VectorAssembler(inputCols=columns, outputCol="features").transform(scaled).select(id_col, "features")
    frame = frame.coalesce(max(1, math.ceil(n / rows_per_partition)))
    return SparkFeatures(
        frame=frame.cache(),
        id_col=id_col,
        columns=columns,
        log_columns=logs,
        fill_values=fills,
        mean=mean,
        scale=scale,
        stats=stats,
        n=n,
    )


def _estimator(method: str, k: int, *, seed: int, max_iter: int):
    if method == "agglomerative":
        return BisectingKMeans(k=k, seed=seed, maxIter=max_iter, featuresCol="features", predictionCol="cluster")
    if method == "kmeans":
        return KMeans(k=k, seed=seed, maxIter=max_iter, tol=1e-4, featuresCol="features", predictionCol="cluster")
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


SILHOUETTES = ("sample", "evaluator")


def _silhouette(predictions: DataFrame, n_clusters: int) -> float:
    """ClusteringEvaluator's silhouette: squared Euclidean distances, every row, linear time."""
    if n_clusters < 2:
        return -1.0
    evaluator = ClusteringEvaluator(
        featuresCol="features", predictionCol="cluster", metricName="silhouette", distanceMeasure="squaredEuclidean"
    )
    return float(evaluator.evaluate(predictions))


class _SampleSilhouette:
    """sklearn's silhouette (Euclidean, every pair) on at most `size` rows of `frame`, brought to the
    driver once (size x features floats): the measure the local rule's margin was set on."""

    def __init__(self, frame: DataFrame, n: int, *, id_col: str, size: int | None, seed: int):
        rows = frame
        if size is not None and n > size:
            rows = frame.sample(withReplacement=False, fraction=min(1.0, 1.1 * size / n), seed=seed + 7).limit(size)
        self.rows = rows.cache()
        local = self.rows.select(id_col, vector_to_array(F.col("features")).alias("x")).toPandas()
        self.id_col = id_col
        self.ids = local[id_col].to_numpy()
        self.X = np.vstack(local["x"].to_numpy()) if len(local) else np.empty((0, 0))

    def __call__(self, labelled: DataFrame) -> float:
        """`labelled`: a DataFrame with the id column and `cluster` over (at least) the sample's rows."""
        got = labelled.join(self.rows.select(self.id_col), self.id_col).select(self.id_col, "cluster").toPandas()
        labels = got.set_index(self.id_col)["cluster"].reindex(self.ids).to_numpy()
        if len(np.unique(labels)) < 2:
            return -1.0
        return float(silhouette_score(self.X, labels))

    def release(self) -> None:
        self.rows.unpersist()


def _fit(frame: DataFrame, method: str, k: int, *, seed: int, max_iter: int, n_init: int):
    """The best of `n_init` fits from seeds `seed`, `seed + 1`, ...: the most clusters (k-means|| may
    return fewer than k centres), then the lowest cost. Spark's k-means|| start lands in a poor local
    minimum often enough on the demo shop (a cost 45 % above the best at k = 5 for one seed in three)
    that restarts matter as much as sklearn's n_init does. BisectingKMeans fits once."""
    best, best_key = None, None
    for attempt in range(1 if method == "agglomerative" else max(1, n_init)):
        model = _estimator(method, k, seed=seed + attempt, max_iter=max_iter).fit(frame)
        key = (-len(model.clusterCenters()), model.summary.trainingCost)
        if best is None or key < best_key:
            best, best_key = model, key
    return best


def choose_k(
    frame: DataFrame,
    k_range: Iterable[int] = range(2, 11),
    *,
    n: int | None = None,
    method: str = "kmeans",
    seed: int = 0,
    max_iter: int = 100,
    n_init: int = 3,
    selection_sample: int | None = 20_000,
    silhouette_margin: float = 0.01,
    silhouette_on: str = "sample",
    silhouette_sample: int | None = 4_000,
    id_col: str = "customer_id",
    models: dict | None = None,
) -> KSelection:
    """Choose k as ``clustering.choose_k`` does (``clustering.select_k`` on the curves), with Spark's
    k-means (or bisecting k-means). The silhouette is sklearn's on at most ``silhouette_sample`` rows
    (``silhouette_on="sample"``, the measure of the local path) or ``ClusteringEvaluator``'s over the
    whole search sample (``"evaluator"``: squared distances, higher values, a knee moved more often).
    When the sample is every row, the fitted models are put in ``models`` (by k) for reuse."""
    n = frame.count() if n is None else n
    ks = sorted({int(k) for k in k_range if int(k) >= 2 and int(k) < n})
    if not ks:
        raise ValueError(f"too few rows ({n}) for the requested k_range")
    sample, sampled = frame, selection_sample is not None and n > selection_sample
    if sampled:
        sample = frame.sample(withReplacement=False, fraction=min(1.0, 1.1 * selection_sample / n), seed=seed)
        sample = sample.limit(selection_sample).cache()
    if silhouette_on not in SILHOUETTES:
        raise ValueError(f"silhouette_on must be one of {', '.join(SILHOUETTES)}, not {silhouette_on!r}")
    inertia: dict[int, float] = {}
    silhouette: dict[int, float] = {}
    on_sample = None
    try:
        if silhouette_on == "sample":
            ns = min(n, selection_sample) if selection_sample is not None else n
            on_sample = _SampleSilhouette(sample, ns, id_col=id_col, size=silhouette_sample, seed=seed)
        for k in ks:
            model = _fit(sample, method, k, seed=seed, max_iter=max_iter, n_init=n_init)
            inertia[k] = float(model.summary.trainingCost)
            if on_sample is not None:
                silhouette[k] = on_sample(model.summary.predictions)
            else:
                found = sum(1 for size in model.summary.clusterSizes if size)
                silhouette[k] = _silhouette(model.summary.predictions, found)
            if models is not None and not sampled:
                models[k] = model  # fitted on every row: the final fit, if k is chosen
    finally:
        if on_sample is not None:
            on_sample.release()
        if sampled:
            sample.unpersist()
    return select_k(ks, inertia, silhouette, silhouette_margin=silhouette_margin)


@dataclass
class SparkClusteringResult(ClusterViews):
    """What a Spark clustering run produced: the fields of ``clustering.ClusteringResult`` that the
    service reads, with ``labels`` a Spark DataFrame (id column, ``cluster``) instead of an array."""

    method: str
    features: list[str]
    k_range: tuple[int, int]
    inertia: dict[int, float]
    silhouette: dict[int, float]
    knee: int | None
    chosen_k: int
    k_pinned: bool
    rule: str
    labels: DataFrame
    n: int
    sizes: dict[int, int]
    centroids: pd.DataFrame
    centroids_scaled: np.ndarray
    inertia_chosen: float
    silhouette_chosen: float
    duration_s: float
    matrix: SparkFeatures = field(repr=False)
    stats: pd.DataFrame = field(repr=False)


def cluster_profiles(
    profiles: DataFrame,
    *,
    id_col: str = "customer_id",
    features: Sequence[str] = DEFAULT_FEATURES,
    method: str = "kmeans",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    n_init: int = 3,
    max_iter: int = 100,
    selection_sample: int | None = 20_000,
    silhouette_margin: float = 0.01,
    silhouette_on: str = "sample",
    silhouette_sample: int | None = 4_000,
    window_days: float = 365.0,
    fill_values: Mapping[str, float] | None = None,
    log_features: Iterable[str] = LOG_FEATURES,
) -> SparkClusteringResult:
    """Cluster customer profiles in Spark (see the module docstring for what maps to what).

    ``profiles``: a Spark DataFrame, one row per customer, with ``id_col`` and the profile columns.
    ``k`` pins the number of clusters; ``None`` chooses it over ``k_range`` (inclusive).
    The returned ``labels`` DataFrame (``id_col``, ``cluster``: 0 = the largest) is lazy over the
    cached features: write it, then ``release()`` the cache."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    started = time.perf_counter()
    fm = build_features(
        profiles,
        id_col=id_col,
        features=features,
        log_features=log_features,
        fill_values=fill_values,
        window_days=window_days,
    )
    lo, hi = k_range
    models: dict = {}
    if k is not None:
        if not 2 <= k <= fm.n:
            raise ValueError(f"k={k} is impossible for {fm.n} rows (Spark's k-means needs 2 <= k <= rows)")
        selection = KSelection(ks=[], inertia={}, silhouette={}, knee=None, chosen_k=int(k), rule="pinned by operator")
    else:
        selection = choose_k(
            fm.frame,
            range(lo, hi + 1),
            n=fm.n,
            method=method,
            seed=random_state,
            max_iter=max_iter,
            n_init=n_init,
            selection_sample=selection_sample,
            silhouette_margin=silhouette_margin,
            silhouette_on=silhouette_on,
            silhouette_sample=silhouette_sample,
            id_col=id_col,
            models=models,
        )
    kk = selection.chosen_k
    model = models.get(kk) or _fit(fm.frame, method, kk, seed=random_state, max_iter=max_iter, n_init=n_init)
    centers = np.vstack([np.asarray(c, dtype=float) for c in model.clusterCenters()])
    kk = len(centers)  # fewer than asked when k-means|| or a bisection finds no more distinct centres
    fitted_sizes = list(model.summary.clusterSizes)
    order = size_order(fitted_sizes, centers)  # order[new] = fitted label
    remap = np.empty(len(order), dtype=np.int64)
    remap[order] = np.arange(len(order))
    new_label = F.element_at(F.array(*[F.lit(int(x)) for x in remap]), F.col("cluster") + 1)
    labelled = model.transform(fm.frame).select(id_col, "features", new_label.alias("cluster"))

    # Centroids as each cluster's mean in the scaled space, sizes and inertia: one pass, k rows back.
    dims = len(fm.columns)
    arr = vector_to_array(F.col("features"))
    per_cluster = (
        labelled.groupBy("cluster")
        .agg(
            F.count(F.lit(1)).alias("size"),
            *[F.avg(arr[i]).alias(f"m{i}") for i in range(dims)],
            *[F.sum(arr[i] * arr[i]).alias(f"s{i}") for i in range(dims)],
        )
        .toPandas()
        .set_index("cluster")
        .reindex(range(kk))
    )
    sizes_arr = per_cluster["size"].fillna(0).to_numpy(dtype=np.int64)
    means = per_cluster[[f"m{i}" for i in range(dims)]].to_numpy(dtype=float)
    empty = sizes_arr == 0
    means[empty] = centers[order][empty]
    sumsq = per_cluster[[f"s{i}" for i in range(dims)]].fillna(0.0).to_numpy(dtype=float)
    inertia_chosen = float(np.maximum(sumsq - sizes_arr[:, None] * means**2, 0.0).sum())
    if kk < 2:
        silhouette_chosen = float("nan")
    elif silhouette_on == "sample":
        on_sample = _SampleSilhouette(fm.frame, fm.n, id_col=id_col, size=silhouette_sample, seed=random_state)
        try:
            silhouette_chosen = on_sample(labelled)
        finally:
            on_sample.release()
    else:
        silhouette_chosen = _silhouette(labelled, int((~empty).sum()))
    centroids = fm.to_original(means)
    centroids.index.name = "cluster"
    return SparkClusteringResult(
        method=method,
        features=list(fm.columns),
        k_range=(lo, hi),
        inertia=selection.inertia,
        silhouette=selection.silhouette,
        knee=selection.knee,
        chosen_k=kk,
        k_pinned=k is not None,
        rule=selection.rule,
        labels=labelled.select(id_col, "cluster"),
        n=fm.n,
        sizes={j: int(s) for j, s in enumerate(sizes_arr)},
        centroids=centroids,
        centroids_scaled=means,
        inertia_chosen=inertia_chosen,
        silhouette_chosen=silhouette_chosen,
        duration_s=time.perf_counter() - started,
        matrix=fm,
        stats=fm.stats,
    )


def release(result: SparkClusteringResult) -> None:
    """Drop the cached feature vectors of a run (after its labels are written)."""
    result.matrix.frame.unpersist()
