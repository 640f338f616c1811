"""Clustering of customer profiles: feature matrix, choice of k, fitting, naming, matching.

Pure numpy/pandas/scikit-learn/scipy, no Django: the segments service feeds it the
profiles frame (one row per customer, as produced by ``profiles.features``) and stores
what ``cluster_profiles`` returns.

Pipeline
--------
1. ``build_feature_matrix``: pick the feature columns, derive ``community_actions``
   (posts + comments + likes) and optional ``interest:<category>`` shares, impute nulls
   (``recency_days`` -> ``window_days``, i.e. "no purchase in the whole window"; every other
   column -> 0), ``log1p`` the skewed money and count columns, then standardise
   (``StandardScaler``).
2. ``choose_k``: fit k-means for every k in ``k_range`` (on a random sample of at most
   ``selection_sample`` rows), find the knee of the inertia curve with Kneedle
   (``knee_point``), compute the silhouette score of every k on a sample of at most
   ``silhouette_sample`` rows. The knee is chosen unless k-1 or k+1 has a silhouette better
   by more than ``silhouette_margin`` (0.01), then that neighbour is. Without a knee, the
   best silhouette over the whole range wins. An operator can pin k instead.
3. Fit on all rows: ``KMeans`` (``n_init``, ``random_state``), ``MiniBatchKMeans`` above
   ``minibatch_above`` rows, or Ward agglomerative clustering on a sample with every row
   then assigned to the nearest sample-cluster centroid.
4. Clusters are numbered by size (0 = largest); centroids are given back in original units
   (inverse scaling, then ``expm1`` of the log columns: for log columns that is a geometric-
   style "typical" value, not the arithmetic mean).
5. ``describe_cluster`` names a centroid relative to the population quantiles and
   ``match_clusters`` pairs new clusters with the previous run's (Hungarian assignment on
   centroid distance, with a threshold above which a cluster counts as new).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

__all__ = [
    "DEFAULT_FEATURES",
    "LOG_FEATURES",
    "ClusteringResult",
    "FeatureMatrix",
    "KSelection",
    "build_feature_matrix",
    "choose_k",
    "cluster_profiles",
    "describe_cluster",
    "knee_point",
    "match_clusters",
    "population_stats",
    "select_k",
    "size_order",
]

DEFAULT_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "median_price",
    "events_30d",
    "community_actions",
    "active_days",
)
# Skewed, non-negative money and count columns: clustered on log1p.
LOG_FEATURES: frozenset[str] = frozenset(
    {
        "frequency",
        "monetary",
        "avg_order_value",
        "events_30d",
        "community_actions",
        "active_days",
        "n_events",
        "community_posts",
        "community_comments",
        "community_likes",
        "orders_total",
        "median_price",
    }
)
COMMUNITY_COLUMNS = ("community_posts", "community_comments", "community_likes")
# Price-level columns are null for customers without (priced) orders or views; a 0 would claim
# "cheapest possible" and dominate the column, so they are filled with the population median.
_MEDIAN_FILLED = ("avg_order_value", "median_price")


# ------------------------------------------------------------------------------ feature matrix
@dataclass
class FeatureMatrix:
    """Scaled features of a population and the way back to original units.

    ``X`` has shape (n_customers, n_features), standardised; ``raw`` holds the same values
    after imputation, in original units; ``index`` is the profiles' index (customer ids).
    """

    X: np.ndarray
    raw: pd.DataFrame
    columns: list[str]
    log_columns: list[str]
    fill_values: dict[str, float]
    scaler: StandardScaler
    index: pd.Index
    observed: pd.DataFrame | None = None  # before imputation (nulls kept)

    @property
    def mean(self) -> np.ndarray:
        """The standardisation's per-column mean (after log1p where logged)."""
        return self.scaler.mean_

    @property
    def scale(self) -> np.ndarray:
        """The standardisation's per-column scale (1 for a constant column)."""
        return self.scaler.scale_

    def to_scaled(self, original: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Original-unit rows (e.g. stored centroids of an earlier run) -> this run's scaled space."""
        frame = pd.DataFrame(original, columns=self.columns) if isinstance(original, np.ndarray) else original
        vals = frame[self.columns].astype(float).copy()
        for c in self.log_columns:
            vals[c] = np.log1p(np.maximum(vals[c], 0.0))
        return self.scaler.transform(vals.to_numpy())

    def to_original(self, scaled: np.ndarray) -> pd.DataFrame:
        """Scaled rows -> original units (inverse of scaling and of log1p)."""
        vals = pd.DataFrame(self.scaler.inverse_transform(np.atleast_2d(scaled)), columns=self.columns)
        for c in self.log_columns:
            vals[c] = np.maximum(np.expm1(vals[c]), 0.0)  # log columns are non-negative by construction
        return vals


def _interest_columns(profiles: pd.DataFrame, interest_categories) -> dict[str, np.ndarray]:
    if not interest_categories or "interests" not in profiles.columns:
        return {}
    interests = profiles["interests"]
    if isinstance(interest_categories, int):
        totals: dict[str, float] = {}
        for d in interests:
            for k, v in (d or {}).items():
                totals[k] = totals.get(k, 0.0) + v
        cats = [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:interest_categories]]
    else:
        cats = list(interest_categories)
    return {f"interest:{c}": np.array([(d or {}).get(c, 0.0) for d in interests], dtype=float) for c in cats}


