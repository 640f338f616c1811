"""Offline evaluation: rating metrics, top-N metrics, dataset loaders and protocols.

Pure pandas/numpy; dataset paths are always passed in (nothing is bundled).

Protocols
---------
``"ml-100k"``
    MovieLens 100K (``u.data``): each user's last 10 ratings by time (ties: by item id)
    are the test set, the rest is training (the rating values are the matrix values).
    Relevant = test items rated >= 4; users without a relevant item are not scored;
    ranking excludes the user's training items.
``"online-retail"``
    UCI Online Retail: lines with a CustomerID, not on a cancellation invoice
    (InvoiceNo starting with ``C``) and with Quantity > 0. Training = lines before
    2011-11-01, test = lines from then on. The matrix holds, per (customer, item), the
    number of training lines. Users and items are those seen in training. Relevant =
    items a customer bought in the test period and never in training; customers with no
    relevant item are not scored; ranking excludes training items.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._base import SparseLookup
from .interactions import build_interactions, pair_matrix

RETAIL_SPLIT_DATE = "2011-11-01"

# -- rating metrics -----------------------------------------------------------------


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    d = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(d**2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    d = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(np.abs(d)))


@dataclass
class RatingFold:
    """One train/test split for rating prediction (indices already mapped to rows/columns)."""

    train: sp.csr_matrix
    test_users: np.ndarray
    test_items: np.ndarray
    test_ratings: np.ndarray
    name: str = ""


def kfold_rating_folds(users, items, ratings, *, n_users, n_items, n_splits=5, random_state=0):
    """Shuffled k-fold splits of rating triples.

    Parameters
    ----------
    users, items, ratings : array-like, shape (n_ratings,)
    n_users, n_items : int
    n_splits : int
    random_state : int

    Returns
    -------
    list of RatingFold
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    perm = np.random.default_rng(random_state).permutation(len(users))
    folds = []
    for f, test in enumerate(np.array_split(perm, n_splits)):
        train = np.setdiff1d(perm, test)
        m = build_interactions(
            users[train], items[train], ratings[train], n_users=n_users, n_items=n_items, explicit=True
        )
        folds.append(RatingFold(m, users[test], items[test], ratings[test], name=f"fold{f + 1}"))
    return folds


def evaluate_rating(make_model, folds) -> dict:
    """RMSE and MAE of ``make_model().fit(fold.train).predict(...)`` over folds.

    Parameters
    ----------
    make_model : callable returning an unfitted model with ``fit`` and ``predict``
    folds : iterable of RatingFold

    Returns
    -------
    dict
        ``{"folds": [{"name", "rmse", "mae", "fit_seconds", "predict_seconds"}, ...],
        "rmse": mean, "mae": mean}``
    """
    rows = []
    for fold in folds:
        model = make_model()
        t0 = time.perf_counter()
        model.fit(fold.train)
        t1 = time.perf_counter()
        pred = model.predict(fold.test_users, fold.test_items)
        t2 = time.perf_counter()
        rows.append(
            {
                "name": fold.name,
                "rmse": rmse(fold.test_ratings, pred),
                "mae": mae(fold.test_ratings, pred),
                "fit_seconds": t1 - t0,
                "predict_seconds": t2 - t1,
            }
        )
    return {
        "folds": rows,
        "rmse": float(np.mean([r["rmse"] for r in rows])),
        "mae": float(np.mean([r["mae"] for r in rows])),
    }


# -- loaders -------------------------------------------------------------------------


def load_movielens_ratings(path) -> pd.DataFrame:
    """A MovieLens 100K ratings file (``u.data``, ``u1.base``, ...).

    Returns
    -------
    DataFrame with int columns ``user``, ``item``, ``rating``, ``timestamp`` (raw ids).
    """
    return pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["user", "item", "rating", "timestamp"],
        dtype={"user": np.int64, "item": np.int64, "rating": np.int64, "timestamp": np.int64},
    )


