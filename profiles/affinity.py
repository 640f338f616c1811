"""Category affinity: each customer's probability of buying from a category within the horizon.

Pure numpy/pandas/scipy/scikit-learn, no Django. The profiles step feeds it chunk by chunk of
customers (``AffinityBuilder.add``) and fits once at the end (``AffinityBuilder.finish``);
``affinity`` does both for one events frame.

Definitions (``at`` is a moment; only events with ``occurred_at <= at`` are used for features):

candidates
    For each customer, the ``k`` categories with the highest interest share, plus the ``k`` with
    the highest recommender score (below), without repeats: at most ``2k`` per customer. A
    customer with no event in a category before ``at`` has no candidates and gets ``{}``.
interest
    The share of the customer's decayed, weighted events in the category (the profiles'
    ``interests``: the same weights and half-life).
recommender score
    Category-level item-based collaborative filtering that cannot see the future: from the
    customers' purchases before ``at``, ``P(j | i) = buyers of i and j / (buyers of i + 5)`` (a
    co-purchase conditional probability, shrunk for rarely bought categories, ``i != j``), each
    ``i`` keeping its ``NEIGHBOURS`` (20) largest; a customer's score for ``j`` is their interest
    vector times that table.
features of a (customer, category) row
    interest; engaged (any weighted event in the category); log days since the last such event
    (730 when none); log(1 + purchases in the category); the category's share of the customer's
    purchases (both over the ``window_days``, 365, before the moment, so the training moment and
    now measure the same span); the recommender score; the category's share of all buyers; the customer's
    log(1 + orders), log days since the last purchase and since the last event (730 when none).
training (a time split)
    Features as of ``now - horizon``; the label is whether the customer bought from the category in
    ``(now - horizon, now]``. Customers are sampled (a fixed hash of their id) so that at most
    ``TRAIN_CUSTOMERS`` take part, and at most ``MAX_TRAIN_ROWS`` rows are used. Customers are
    split 70/15/15: a logistic regression on standardised features is fitted on the first part; its
    expected calibration error (ECE, 10 equal-width bins) is measured on the second, and when it
    exceeds ``ECE_TOLERANCE`` an isotonic map fitted on the second part is kept if it lowers the
    ECE on the third; AUC, Brier score and ECE are reported on the third (with the past-share
    baseline's AUC on the same rows). Fewer than ``MIN_CLASS_ROWS`` positive or negative rows: no
    model, every dict empty, and the counts say why.
applying
    Features as of ``now`` (the recommender table relearnt from purchases up to ``now``), the
    fitted model, probabilities rounded to 4 places.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.preprocessing import StandardScaler

__all__ = [
    "FEATURES",
    "K_CANDIDATES",
    "AffinityBuilder",
    "AffinityModel",
    "CutFeatures",
    "affinity",
    "candidate_rows",
    "co_purchases",
    "cut_features",
    "expected_calibration_error",
    "purchase_labels",
    "reliability_table",
]

K_CANDIDATES = 5
TRAIN_CUSTOMERS = 100_000
MAX_TRAIN_ROWS = 300_000
MIN_CLASS_ROWS = 50
ECE_TOLERANCE = 0.02
SHRINK = 5.0
NEIGHBOURS = 20
NO_EVENT_DAYS = 730.0
FEATURES = (
    "interest",
    "engaged",
    "log_days_since_category",
    "log_purchases_in_category",
    "past_share",
    "recommender_score",
    "category_buyer_share",
    "log_orders",
    "log_days_since_purchase",
    "log_days_since_event",
)

_NS_PER_DAY = 86_400 * 10**9
_REQUIRED = ("customer_id", "type", "value", "occurred_at", "category")


def _ns(moment) -> int:
    ts = pd.Timestamp(moment)
    if ts.tzinfo is None:
        raise ValueError("the moment (now / at) must be timezone-aware")
    return ts.tz_convert("UTC").value


def _times(events: pd.DataFrame) -> np.ndarray:
    col = events["occurred_at"]
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        raise ValueError("events' occurred_at must be a timezone-aware datetime column")
    return col.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").array.asi8


@dataclass
class _Events:
    """The events as arrays, decoded once per chunk and shared by both moments: ``ids`` (the
    customers, sorted) and per event its customer's position in them (``row``), time (ns), category
    position (-1 for none), weight (the profiles' interest weights, a rating weighing its own
    value), purchase flag, and each purchase's order (a code, or -1 - its UTC day)."""

    ids: np.ndarray
    row: np.ndarray
    t: np.ndarray
    code: np.ndarray
    weight: np.ndarray
    purchase: np.ndarray
    order: np.ndarray

    def take(self, keep: np.ndarray) -> _Events:
        fields = ("row", "t", "code", "weight", "purchase", "order")
        return _Events(self.ids, *(getattr(self, f)[keep] for f in fields))