def _raw_features(
    profiles: pd.DataFrame, features: Sequence[str], interest_categories: int | Sequence[str] | None
) -> pd.DataFrame:
    """The feature columns in original units, nulls kept (``community_actions`` derived when absent)."""
    data: dict[str, np.ndarray] = {}
    for col in features:
        if col == "community_actions" and col not in profiles.columns:
            data[col] = profiles[list(COMMUNITY_COLUMNS)].sum(axis=1).to_numpy(dtype=float)
        elif col not in profiles.columns:
            raise ValueError(f"profiles lack feature column {col!r}")
        else:
            data[col] = pd.to_numeric(profiles[col], errors="coerce").to_numpy(dtype=float)
    data.update(_interest_columns(profiles, interest_categories))
    return pd.DataFrame(data, index=profiles.index)


def build_feature_matrix(
    profiles: pd.DataFrame,
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
    log_features: Iterable[str] = LOG_FEATURES,
    fill_values: Mapping[str, float] | None = None,
    window_days: float = 365.0,
    interest_categories: int | Sequence[str] | None = None,
) -> FeatureMatrix:
    """Select, impute, log-scale and standardise profile features.

    Parameters
    ----------
    profiles : DataFrame, one row per customer (columns of ``profiles.features``).
    features : columns to use; ``community_actions`` is derived from the community counts
        when absent.
    log_features : columns clustered on ``log1p`` (negative values are clipped to 0 first).
    fill_values : per-column value for nulls; default ``recency_days -> window_days``, others 0.
    interest_categories : an int N adds the interest shares of the population's N largest
        categories as ``interest:<name>`` columns; a list names the categories.
    """
    raw = _raw_features(profiles, features, interest_categories)
    fills = dict.fromkeys(raw.columns, 0.0)
    if "recency_days" in fills:
        fills["recency_days"] = float(window_days)
    for c in _MEDIAN_FILLED:
        if c in fills:
            med = raw[c].median()
            fills[c] = float(med) if pd.notna(med) else 0.0
    fills.update(fill_values or {})
    observed = raw.copy()
    raw = raw.fillna(fills)
    logs = [c for c in raw.columns if c in set(log_features)]
    vals = raw.copy()
    for c in logs:
        vals[c] = np.log1p(np.maximum(vals[c].to_numpy(), 0.0))
    scaler = StandardScaler().fit(vals.to_numpy())
    # constant columns: StandardScaler leaves scale 1, which keeps them at 0 after centring
    X = scaler.transform(vals.to_numpy())
    return FeatureMatrix(
        X=X,
        raw=raw,
        columns=list(raw.columns),
        log_columns=logs,
        fill_values=fills,
        scaler=scaler,
        index=profiles.index,
        observed=observed,
    )


def population_stats(observed: pd.DataFrame) -> pd.DataFrame:
    """Quantiles (q20, q50, q80) and mean of each feature, original units, over the customers
    for whom the feature is known (nulls skipped: recency among buyers, say): the reference
    ``describe_cluster`` compares a centroid against."""
    q = observed.quantile([0.2, 0.5, 0.8]).T
    q.columns = ["q20", "q50", "q80"]
    q["mean"] = observed.mean()
    return q