def movielens_official_folds(ml_dir, folds=(1, 2, 3, 4, 5)) -> list[RatingFold]:
    """The official ``u1``–``u5`` base/test splits of MovieLens 100K.

    Rows are ``user_id - 1`` (943 users) and columns ``item_id - 1`` (1,682 items),
    so every fold shares one index space.
    """
    ml_dir = Path(ml_dir)
    info = load_movielens_ratings(ml_dir / "u.data")
    n_users, n_items = int(info.user.max()), int(info.item.max())
    out = []
    for f in folds:
        base = load_movielens_ratings(ml_dir / f"u{f}.base")
        test = load_movielens_ratings(ml_dir / f"u{f}.test")
        train = build_interactions(
            base.user.values - 1,
            base.item.values - 1,
            base.rating.values.astype(float),
            base.timestamp.values,
            n_users=n_users,
            n_items=n_items,
            explicit=True,
        )
        out.append(
            RatingFold(
                train, test.user.values - 1, test.item.values - 1, test.rating.values.astype(float), name=f"u{f}"
            )
        )
    return out


def movielens_surprise_folds(ml_dir, n_splits: int = 5, random_state: int = 0) -> list[RatingFold]:
    """``u.data`` split as scikit-surprise's ``KFold(n_splits, random_state)`` splits it.

    Surprise's published ml-100k table uses ``KFold(random_state=0)`` on
    ``Dataset.load_builtin("ml-100k")``, which is ``u.data`` in file order: the rating
    indices are shuffled by ``numpy.random.RandomState(random_state)`` and cut into
    ``n_splits`` consecutive test folds, the first ``len % n_splits`` one rating larger.
    This reproduces those folds without surprise. Rows and columns are as in
    :func:`movielens_official_folds`.
    """
    df = load_movielens_ratings(Path(ml_dir) / "u.data")
    n_users, n_items = int(df.user.max()), int(df.item.max())
    users, items = df.user.values - 1, df.item.values - 1
    ratings = df.rating.values.astype(float)
    idx = np.arange(len(df))
    np.random.RandomState(random_state).shuffle(idx)
    sizes = np.full(n_splits, len(idx) // n_splits)
    sizes[: len(idx) % n_splits] += 1
    out = []
    for f, (start, stop) in enumerate(zip(np.cumsum(sizes) - sizes, np.cumsum(sizes), strict=False)):
        test, train = idx[start:stop], np.r_[idx[:start], idx[stop:]]
        m = build_interactions(
            users[train], items[train], ratings[train], n_users=n_users, n_items=n_items, explicit=True
        )
        out.append(RatingFold(m, users[test], items[test], ratings[test], name=f"surprise-kfold{f + 1}"))
    return out


def load_online_retail(path) -> pd.DataFrame:
    """The UCI Online Retail CSV (optionally gzipped), cleaned.

    Keeps lines with a CustomerID, not on a cancellation invoice (InvoiceNo starting
    with ``C``) and with Quantity > 0.

    Returns
    -------
    DataFrame with columns ``customer`` (int), ``item`` (StockCode, str), ``invoice``
    (str), ``quantity`` (int), ``timestamp`` (datetime64), ``country`` (str).
    """
    df = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64", "Country": str},
        usecols=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "CustomerID", "Country"],
    )
    df = df[df.CustomerID.notna() & ~df.InvoiceNo.str.startswith("C") & (df.Quantity > 0)]
    return pd.DataFrame(
        {
            "customer": df.CustomerID.astype(np.int64).values,
            "item": df.StockCode.values,
            "invoice": df.InvoiceNo.values,
            "quantity": df.Quantity.astype(np.int64).values,
            "timestamp": pd.to_datetime(df.InvoiceDate).values,
            "country": df.Country.values,
        }
    )


# -- top-N protocols ------------------------------------------------------------------


@dataclass
class TopNSplit:
    """A top-N evaluation split.

    Attributes
    ----------
    name : str
    train : csr_matrix, shape (n_users, n_items)
    relevant : csr_matrix, shape (n_users, n_items)
        1 for each relevant test item.
    users : ndarray of int
        Users that are scored (at least one relevant item).
    user_ids, item_ids : ndarray
        Raw ids of rows and columns.
    train_timestamps : ndarray, shape (train.nnz,), optional
        Latest training event of each stored entry (Unix seconds), in CSR entry order.
    """

    name: str
    train: sp.csr_matrix
    relevant: sp.csr_matrix
    users: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    train_timestamps: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _latest_per_entry(m: sp.csr_matrix, rows, cols, t) -> np.ndarray:
    df = pd.DataFrame({"k": np.asarray(rows, np.int64) * m.shape[1] + np.asarray(cols, np.int64), "t": t})
    mx = df.groupby("k").t.max()
    keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * m.shape[1] + m.indices
    return mx.reindex(keys).to_numpy(dtype=np.float64)