def _positions(cid: np.ndarray, customer_ids: Iterable[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """The customers (sorted: those given and those with events) and each event's position among them."""
    if customer_ids is not None:
        ids = np.unique(np.asarray(list(customer_ids) if not isinstance(customer_ids, np.ndarray) else customer_ids))
        ids = ids.astype(np.int64)
        row = np.searchsorted(ids, cid)
        if len(ids) and (row < len(ids)).all() and (ids[np.minimum(row, len(ids) - 1)] == cid).all():
            return ids, row  # the usual case in the profiles step: the chunk's customers
        ids = np.union1d(ids, cid)
        return ids, np.searchsorted(ids, cid)
    ids, row = np.unique(cid, return_inverse=True)
    return ids, row.astype(np.int64)


def _prepare(
    events: pd.DataFrame,
    categories: pd.Index,
    weights: Mapping[str, float | str | None],
    customer_ids: Iterable[int] | None = None,
) -> _Events:
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events lack column(s): {', '.join(missing)}")
    t = _times(events)
    etype = pd.Categorical(events["type"])
    names = list(etype.categories)
    table = np.array(
        [0.0 if weights.get(name) in (None, "explicit") else float(weights[name]) for name in names] + [0.0]
    )
    codes = etype.codes.astype(np.int64)
    weight = table[codes]  # code -1 (no type) takes the last entry, 0
    if "rating" in names and weights.get("rating", "explicit") in (None, "explicit"):
        rated = codes == names.index("rating")
        weight[rated] = np.nan_to_num(events["value"].to_numpy(dtype=float)[rated])
    purchase = codes == names.index("purchase") if "purchase" in names else np.zeros(len(t), dtype=bool)
    order = -1 - t // _NS_PER_DAY
    if "order_id" in events.columns and purchase.any():
        oid, _ = pd.factorize(events["order_id"].to_numpy(dtype=object)[purchase], use_na_sentinel=True)
        order[purchase] = np.where(oid >= 0, oid, order[purchase])
    ids, row = _positions(events["customer_id"].to_numpy(dtype=np.int64), customer_ids)
    return _Events(
        ids=ids,
        row=row,
        t=t,
        code=_category_codes(events, categories),
        weight=weight,
        purchase=purchase,
        order=order,
    )


@dataclass
class CutFeatures:
    """What is known of some customers as of a moment.

    ``ids`` (n,) sorted customer ids (everyone in the events given, and the customer ids given,
    whether or not they had events before the moment); the matrices are (n, m) over the category vocabulary:
    ``interest`` (shares), ``days`` (days since the last weighted event in the category, stored as
    days + 1 so zero stays visible), ``purchases`` (purchase events in the category); per customer
    (n,): ``orders``, ``days_since_purchase`` and ``days_since_event`` (NaN when none).
    """

    ids: np.ndarray
    interest: sp.csr_matrix
    days: sp.csr_matrix
    purchases: sp.csr_matrix
    orders: np.ndarray
    days_since_purchase: np.ndarray
    days_since_event: np.ndarray


def _category_codes(events: pd.DataFrame, categories: pd.Index) -> np.ndarray:
    """Each event's category as a position in ``categories``; -1 for none or unknown."""
    codes, uniques = pd.factorize(events["category"], use_na_sentinel=True)
    if not len(uniques):
        return np.full(len(codes), -1, dtype=np.int64)
    lookup = categories.get_indexer(pd.Index(uniques).astype(str))
    return np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1).astype(np.int64)


def cut_features(
    events: pd.DataFrame,
    *,
    at,
    categories: pd.Index,
    weights: Mapping[str, float | str | None],
    half_life_days: float,
    window_days: float = 365.0,
    customer_ids: Iterable[int] | None = None,
) -> CutFeatures:
    """The per (customer, category) and per customer facts as of ``at`` (events after it ignored;
    purchases and orders counted in the ``window_days`` before it, so the figures as of the training
    cut and as of now measure the same span)."""
    ev = _prepare(events, categories, weights, customer_ids)
    return _cut(ev, at_ns=_ns(at), m=len(categories), half_life_days=half_life_days, window_days=window_days)


def _cut(ev: _Events, *, at_ns: int, m: int, half_life_days: float, window_days: float) -> CutFeatures:
    ev = ev.take(ev.t <= at_ns)
    ids, row = ev.ids, ev.row
    n = len(ids)
    age_days = (at_ns - ev.t) / _NS_PER_DAY
    is_p = ev.purchase & (age_days < window_days)

    # per (customer, category)
    engaged = (ev.weight > 0) & (ev.code >= 0)
    contrib = ev.weight[engaged] * np.power(0.5, age_days[engaged] / float(half_life_days))
    key = row[engaged] * m + ev.code[engaged]
    pairs = pd.DataFrame({"k": key, "w": contrib, "d": age_days[engaged]}).groupby("k", sort=True)
    sums = pairs["w"].sum()
    keys = sums.index.to_numpy()
    prow, pcol = keys // max(m, 1), keys % max(m, 1)
    totals = np.bincount(prow, weights=sums.to_numpy(), minlength=n)
    share = sums.to_numpy() / totals[prow]
    interest = sp.csr_matrix((share, (prow, pcol)), shape=(n, m))
    days = sp.csr_matrix((pairs["d"].min().to_numpy() + 1.0, (prow, pcol)), shape=(n, m))
    bought = is_p & (ev.code >= 0)
    purchases = sp.csr_matrix((np.ones(int(bought.sum())), (row[bought], ev.code[bought])), shape=(n, m))
    purchases.sum_duplicates()

    # per customer
    orders = np.zeros(n)
    last_p = np.full(n, np.nan)
    if is_p.any():
        distinct = np.unique(row[is_p] * (1 << 32) + (ev.order[is_p] + (1 << 31)))
        orders = np.bincount(distinct >> 32, minlength=n).astype(float)
        last_p = _least(row[is_p], age_days[is_p], n)
    last_e = _least(row, age_days, n)
    return CutFeatures(
        ids=ids,
        interest=interest.astype(np.float32),
        days=days.astype(np.float32),
        purchases=purchases.tocsr().astype(np.float32),
        orders=orders.astype(np.float32),
        days_since_purchase=last_p.astype(np.float32),
        days_since_event=last_e.astype(np.float32),
    )


def _least(row: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """The smallest value per row position (NaN where none)."""
    out = np.full(n, np.nan)
    if len(row):
        least = pd.Series(value).groupby(row).min()
        out[least.index.to_numpy()] = least.to_numpy()
    return out


def co_purchases(cut: CutFeatures) -> tuple[sp.csr_matrix, int]:
    """Buyers of each pair of categories (m, m), and the number of buyers: sums over chunks."""
    return _co(cut.purchases)


def _co(purchases: sp.csr_matrix) -> tuple[sp.csr_matrix, int]:
    bought = (purchases > 0).astype(np.float64)
    n_buyers = int((np.diff(bought.indptr) > 0).sum())
    return (bought.T @ bought).tocsr(), n_buyers


def _purchases_before(ev: _Events, *, at_ns: int, window_days: float, m: int) -> sp.csr_matrix:
    """(customers, m) purchases in the window before ``at``: the co-purchase table's input, cheap
    enough to take from every customer when only a sample gets features."""
    sel = ev.purchase & (ev.t <= at_ns) & (ev.code >= 0) & ((at_ns - ev.t) < window_days * _NS_PER_DAY)
    return sp.csr_matrix((np.ones(int(sel.sum())), (ev.row[sel], ev.code[sel])), shape=(len(ev.ids), m))


def _conditional(co: sp.csr_matrix) -> sp.csr_matrix:
    """P(j | i) from buyer counts, shrunk towards 0 for rarely bought categories; no diagonal."""
    diag = co.diagonal()
    table = sp.diags(1.0 / (diag + SHRINK)) @ co
    table = table.tolil()
    table.setdiag(0.0)
    table = table.tocsr()
    table.eliminate_zeros()
    # like item-kNN, each category keeps its NEIGHBOURS strongest successors, so a customer's scores
    # stay sparse when the catalogue has thousands of categories
    rows, cols = _top_k(table, NEIGHBOURS)
    values = np.asarray(table[rows, cols]).ravel() if len(rows) else np.zeros(0)
    return sp.csr_matrix((values, (rows, cols)), shape=table.shape, dtype=np.float32)


def purchase_labels(
    events: pd.DataFrame, *, start, end, categories: pd.Index, customer_ids: np.ndarray
) -> sp.csr_matrix:
    """(n, m) 1 where the customer bought from the category in ``(start, end]``."""
    customer_ids = np.asarray(customer_ids, dtype=np.int64)
    ev = _prepare(events, categories, {})
    lab = _labels(ev, start_ns=_ns(start), end_ns=_ns(end), m=len(categories))
    # from the events' customers to those asked for
    out = sp.lil_matrix((len(customer_ids), len(categories)))
    pos = np.searchsorted(customer_ids, ev.ids)
    known = (pos < len(customer_ids)) & (customer_ids[np.minimum(pos, max(len(customer_ids) - 1, 0))] == ev.ids)
    if len(customer_ids) and known.any():
        out[pos[known]] = lab[np.flatnonzero(known)]
    return out.tocsr()


def _labels(ev: _Events, *, start_ns: int, end_ns: int, m: int) -> sp.csr_matrix:
    """(len(ev.ids), m) 1 where the customer bought from the category in ``(start, end]``."""
    sel = ev.purchase & (ev.t > start_ns) & (ev.t <= end_ns) & (ev.code >= 0)
    lab = sp.csr_matrix((np.ones(int(sel.sum())), (ev.row[sel], ev.code[sel])), shape=(len(ev.ids), m))
    lab.sum_duplicates()
    lab.data[:] = 1.0
    return lab


def _top_k(matrix: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of each row's k largest positive entries (ties broken by column)."""
    matrix = matrix.tocsr()
    matrix.sum_duplicates()  # canonical: columns sorted within each row
    counts = np.diff(matrix.indptr)
    r = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), counts)
    c, v = matrix.indices.astype(np.int64), matrix.data.astype(np.float64)
    positive = v > 0
    short = np.repeat(counts <= k, counts) & positive  # rows with at most k entries keep them all
    long = ~short & positive
    if long.any():
        rl, cl, vl = r[long], c[long], v[long]
        # one sort key: the row, then the value downwards (scaled into [0, 0.5)); stable keeps columns in order
        scaled = vl / (2.0 * vl.max() * (1 + 1e-9))
        order = np.argsort(rl - scaled, kind="stable")
        rl, cl = rl[order], cl[order]
        rank = np.arange(len(rl)) - np.searchsorted(rl, rl, side="left")
        keep = rank < k
        r = np.concatenate([r[short], rl[keep]])
        c = np.concatenate([c[short], cl[keep]])
    else:
        r, c = r[short], c[short]
    return r, c


def _lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """matrix[rows, cols] as a flat array (0 where not stored), without densifying."""
    return np.asarray(matrix[rows, cols]).ravel().astype(np.float64) if len(rows) else np.zeros(0)


def candidate_rows(
    cut: CutFeatures, *, table: sp.csr_matrix, buyer_share: np.ndarray, k: int = K_CANDIDATES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer's candidate categories and their features.

    Returns (rows, cols, X): positions in ``cut.ids`` and in the vocabulary (n_rows,), and the
    feature matrix (n_rows, len(FEATURES)) in the order of ``FEATURES``.
    """
    m = cut.interest.shape[1]
    if m == 0 or cut.interest.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros((0, len(FEATURES)), np.float32)
    score = (cut.interest.astype(np.float64) @ table.astype(np.float64)).tocsr()
    r1, c1 = _top_k(cut.interest, k)
    r2, c2 = _top_k(score, k)
    # the union of both lists, sorted by customer then category (a sparse matrix does it in linear time)
    both = sp.csr_matrix(
        (np.ones(len(r1) + len(r2), dtype=np.int8), (np.concatenate([r1, r2]), np.concatenate([c1, c2]))),
        shape=cut.interest.shape,
    )
    both.sum_duplicates()
    rows = np.repeat(np.arange(both.shape[0], dtype=np.int64), np.diff(both.indptr))
    cols = both.indices.astype(np.int64)
    interest = _lookup(cut.interest, rows, cols)
    days = _lookup(cut.days, rows, cols)
    engaged = days > 0
    purchases = _lookup(cut.purchases, rows, cols)
    all_purchases = np.asarray(cut.purchases.sum(axis=1)).ravel()[rows]
    past_share = np.divide(purchases, all_purchases, out=np.zeros(len(rows)), where=all_purchases > 0)
    since_p = np.nan_to_num(cut.days_since_purchase[rows].astype(float), nan=NO_EVENT_DAYS)
    since_e = np.nan_to_num(cut.days_since_event[rows].astype(float), nan=NO_EVENT_DAYS)
    X = np.column_stack(
        [
            interest,
            engaged.astype(float),
            np.log1p(np.where(engaged, days - 1.0, NO_EVENT_DAYS)),
            np.log1p(purchases),
            past_share,
            _lookup(score, rows, cols),
            buyer_share[cols],
            np.log1p(cut.orders[rows].astype(float)),
            np.log1p(since_p),
            np.log1p(since_e),
        ]
    ).astype(np.float32)
    return rows, cols, X


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean prediction| over equal-width bins, weighted by rows."""
    table = reliability_table(y, p, bins=bins)
    n = sum(b["rows"] for b in table)
    return float(sum(b["rows"] * abs(b["observed"] - b["predicted"]) for b in table) / max(n, 1))


def reliability_table(y: np.ndarray, p: np.ndarray, *, bins: int = 10, by: str = "width") -> list[dict]:
    """Rows, mean prediction and observed rate per bin (equal width, or deciles with by="decile")."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if by == "decile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1))) if len(p) else np.array([0.0, 1.0])
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    else:
        which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in np.unique(which):
        sel = which == b
        out.append(
            {
                "rows": int(sel.sum()),
                "predicted": round(float(p[sel].mean()), 4),
                "observed": round(float(y[sel].mean()), 4),
            }
        )
    return out


class AffinityModel:
    """Standardised features → logistic regression (→ isotonic map when calibration needs it).

    Parameters
    ----------
    random_state : int
        Seeds the customer split and the row sampling.
    """

    def __init__(self, *, random_state: int = 0, max_rows: int = MAX_TRAIN_ROWS):
        self.random_state = random_state
        self.max_rows = max_rows

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> AffinityModel:
        """X (n_rows, n_features), y (n_rows,) 0/1, groups (n_rows,) customer ids (split by customer)."""
        rng = np.random.default_rng(self.random_state)
        if len(y) > self.max_rows:
            pick = np.sort(rng.choice(len(y), self.max_rows, replace=False))
            X, y, groups = X[pick], y[pick], groups[pick]
        part = (_hash(groups, salt=self.random_state + 1) * 20).astype(int)  # 0..19
        fit, calib, test = part < 14, (part >= 14) & (part < 17), part >= 17
        if len(np.unique(y[fit])) < 2:
            raise ValueError("the training part holds only one class (all bought or none bought)")
        self.scaler_ = StandardScaler().fit(X[fit])
        self.logit_ = LogisticRegression(max_iter=1000).fit(self.scaler_.transform(X[fit]), y[fit])
        self.isotonic_ = None
        raw_calib = self._raw(X[calib])
        self.ece_raw_ = expected_calibration_error(y[calib], raw_calib) if calib.any() else float("nan")
        if calib.any() and test.any() and self.ece_raw_ > ECE_TOLERANCE and 0 < y[calib].sum() < calib.sum():
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw_calib, y[calib])
            raw_test = self._raw(X[test])
            if expected_calibration_error(y[test], iso.predict(raw_test)) < expected_calibration_error(
                y[test], raw_test
            ):
                self.isotonic_ = iso
        self.rows_ = {"fit": int(fit.sum()), "calibration": int(calib.sum()), "test": int(test.sum())}
        self.X_test_, self.y_test_ = X[test], y[test]
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        if not len(X):
            return np.zeros(0)
        return self.logit_.predict_proba(self.scaler_.transform(X))[:, 1]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self._raw(X)
        return self.isotonic_.predict(p) if self.isotonic_ is not None and len(p) else p

    def report(self) -> dict:
        """Held-out figures: AUC of the model and of the past-share and interest baselines, Brier, ECE."""
        y, X = self.y_test_, self.X_test_
        out = {
            "rows": self.rows_,
            "calibration": "isotonic" if self.isotonic_ is not None else "none (logistic as fitted)",
            "ece_before_correction": round(self.ece_raw_, 4),
        }
        if len(y) and 0 < y.sum() < len(y):
            p = self.predict_proba(X)
            out.update(
                {
                    "auc": round(float(roc_auc_score(y, p)), 4),
                    "auc_past_share": round(float(roc_auc_score(y, X[:, FEATURES.index("past_share")])), 4),
                    "auc_interest": round(float(roc_auc_score(y, X[:, FEATURES.index("interest")])), 4),
                    "brier": round(float(brier_score_loss(y, p)), 4),
                    "ece": round(expected_calibration_error(y, p), 4),
                    "positive_rate": round(float(y.mean()), 4),
                }
            )
        return out


def _hash(ids: np.ndarray, *, salt: int = 0) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per id (the same id, the same number, every run)."""
    x = (np.asarray(ids, dtype=np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


class AffinityBuilder:
    """Collects chunks of customers' events, then fits once and predicts for all.

    Parameters
    ----------
    categories : the category vocabulary (every category that may appear).
    now : tz-aware moment; horizon_days : the prediction horizon (training cut = now - horizon).
    weights, half_life_days : the profiles' interest weights and decay.
    n_customers : how many customers will be added in all (sets the training sample's rate).
    """

    def __init__(
        self,
        *,
        categories: Iterable[str],
        now,
        horizon_days: float,
        weights: Mapping[str, float | str | None],
        half_life_days: float,
        n_customers: int,
        window_days: float = 365.0,
        k: int = K_CANDIDATES,
        random_state: int = 0,
    ):
        if horizon_days <= 0:
            raise ValueError(f"horizon_days must be positive, got {horizon_days}")
        self.categories = pd.Index(sorted({str(c) for c in categories if c is not None and str(c) != ""}))
        self.now = pd.Timestamp(now)
        _ns(self.now)
        self.cut = self.now - pd.Timedelta(days=float(horizon_days))
        self.horizon_days = horizon_days
        self.weights = dict(weights)
        self.half_life_days = half_life_days
        self.window_days = window_days
        self.k = k
        self.random_state = random_state
        self.train_rate = min(1.0, TRAIN_CUSTOMERS / max(int(n_customers), 1))
        m = len(self.categories)
        self._co = {"train": sp.csr_matrix((m, m)), "apply": sp.csr_matrix((m, m))}
        self._buyers = {"train": 0, "apply": 0}
        self._apply: list[CutFeatures] = []
        self._train: list[tuple[CutFeatures, sp.csr_matrix]] = []
        self.seconds = 0.0

    def add(self, events: pd.DataFrame, customer_ids: Iterable[int] | None = None) -> None:
        """One chunk: every event of each of its customers (events after ``now`` are ignored)."""
        t0 = time.monotonic()
        ev = _prepare(events, self.categories, self.weights, customer_ids)
        m = len(self.categories)
        now_ns, cut_ns = _ns(self.now), _ns(self.cut)
        common = {"m": m, "half_life_days": self.half_life_days, "window_days": self.window_days}
        now_cut = _cut(ev, at_ns=now_ns, **common)
        self._accumulate("apply", now_cut.purchases)
        self._apply.append(now_cut)
        # the co-purchase table learns from every customer; features and labels from the sample
        self._accumulate("train", _purchases_before(ev, at_ns=cut_ns, window_days=self.window_days, m=m))
        sampled = _hash(ev.ids, salt=self.random_state) < self.train_rate
        sample = ev.take(sampled[ev.row])
        train_cut = _cut(sample, at_ns=cut_ns, **common)
        labels = _labels(sample, start_ns=cut_ns, end_ns=now_ns, m=m)
        self._train.append((train_cut, labels))
        self.seconds += time.monotonic() - t0

    def _accumulate(self, which: str, purchases: sp.csr_matrix) -> None:
        co, buyers = _co(purchases)
        self._co[which] = self._co[which] + co
        self._buyers[which] += buyers

    def _table(self, which: str) -> tuple[sp.csr_matrix, np.ndarray]:
        co = self._co[which]
        return _conditional(co), co.diagonal() / max(self._buyers[which], 1)

    def finish(self) -> tuple[pd.Series, dict]:
        """Each customer's ``{category: probability}`` (indexed by customer id), and the counts."""
        t0 = time.monotonic()
        all_ids = np.concatenate([c.ids for c in self._apply]) if self._apply else np.zeros(0, dtype=np.int64)
        empty = pd.Series([{} for _ in range(len(all_ids))], index=all_ids, dtype=object)
        counts: dict = {"candidates_per_customer": 2 * self.k, "horizon_days": self.horizon_days}
        table, share = self._table("train")
        Xs, ys, gs = [], [], []
        for cut, labels in self._train:
            rows, cols, X = candidate_rows(cut, table=table, buyer_share=share, k=self.k)
            Xs.append(X)
            ys.append(_lookup(labels, rows, cols) > 0)
            gs.append(cut.ids[rows])
        X = np.concatenate(Xs) if Xs else np.zeros((0, len(FEATURES)), dtype=np.float32)
        y = np.concatenate(ys).astype(int) if ys else np.zeros(0, dtype=int)
        groups = np.concatenate(gs) if gs else np.zeros(0, dtype=np.int64)
        counts["training_rows"] = len(y)
        counts["training_positives"] = int(y.sum())
        if len(y) == 0 or y.sum() < MIN_CLASS_ROWS or len(y) - y.sum() < MIN_CLASS_ROWS:
            counts["model"] = "none"
            counts["reason"] = (
                f"too little training data: {int(y.sum())} purchases from candidate categories in the "
                f"{self.horizon_days:g} days before now, among {len(y)} candidate rows "
                f"(at least {MIN_CLASS_ROWS} bought and {MIN_CLASS_ROWS} not bought are needed)"
            )
            counts["customers_with_affinity"] = 0
            self.seconds += time.monotonic() - t0
            counts["seconds"] = round(self.seconds, 2)
            return empty, counts
        try:
            model = AffinityModel(random_state=self.random_state).fit(X, y, groups)
        except ValueError as exc:
            counts.update(model="none", reason=f"no model: {exc}", customers_with_affinity=0)
            self.seconds += time.monotonic() - t0
            counts["seconds"] = round(self.seconds, 2)
            return empty, counts
        del X, y, groups, Xs, ys, gs
        counts["model"] = "logistic regression"
        counts["held_out"] = model.report()
        table, share = self._table("apply")
        values = empty.to_numpy(copy=True)
        names = np.asarray(self.categories, dtype=object)
        offset = covered = predicted = 0
        for cut in self._apply:
            rows, cols, X = candidate_rows(cut, table=table, buyer_share=share, k=self.k)
            if len(rows):
                p = np.round(model.predict_proba(X), 4)
                order = np.lexsort((cols, -p, rows))  # by customer, most likely first
                starts, dicts = _as_dicts(rows[order], names[cols[order]].tolist(), p[order].tolist())
                values[offset + starts] = dicts
                covered += len(dicts)
                predicted += len(rows)
            offset += len(cut.ids)
        counts["customers_with_affinity"] = covered
        counts["rows_predicted"] = predicted
        self.seconds += time.monotonic() - t0
        counts["seconds"] = round(self.seconds, 2)
        return pd.Series(values, index=all_ids, dtype=object), counts


def _as_dicts(rows: np.ndarray, names: list, ps: list) -> tuple[np.ndarray, list[dict]]:
    """Rows sorted by customer become one dict per customer (JSON needs a dict each): the customers'
    positions and their dicts."""
    bounds = np.flatnonzero(np.diff(rows)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(rows)]])
    dicts = [dict(zip(names[s:e], ps[s:e], strict=True)) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    return rows[starts], dicts


def affinity(
    events: pd.DataFrame,
    *,
    now,
    horizon_days: float = 90,
    weights: Mapping[str, float | str | None],
    half_life_days: float = 60.0,
    categories: Iterable[str] | None = None,
    customer_ids: Iterable[int] | None = None,
    k: int = K_CANDIDATES,
    random_state: int = 0,
) -> tuple[pd.Series, dict]:
    """``AffinityBuilder`` on one frame: each customer's ``{category: probability}`` and the counts."""
    if categories is None:
        categories = events["category"].dropna().astype(str).unique()
    ids = np.unique(events["customer_id"].to_numpy(dtype=np.int64))
    builder = AffinityBuilder(
        categories=categories,
        now=now,
        horizon_days=horizon_days,
        weights=weights,
        half_life_days=half_life_days,
        n_customers=len(ids),
        k=k,
        random_state=random_state,
    )
    builder.add(events, customer_ids=customer_ids)
    return builder.finish()