# ------------------------------------------------------------------------------ choosing k
def knee_point(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Knee of a decreasing, convex curve (an inertia curve) by the Kneedle method.

    Both axes are normalised to [0, 1]; the knee is the x where the normalised curve lies
    furthest below the straight line joining its end points, i.e. the maximum of the
    difference curve ``(1 - x_n) - y_n``. Returns ``None`` when the curve never bends
    below that line by more than 0.01 (no knee: straight or concave), or has fewer than
    three points. Deterministic; the first x wins a tie.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    xn = (x - x.min()) / np.ptp(x)
    yn = (y - y.min()) / np.ptp(y)
    diff = (1.0 - xn) - yn
    i = int(np.argmax(diff))
    if diff[i] <= 0.01:
        return None
    return float(x[i])


@dataclass
class KSelection:
    """Figures of the k search: ``inertia`` and ``silhouette`` per k, the Kneedle knee and
    the chosen k with the rule that chose it."""

    ks: list[int]
    inertia: dict[int, float]
    silhouette: dict[int, float]
    knee: int | None
    chosen_k: int
    rule: str


def _kmeans(k: int, n_rows: int, *, random_state: int, n_init: int, minibatch_above: int):
    if n_rows > minibatch_above:
        # each MiniBatch init costs a pass over a large matrix; 3 is plenty on well-scaled data
        return MiniBatchKMeans(
            n_clusters=k,
            n_init=min(n_init, 3),
            random_state=random_state,
            batch_size=4096,
            max_no_improvement=20,
            reassignment_ratio=0.001,
        )
    return KMeans(n_clusters=k, n_init=n_init, random_state=random_state)


def _sample(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    if size is None or n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _inertia(X: np.ndarray, labels: np.ndarray, k: int) -> float:
    total = 0.0
    for j in range(k):
        pts = X[labels == j]
        if len(pts):
            total += float(((pts - pts.mean(axis=0)) ** 2).sum())
    return total


def choose_k(
    X: np.ndarray,
    k_range: Iterable[int] = range(2, 11),
    *,
    method: str = "kmeans",
    random_state: int = 0,
    n_init: int = 4,
    minibatch_above: int = 50_000,
    selection_sample: int | None = 20_000,
    silhouette_sample: int | None = 4_000,
    agglomerative_sample: int = 5_000,
    silhouette_margin: float = 0.01,
) -> KSelection:
    """Choose k: Kneedle on the inertia curve proposes, the silhouette may move it by one.

    ``X`` is the scaled matrix. The knee stands unless the silhouette of k-1 or k+1 beats
    the knee's by more than ``silhouette_margin``, in which case the best of those two wins.
    Without a knee, the best silhouette over the range wins (ties to the smaller k).
    """
    ks = sorted({int(k) for k in k_range if int(k) >= 2})
    if not ks:
        raise ValueError("k_range must contain k >= 2")
    rng = np.random.default_rng(random_state)
    n = len(X)
    ks = [k for k in ks if k < n]
    if not ks:
        raise ValueError("too few rows for the requested k_range")
    if method == "agglomerative":
        Xs = X[_sample(n, agglomerative_sample, rng)]
        tree = linkage(Xs, method="ward")
    else:
        Xs = X[_sample(n, selection_sample, rng)]
    sil_idx = _sample(len(Xs), silhouette_sample, rng)
    inertia: dict[int, float] = {}
    silhouette: dict[int, float] = {}
    for k in ks:
        if method == "agglomerative":
            labels = fcluster(tree, t=k, criterion="maxclust") - 1
            inertia[k] = _inertia(Xs, labels, k)
        else:
            model = _kmeans(k, len(Xs), random_state=random_state, n_init=n_init, minibatch_above=minibatch_above).fit(
                Xs
            )
            labels = model.labels_
            inertia[k] = float(model.inertia_)
        sl = labels[sil_idx]
        silhouette[k] = float(silhouette_score(Xs[sil_idx], sl)) if len(np.unique(sl)) > 1 else -1.0
    return select_k(ks, inertia, silhouette, silhouette_margin=silhouette_margin)


def select_k(
    ks: Sequence[int], inertia: Mapping[int, float], silhouette: Mapping[int, float], *, silhouette_margin: float = 0.01
) -> KSelection:
    """The rule of ``choose_k`` on curves already measured (any backend's k-means): Kneedle on
    ``inertia`` proposes, the silhouette may move the knee by one (``silhouette_margin``); without
    a knee the best silhouette wins, ties to the smaller k."""
    ks = sorted(int(k) for k in ks)
    inertia = {int(k): float(v) for k, v in inertia.items()}
    silhouette = {int(k): float(v) for k, v in silhouette.items()}
    knee = knee_point(ks, [inertia[k] for k in ks])
    knee = int(knee) if knee is not None else None
    if knee is None:
        chosen = max(ks, key=lambda k: (silhouette[k], -k))
        rule = f"no knee in the inertia curve; best silhouette over k={ks[0]}..{ks[-1]}"
    else:
        neighbours = [k for k in (knee - 1, knee + 1) if k in inertia]
        best = max(neighbours, key=lambda k: (silhouette[k], -k)) if neighbours else knee
        if neighbours and silhouette[best] > silhouette[knee] + silhouette_margin:
            chosen = best
            rule = (
                f"knee at k={knee}; k={best} has a clearly better silhouette "
                f"({silhouette[best]:.3f} > {silhouette[knee]:.3f} + {silhouette_margin})"
            )
        else:
            chosen = knee
            rule = f"knee at k={knee}, confirmed by the silhouette (no neighbour better by > {silhouette_margin})"
    return KSelection(ks=ks, inertia=inertia, silhouette=silhouette, knee=knee, chosen_k=chosen, rule=rule)


# ------------------------------------------------------------------------------ the run
class ClusterViews:
    """What a clustering result tells about its clusters, from its ``centroids`` (original units),
    ``stats`` (the population's quantiles) and ``matrix`` (the scaling): shared by the local result
    and Spark's (``spark_clustering.SparkClusteringResult``)."""

    centroids: pd.DataFrame
    stats: pd.DataFrame
    matrix: FeatureMatrix

    def names(self) -> pd.DataFrame:
        """``name`` and ``description`` of each cluster (``describe_cluster``)."""
        rows = [describe_cluster(self.centroids.loc[j], self.stats) for j in self.centroids.index]
        return pd.DataFrame(rows, columns=["name", "description"], index=self.centroids.index)

    def to_scaled(self, original: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Original-unit centroids (e.g. the previous run's) in this run's scaled space."""
        return self.matrix.to_scaled(original)


@dataclass
class ClusteringResult(ClusterViews):
    """Everything a clustering run produced; ``labels[i]`` is the cluster of ``index[i]``.

    Clusters are numbered 0..k-1 by decreasing size. ``centroids`` is a DataFrame
    (k x features) in original units; ``centroids_scaled`` the same in the scaled space.
    ``inertia``/``silhouette`` are per k of the search (empty when k was pinned and no
    search ran; the pinned k's own figures are always in ``inertia_chosen``/``silhouette_chosen``).
    """

    method: str
    features: list[str]
    k_range: tuple[int, int]
    inertia: dict[int, float]
    silhouette: dict[int, float]
    knee: int | None
    chosen_k: int
    k_pinned: bool
    rule: str
    labels: np.ndarray
    index: pd.Index
    sizes: dict[int, int]
    centroids: pd.DataFrame
    centroids_scaled: np.ndarray
    inertia_chosen: float
    silhouette_chosen: float
    duration_s: float
    matrix: FeatureMatrix = field(repr=False)
    stats: pd.DataFrame = field(repr=False)


def size_order(sizes: Sequence[int], centers: np.ndarray) -> list[int]:
    """The clusters, largest first (equal sizes by centroid coordinates, so the numbering is
    deterministic): ``order[new_label] = old_label``."""
    return sorted(range(len(centers)), key=lambda j: (-sizes[j], tuple(np.round(centers[j], 9))))


def _relabel_by_size(labels: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = len(centers)
    sizes = np.bincount(labels, minlength=k)
    order = size_order(sizes, centers)
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[labels], centers[order]


def cluster_profiles(
    profiles: pd.DataFrame,
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
    method: str = "kmeans",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 10),
    random_state: int = 0,
    n_init: int = 10,
    minibatch_above: int = 50_000,
    selection_sample: int | None = 20_000,
    silhouette_sample: int | None = 4_000,
    agglomerative_sample: int = 5_000,
    silhouette_margin: float = 0.01,
    window_days: float = 365.0,
    interest_categories: int | Sequence[str] | None = None,
    fill_values: Mapping[str, float] | None = None,
    log_features: Iterable[str] = LOG_FEATURES,
) -> ClusteringResult:
    """Cluster customer profiles.

    Parameters
    ----------
    profiles : DataFrame, one row per customer (index = customer id).
    method : ``"kmeans"`` (MiniBatchKMeans above ``minibatch_above`` rows) or
        ``"agglomerative"`` (Ward on ``agglomerative_sample`` rows, the rest to the nearest
        centroid).
    k : pin the number of clusters; ``None`` chooses it over ``k_range`` (inclusive).
    Other parameters: see ``build_feature_matrix`` and ``choose_k``.

    Returns
    -------
    ClusteringResult
    """
    if method not in ("kmeans", "agglomerative"):
        raise ValueError("method must be 'kmeans' or 'agglomerative'")
    started = time.perf_counter()
    fm = build_feature_matrix(
        profiles,
        features=features,
        log_features=log_features,
        fill_values=fill_values,
        window_days=window_days,
        interest_categories=interest_categories,
    )
    X = fm.X
    n = len(X)
    lo, hi = k_range
    if k is not None:
        if not 1 <= k <= n:
            raise ValueError(f"k={k} is impossible for {n} rows")
        selection = KSelection(ks=[], inertia={}, silhouette={}, knee=None, chosen_k=int(k), rule="pinned by operator")
    else:
        selection = choose_k(
            X,
            range(lo, hi + 1),
            method=method,
            random_state=random_state,
            n_init=max(1, min(n_init, 3)),
            minibatch_above=minibatch_above,
            selection_sample=selection_sample,
            silhouette_sample=silhouette_sample,
            agglomerative_sample=agglomerative_sample,
            silhouette_margin=silhouette_margin,
        )
    kk = selection.chosen_k
    rng = np.random.default_rng(random_state)
    if method == "agglomerative" and kk > 1:
        idx = _sample(n, agglomerative_sample, rng)
        sample_labels = fcluster(linkage(X[idx], method="ward"), t=kk, criterion="maxclust") - 1
        centers = np.vstack([X[idx][sample_labels == j].mean(axis=0) for j in range(kk)])
        labels = _nearest(X, centers)
    else:
        model = _kmeans(kk, n, random_state=random_state, n_init=n_init, minibatch_above=minibatch_above).fit(X)
        labels = model.labels_ if n <= minibatch_above else model.predict(X)
        centers = model.cluster_centers_
    labels, centers = _relabel_by_size(np.asarray(labels, dtype=np.int64), np.asarray(centers))
    # centroids as the mean of each cluster's rows (for agglomerative, of all assigned rows)
    centers = np.vstack([X[labels == j].mean(axis=0) if (labels == j).any() else centers[j] for j in range(kk)])
    sil_idx = _sample(n, silhouette_sample, rng)
    sil = float(silhouette_score(X[sil_idx], labels[sil_idx])) if len(np.unique(labels[sil_idx])) > 1 else float("nan")
    centroids = fm.to_original(centers)
    centroids.index.name = "cluster"
    return ClusteringResult(
        method=method,
        features=fm.columns,
        k_range=(lo, hi),
        inertia=selection.inertia,
        silhouette=selection.silhouette,
        knee=selection.knee,
        chosen_k=kk,
        k_pinned=k is not None,
        rule=selection.rule,
        labels=labels,
        index=profiles.index,
        sizes={j: int(s) for j, s in enumerate(np.bincount(labels, minlength=kk))},
        centroids=centroids,
        centroids_scaled=centers,
        inertia_chosen=_inertia(X, labels, kk),
        silhouette_chosen=sil,
        duration_s=time.perf_counter() - started,
        matrix=fm,
        stats=population_stats(fm.observed),
    )


def _nearest(X: np.ndarray, centers: np.ndarray, block: int = 200_000) -> np.ndarray:
    out = np.empty(len(X), dtype=np.int64)
    c2 = (centers**2).sum(axis=1)
    for s in range(0, len(X), block):
        xb = X[s : s + block]
        out[s : s + block] = np.argmin(c2[None, :] - 2 * xb @ centers.T, axis=1)
    return out


# ------------------------------------------------------------------------------ assigning later customers
INTEREST_PREFIX = "interest:"


def assignment_model(matrix, centroids_scaled: np.ndarray) -> dict:
    """What it takes to place a customer in one of a run's clusters later without clustering again
    (an incremental run, `assign_nearest`): the run's features, the values that filled nulls, the
    log-scaled columns, the standardisation (mean and scale, as the run fitted them) and the
    clusters' centres in that scaled space, row j = cluster j. Plain lists and floats (JSON).
    `matrix`: a `FeatureMatrix`, or Spark's features (``spark_clustering.SparkFeatures``: the same
    columns, log_columns, fill_values, mean and scale)."""
    return {
        "columns": list(matrix.columns),
        "log_columns": list(matrix.log_columns),
        "fill_values": {c: float(v) for c, v in matrix.fill_values.items() if c in matrix.columns},
        "mean": [float(v) for v in matrix.mean],
        "scale": [float(v) for v in matrix.scale],
        "centers": np.asarray(centroids_scaled, dtype=float).tolist(),
    }


def assign_nearest(profiles: pd.DataFrame, model: Mapping) -> np.ndarray:
    """The cluster (0..k-1, as numbered by the run that made `model`, see `assignment_model`) whose
    centre is nearest to each profile, in that run's scaled space: the same features, nulls filled
    with the run's values, the same log and standardisation. ``profiles`` as for ``cluster_profiles``;
    returns one label per row, in its order. KeyError / ValueError when `model` is incomplete or
    the profiles lack one of its columns."""
    columns = list(model["columns"])
    centers = np.asarray(model["centers"], dtype=float)
    mean, scale = np.asarray(model["mean"], dtype=float), np.asarray(model["scale"], dtype=float)
    if centers.ndim != 2 or centers.shape[1] != len(columns) or len(mean) != len(columns) or len(scale) != len(columns):
        raise ValueError("the assignment model's centres, mean and scale do not match its columns")
    if not len(profiles):
        return np.empty(0, dtype=np.int64)
    plain = [c for c in columns if not c.startswith(INTEREST_PREFIX)]
    categories = [c.removeprefix(INTEREST_PREFIX) for c in columns if c.startswith(INTEREST_PREFIX)]
    raw = _raw_features(profiles, plain, categories or None)[columns]
    vals = raw.fillna({c: float(model["fill_values"].get(c, 0.0)) for c in columns}).to_numpy(dtype=float)
    logs = [columns.index(c) for c in model["log_columns"] if c in columns]
    vals[:, logs] = np.log1p(np.maximum(vals[:, logs], 0.0))
    return _nearest((vals - mean) / scale, centers)


# ------------------------------------------------------------------------------ naming
def _level(value: float, stats: pd.DataFrame, col: str) -> str | None:
    """ "high" at or above the 80th percentile or twice the median, "low" at or below the 20th
    percentile or half the median, else "mid". The ratio arms keep a cluster that is a
    quarter of the population from straddling the 20/80 cut."""
    if col not in stats.index or value is None or np.isnan(value):
        return None
    q20, q50, q80 = stats.loc[col, ["q20", "q50", "q80"]]
    spread = q80 > q20
    if (spread and value >= q80) or (q50 > 0 and value >= 2 * q50):
        return "high"
    if (spread and value <= q20) or (q50 > 0 and value <= 0.5 * q50):
        return "low"
    return "mid"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:,.1f}"


def describe_cluster(centroid: Mapping[str, float] | pd.Series, population_stats: pd.DataFrame) -> tuple[str, str]:
    """A readable (name, description) for a centroid in original units.

    ``population_stats`` is the frame of ``population_stats()`` (rows = features, columns
    q20, q50, q80, mean; recency and prices over the customers who have them). A feature is
    "high" at or above the population's 80th percentile or twice its median, "low" at or
    below its 20th percentile or half its median; a purchase is "recent" when
    ``recency_days`` is at most the buyers' median. The name is
    the first rule that applies:

    1. community actions high (and at least 3) -> "Community enthusiasts";
    2. fewer than 0.5 orders -> "New visitors" if events in the last 30 days are at or above
       the median, else "Dormant browsers"; about one order, at most 30 days ago, and events
       in the last 30 days at or above the median -> "New customers";
    3. recency high (long since the last purchase) -> "Lapsed" + "big spenders" (high spend,
       order value or prices) / "bargain hunters" (low order value or prices) / "customers";
    4. otherwise a "·"-joined list: value ("High value", else "Bargain hunters" for low order
       value or prices, else "Low value" / "Mid value"), then "frequent"/"occasional", then
       "recent", e.g. "High value · frequent · recent".
    """
    c = {k: float(v) for k, v in dict(centroid).items() if v is not None and not pd.isna(v)}
    get = c.get
    lv = {k: _level(v, population_stats, k) for k, v in c.items()}
    comm = get("community_actions")
    freq = get("frequency")
    recent_events = get("events_30d")
    med30 = population_stats.loc["events_30d", "q50"] if "events_30d" in population_stats.index else 0.0
    busy_now = recent_events is not None and recent_events > 0 and recent_events >= med30
    cheap = "low" in (lv.get("avg_order_value"), lv.get("median_price"))
    dear = "high" in (lv.get("monetary"), lv.get("avg_order_value"), lv.get("median_price"))
    if comm is not None and lv.get("community_actions") == "high" and comm >= 3:
        name = "Community enthusiasts"
    elif freq is not None and freq < 0.5:
        name = "New visitors" if busy_now else "Dormant browsers"
    elif freq is not None and freq < 1.5 and busy_now and (get("recency_days") or np.inf) <= 30:
        name = "New customers"
    elif lv.get("recency_days") == "high":
        name = "Lapsed big spenders" if dear else "Lapsed bargain hunters" if cheap else "Lapsed customers"
    else:
        if lv.get("monetary") == "high":
            parts = ["High value"]
        elif cheap:
            parts = ["Bargain hunters"]
        elif lv.get("monetary") == "low":
            parts = ["Low value"]
        else:
            parts = ["Mid value"]
        if lv.get("frequency") == "high":
            parts.append("frequent")
        elif lv.get("frequency") == "low":
            parts.append("occasional")
        rec = get("recency_days")
        if (
            rec is not None
            and "recency_days" in population_stats.index
            and rec <= population_stats.loc["recency_days", "q50"]
        ):
            parts.append("recent")
        name = " · ".join(parts)

    bits = []
    bought = freq is None or freq >= 0.5
    if freq is not None:
        spend = f" worth {_fmt(get('monetary'))}" if get("monetary") is not None else ""
        bits.append(f"{_fmt(freq)} orders{spend} in the window")
    if get("avg_order_value") is not None and freq is not None and bought:
        bits.append(f"average order {_fmt(get('avg_order_value'))}")
    if get("median_price") is not None:
        bits.append(f"looks at items around {_fmt(get('median_price'))}")
    if get("recency_days") is not None and bought:
        bits.append(f"last purchase {_fmt(get('recency_days'))} days ago")
    if get("active_days") is not None:
        bits.append(f"active on {_fmt(get('active_days'))} days")
    if get("events_30d") is not None:
        bits.append(f"{_fmt(get('events_30d'))} events in the last 30 days")
    if comm is not None:
        bits.append(f"{_fmt(comm)} community actions")
    description = "Typical customer: " + ", ".join(bits) + "." if bits else ""
    return name, description


# ------------------------------------------------------------------------------ matching
def match_clusters(
    prev_centroids: pd.DataFrame | np.ndarray,
    new_centroids: pd.DataFrame | np.ndarray,
    *,
    threshold: float = 0.75,
) -> dict:
    """Pair each new cluster with a previous one so segment identities survive a re-run.

    Both arguments are centroids in the *same* space, ideally the new run's scaled space
    (``result.centroids_scaled`` and ``result.to_scaled(previous_original_centroids)``).
    The cost of a pair is the root-mean-square coordinate difference (Euclidean distance /
    sqrt(n_features), so in standard deviations per feature when scaled); the Hungarian
    method (``scipy.optimize.linear_sum_assignment``) minimises the total cost, and pairs
    costing more than ``threshold`` are dropped.

    Returns ``{new_label: previous_label or None}`` for every new cluster, where labels are
    the frames' index values (or row positions for arrays); ``None`` marks a new cluster.
    """
    prev = np.asarray(prev_centroids, dtype=float)
    new = np.asarray(new_centroids, dtype=float)
    prev_labels = list(prev_centroids.index) if isinstance(prev_centroids, pd.DataFrame) else list(range(len(prev)))
    new_labels = list(new_centroids.index) if isinstance(new_centroids, pd.DataFrame) else list(range(len(new)))
    mapping = dict.fromkeys(new_labels)
    if len(prev) == 0 or len(new) == 0:
        return mapping
    if prev.shape[1] != new.shape[1]:
        raise ValueError("previous and new centroids have different numbers of features")
    cost = np.sqrt(((new[:, None, :] - prev[None, :, :]) ** 2).mean(axis=2))
    rows, cols = linear_sum_assignment(cost)
    for r, c in zip(rows, cols, strict=False):
        if cost[r, c] <= threshold:
            mapping[new_labels[r]] = prev_labels[c]
    return mapping