def last_items_holdout(
    user_idx, item_idx, timestamps, positive, *, n_holdout: int, min_items: int, n_users: int, n_items: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Leave-last-out: each user's ``n_holdout`` most recently discovered items are the test.

    An item is discovered at the user's first positive event with it; only users with at least
    ``min_items`` distinct such items take part (ties in time: the higher item index is later).

    Parameters
    ----------
    user_idx, item_idx : array-like of int, shape (n_events,)
    timestamps : array-like, shape (n_events,)
        Numbers or datetime64 (only compared).
    positive : array-like of bool, shape (n_events,)
        Events that show interest (an implicit event of positive weight, a rating).
    n_holdout, min_items : int
    n_users, n_items : int

    Returns
    -------
    relevant : csr_matrix of float64, shape (n_users, n_items)
        1 for each held-out pair.
    keep : ndarray of bool, shape (n_events,)
        The events of the pairs that were not held out (every event of a held-out pair, positive
        or not, is out), to build the training matrix from.
    """
    u = np.asarray(user_idx, dtype=np.int64)
    i = np.asarray(item_idx, dtype=np.int64)
    positive = np.asarray(positive, dtype=bool)
    ev = pd.DataFrame({"u": u[positive], "i": i[positive], "t": np.asarray(timestamps)[positive]})
    first = ev.groupby(["u", "i"], sort=False)["t"].min().reset_index().sort_values(["u", "t", "i"], kind="stable")
    per_user = first.groupby("u")["i"].transform("size")
    from_end = first.groupby("u").cumcount(ascending=False)
    test = first[(per_user >= min_items) & (from_end < n_holdout)]
    test_u, test_i = test["u"].to_numpy(), test["i"].to_numpy()
    relevant = pair_matrix(test_u, test_i, n_users=n_users, n_items=n_items)
    keep = ~np.isin(u * n_items + i, test_u * n_items + test_i)
    return relevant, keep


def movielens_topn_split(ml_dir, n_test: int = 10, relevant_min: float = 4.0, drop_last: int = 0) -> TopNSplit:
    """Each user's last ``n_test`` ratings by time are the test set (see module doc).

    ``drop_last`` first removes each user's last ``drop_last`` ratings: with
    ``drop_last=n_test`` the split is a validation split carved from the training
    data of the plain one (the test ratings are never seen).
    """
    df = load_movielens_ratings(Path(ml_dir) / "u.data")
    df = df.sort_values(["user", "timestamp", "item"], kind="mergesort")
    if drop_last:
        df = df[df.groupby("user").cumcount(ascending=False) >= drop_last]
    from_end = df.groupby("user").cumcount(ascending=False)
    test = df[from_end < n_test]
    train = df[from_end >= n_test]
    user_ids = np.sort(df.user.unique())
    item_ids = np.sort(df.item.unique())
    umap = pd.Series(np.arange(len(user_ids)), index=user_ids)
    imap = pd.Series(np.arange(len(item_ids)), index=item_ids)
    tu, ti = umap[train.user].values, imap[train.item].values
    r = build_interactions(
        tu,
        ti,
        train.rating.values.astype(float),
        train.timestamp.values,
        n_users=len(user_ids),
        n_items=len(item_ids),
        explicit=True,
    )
    rel = test[test.rating >= relevant_min]
    relevant = sp.csr_matrix((np.ones(len(rel)), (umap[rel.user].values, imap[rel.item].values)), shape=r.shape)
    relevant.sum_duplicates()
    relevant.data[:] = 1.0
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    ts = _latest_per_entry(r, tu, ti, train.timestamp.values.astype(np.float64))
    return TopNSplit(
        "ml-100k",
        r,
        relevant,
        users,
        user_ids,
        item_ids,
        ts,
        info={"n_train": int(r.nnz), "n_relevant": int(relevant.nnz)},
    )


def online_retail_topn_split(
    csv_path, split_date: str = RETAIL_SPLIT_DATE, half_life_days: float | None = None, until: str | None = None
) -> TopNSplit:
    """Time split of Online Retail at ``split_date`` (see module doc).

    With ``half_life_days`` every training line is weighted by
    ``0.5 ** (age / half_life)`` (age relative to the last training event) before the
    lines of a (customer, item) pair are summed, as ``build_interactions`` does.
    ``until`` drops the lines from that date on first: ``split_date="2011-10-01",
    until="2011-11-01"`` is a validation split carved from the plain split's training data.
    """
    df = load_online_retail(csv_path)
    if until is not None:
        df = df[df.timestamp < np.datetime64(pd.Timestamp(until))]
    cut = np.datetime64(pd.Timestamp(split_date))
    train = df[df.timestamp < cut]
    test = df[df.timestamp >= cut]
    user_ids = np.sort(train.customer.unique())
    item_ids = np.sort(train.item.unique())
    umap = pd.Series(np.arange(len(user_ids)), index=user_ids)
    imap = pd.Series(np.arange(len(item_ids)), index=item_ids)
    tu, ti = umap[train.customer].values, imap[train.item].values
    secs = train.timestamp.values.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    r = build_interactions(
        tu, ti, None, secs, half_life_days=half_life_days, n_users=len(user_ids), n_items=len(item_ids)
    )
    test = test[test.customer.isin(umap.index) & test.item.isin(imap.index)]
    tu2, ti2 = umap[test.customer].values, imap[test.item].values
    bought = sp.csr_matrix((np.ones(len(tu2)), (tu2, ti2)), shape=r.shape)
    bought.sum_duplicates()
    bought.data[:] = 1.0
    seen = r.copy()
    seen.data[:] = 1.0
    relevant = (bought - bought.multiply(seen)).tocsr()
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    ts = _latest_per_entry(r, tu, ti, secs)
    return TopNSplit(
        "online-retail",
        r,
        relevant,
        users,
        user_ids,
        item_ids,
        ts,
        info={"n_train": int(r.nnz), "n_relevant": int(relevant.nnz), "half_life_days": half_life_days},
    )


# -- top-N metrics --------------------------------------------------------------------


def topn_metrics(
    rec_items: np.ndarray, relevant: sp.csr_matrix, users: np.ndarray, train: sp.csr_matrix, k: int = 10
) -> dict:
    """Top-N metrics of given recommendation lists.

    Parameters
    ----------
    rec_items : ndarray of int, shape (n_users_scored, >= k)
        Recommended item indices, best first (``-1`` = empty slot).
    relevant : csr_matrix, shape (n_users, n_items)
        Relevant test items (stored entries).
    users : ndarray of int, shape (n_users_scored,)
        Row of ``relevant`` for each line of ``rec_items``.
    train : csr_matrix
        Training matrix (item popularity for novelty).
    k : int

    Returns
    -------
    dict with ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``
    (means over users), ``coverage@k`` (share of the catalogue recommended to
    someone) and ``novelty@k`` (mean ``-log2(popularity share)`` of recommended items).
    """
    rec = np.asarray(rec_items)[:, :k]
    n_rel = np.diff(relevant.indptr)[users].astype(np.float64)
    valid = rec >= 0
    lookup = SparseLookup(relevant)
    hits = np.zeros(rec.shape, dtype=bool)
    hits[valid] = lookup(np.broadcast_to(users[:, None], rec.shape)[valid], rec[valid]) > 0
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * disc).sum(axis=1)
    idcg = np.cumsum(disc)[np.minimum(n_rel, k).astype(np.int64) - 1]
    prec_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (prec_at * hits).sum(axis=1) / np.minimum(n_rel, k)
    n_hits = hits.sum(axis=1)
    pop = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
    share = np.maximum(pop, 1.0) / max(train.shape[0], 1)
    novelty = float(np.mean(-np.log2(share[rec[valid]]))) if valid.any() else 0.0
    return {
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / n_rel)),
        f"ndcg@{k}": float(np.mean(dcg / idcg)),
        f"map@{k}": float(np.mean(ap)),
        f"hit_rate@{k}": float(np.mean(n_hits > 0)),
        f"coverage@{k}": float(len(np.unique(rec[valid])) / train.shape[1]),
        f"novelty@{k}": novelty,
        "n_users": len(users),
    }


def evaluate_topn(model, train, test_relevant, k: int = 10, users=None, fit: bool = True) -> dict:
    """Fit ``model`` on ``train`` (unless ``fit=False``) and score its top-``k`` lists.

    Parameters
    ----------
    model : recommender with ``fit(train)`` and
        ``recommend(users, n, exclude_seen=True) -> (items, scores)``
    train : csr_matrix, shape (n_users, n_items)
    test_relevant : csr_matrix, shape (n_users, n_items)
    k : int
    users : array-like of int, optional
        Users to score; default those with at least one relevant item.
    fit : bool

    Returns
    -------
    dict
        Metrics from :func:`topn_metrics` plus ``fit_seconds`` and ``recommend_seconds``.
    """
    train = sp.csr_matrix(train)
    relevant = sp.csr_matrix(test_relevant)
    if users is None:
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    users = np.asarray(users, dtype=np.int64)
    t0 = time.perf_counter()
    if fit:
        model.fit(train)
    t1 = time.perf_counter()
    items, _ = model.recommend(users, n=k, exclude_seen=True)
    t2 = time.perf_counter()
    out = topn_metrics(items, relevant, users, train, k=k)
    out.update(fit_seconds=t1 - t0, recommend_seconds=t2 - t1)
    return out


# -- peers (scikit-learn-style wrappers around `implicit`) ----------------------------


class ImplicitPeer:
    """Adapter giving an ``implicit`` model this engine's ``fit``/``recommend`` API.

    Only for side-by-side benchmarks; ``implicit`` is a test/benchmark dependency and is
    imported lazily.

    Parameters
    ----------
    kind : {"cosine", "bm25", "als"}
    params : dict, optional
        Passed to the ``implicit`` constructor.
    """

    def __init__(self, kind: str, params: dict | None = None, n_threads: int | None = None):
        self.kind = kind
        self.params = params
        self.n_threads = n_threads

    def fit(self, user_items):
        from threadpoolctl import threadpool_limits

        params = dict(self.params or {})
        if self.kind == "cosine":
            from implicit.nearest_neighbours import CosineRecommender as cls
        elif self.kind == "bm25":
            from implicit.nearest_neighbours import BM25Recommender as cls
        elif self.kind == "als":
            from implicit.cpu.als import AlternatingLeastSquares as cls

            params.setdefault("random_state", 0)
        else:
            raise ValueError(f"unknown implicit model {self.kind!r}")
        self.user_items_ = sp.csr_matrix(user_items, dtype=np.float32)
        with threadpool_limits(1, "blas"):  # implicit's own advice for its ALS
            self.model_ = cls(**params)
            if hasattr(self.model_, "show_progress"):
                pass
            self.model_.fit(self.user_items_, show_progress=False)
        return self

    def recommend(self, user_idx, n=10, exclude_seen=True, **_):
        users = np.asarray(user_idx, dtype=np.int64)
        ids, scores = self.model_.recommend(
            users, self.user_items_[users], N=n, filter_already_liked_items=exclude_seen
        )
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        bad = ~np.isfinite(scores) | (scores <= -1e30)
        ids[bad] = -1
        if ids.shape[1] < n:
            ids = np.hstack([ids, np.full((len(users), n - ids.shape[1]), -1)])
        return ids, scores


# -- runner -----------------------------------------------------------------------------

PROTOCOLS = ("ml-100k", "online-retail")


#: Start of the validation month carved from Online Retail's training period.
RETAIL_VALIDATION_DATE = "2011-10-01"


def load_protocol(name: str, datasets_dir, half_life_days="default", validation: bool = False) -> TopNSplit:
    """Build the split of a named protocol from the datasets folder.

    ``half_life_days`` applies to implicit data only (Online Retail): ``"default"``
    uses the product's ``DEFAULT_HALF_LIFE_DAYS``, ``None`` sums raw line counts.
    MovieLens ratings are explicit and used as they are.

    ``validation=True`` builds the same protocol inside the training data only (for
    choosing parameters): on ML-100K each user's last 10 training ratings (the 10
    before the test ones), on Online Retail October 2011 after a training period
    ending on 2011-10-01.
    """
    from . import DEFAULT_HALF_LIFE_DAYS

    d = Path(datasets_dir)
    if half_life_days == "default":
        half_life_days = DEFAULT_HALF_LIFE_DAYS
    if name == "ml-100k":
        return movielens_topn_split(d / "ml-100k", drop_last=10 if validation else 0)
    if name == "online-retail":
        csv = d / "online-retail" / "online_retail.csv.gz"
        if validation:
            return online_retail_topn_split(
                csv, split_date=RETAIL_VALIDATION_DATE, half_life_days=half_life_days, until=RETAIL_SPLIT_DATE
            )
        return online_retail_topn_split(csv, half_life_days=half_life_days)
    raise ValueError(f"unknown protocol {name!r}; expected one of {PROTOCOLS}")


def algorithm_registry() -> dict:
    """Named factories of the algorithms ``run_protocol`` knows."""
    from . import (
        ItemKNN,
        Popularity,
        PureSVD,
        RP3beta,
        UserKNN,
        blend_ranker,
        default_recommender,
        item_based_ranker,
        user_based_ranker,
    )

    return {
        "default": default_recommender,
        "user_ranker": user_based_ranker,
        "item_ranker": item_based_ranker,
        "blend": blend_ranker,
        "blend_user_default": lambda: blend_ranker(("user_based", "default")),
        "blend_default_rp3beta": lambda: blend_ranker(("default", "rp3beta")),
        "popularity": lambda: Popularity(),
        "user_knn": lambda: UserKNN(k=40, similarity="cosine", neighbourhood="global"),
        "item_knn": lambda: ItemKNN(k=100, similarity="cosine"),
        "rp3beta": lambda: RP3beta(alpha=0.5, beta=0.5, k=100, binary=False, value_transform="log1p"),
        "pure_svd_plain": lambda: PureSVD(factors=64, beta=0.0),
        "implicit_cosine": lambda: ImplicitPeer("cosine"),
        "implicit_bm25": lambda: ImplicitPeer("bm25"),
        "implicit_als": lambda: ImplicitPeer("als", {"factors": 64}),
    }


DEFAULT_ALGORITHMS = ("default", "popularity", "implicit_cosine", "implicit_bm25", "implicit_als")


def run_protocol(name: str, datasets_dir, algorithms=DEFAULT_ALGORITHMS, k: int = 10, half_life_days="default") -> dict:
    """Evaluate algorithms on a named protocol.

    Parameters
    ----------
    name : {"ml-100k", "online-retail"}
    datasets_dir : path
        Folder holding ``ml-100k/`` and ``online-retail/online_retail.csv.gz``.
    algorithms : iterable of str, or dict of name -> factory
        Names from :func:`algorithm_registry` or factories returning unfitted models.
    k : int
    half_life_days : "default", float or None
        Time decay of implicit events (see :func:`load_protocol`).

    Returns
    -------
    dict (JSON-serialisable)
        ``{"protocol", "k", "n_users", "n_items", "n_train", "n_users_scored",
        "results": {algorithm: metrics}}``
    """
    split = load_protocol(name, datasets_dir, half_life_days=half_life_days)
    registry = algorithm_registry()
    if isinstance(algorithms, dict):
        factories = dict(algorithms)
    else:
        factories = {a: registry[a] for a in algorithms}
    results = {}
    for algo, factory in factories.items():
        results[algo] = evaluate_topn(factory(), split.train, split.relevant, k=k, users=split.users)
    return {
        "protocol": name,
        "k": k,
        "half_life_days": split.info.get("half_life_days"),
        "n_users": int(split.train.shape[0]),
        "n_items": int(split.train.shape[1]),
        "n_train": int(split.train.nnz),
        "n_users_scored": len(split.users),
        "results": results,
    }


def format_table(result: dict, metrics=None) -> str:
    """A plain-text table of a :func:`run_protocol` result."""
    k = result["k"]
    metrics = metrics or [
        f"ndcg@{k}",
        f"precision@{k}",
        f"recall@{k}",
        f"map@{k}",
        f"hit_rate@{k}",
        f"coverage@{k}",
        f"novelty@{k}",
        "fit_seconds",
        "recommend_seconds",
    ]
    names = list(result["results"])
    width = max([len("algorithm")] + [len(n) for n in names])
    head = f"{'algorithm':<{width}} " + " ".join(f"{m:>14}" for m in metrics)
    lines = [
        f"{result['protocol']}: {result['n_users_scored']} users scored, {result['n_items']} items",
        head,
        "-" * len(head),
    ]
    for n in names:
        row = result["results"][n]
        lines.append(f"{n:<{width}} " + " ".join(f"{row.get(m, float('nan')):>14.4f}" for m in metrics))
    return "\n".join(lines)
