"""Customer profile features from behaviour events: RFM, interests, price band, lifecycle.

Pure pandas/numpy, no Django. Two steps:

``compute_features(events, now=...)``
    Per customer, from that customer's events only, so it can run on any subset of
    customers (all the events of each customer in the subset) and the results be
    concatenated: the Django service processes the population in bounded memory,
    chunk by chunk. Only ``price_cuts`` describes the population; pass the catalogue's
    (see ``catalogue_price_cuts``) so every chunk uses the same cuts.

``score_rfm(features)``
    The population step: R, F and M scores 1-5 by quintile over all customers at once
    (it needs only three columns of the concatenated features, which are small).

Definitions (all times UTC; "the window" is ``now - window_days < occurred_at <= now``;
events after ``now`` are ignored):

order
    A purchase event's ``order_id`` (a column of that name, e.g. lifted from the event
    context by the caller) when present; otherwise all purchases of a customer on the same
    UTC calendar day form one order.
recency_days
    Days (fractional) from the last purchase, over all given history, to ``now``; null if
    the customer never purchased.
frequency
    Distinct orders in the window.
monetary
    Purchase amounts minus return amounts in the window. A purchase or return without an
    ``amount`` counts ``value`` (quantity, default 1) x ``item_price``, or 0 if that is
    unknown too.
avg_order_value
    ``monetary / frequency``; null when ``frequency`` is 0.
interests
    ``{category: share}`` over all history: each event on an item with a category adds
    ``weights[type] * 0.5 ** (age_days / half_life_days)``; a rating adds its own value
    (1-5) when ``weights["rating"]`` is ``"explicit"``/``None``. Non-positive contributions
    are dropped; shares sum to 1; ``{}`` if nothing counts.
top_categories
    The (up to) three categories with the largest share, ties by name.
median_price, price_band
    Median ``item_price`` over the customer's view, click, add_to_cart and purchase events
    in the window; ``"low"`` below ``price_cuts[0]``, ``"high"`` above ``price_cuts[1]``,
    ``"mid"`` otherwise, null without priced events. ``price_cuts`` default: the 1/3 and 2/3
    quantiles of the distinct ``item_price`` values in ``events`` (pass the catalogue's
    instead when computing in chunks).
active_days
    Distinct UTC calendar days with any event in the window (not to be confused with the
    ``active_days`` *parameter*, the lifecycle threshold).
last_seen, first_seen
    Latest / earliest event over all given history.
events_30d
    Events in the last ``recent_days`` (default 30) days.
n_events
    Events in the window.
community_posts, community_comments, community_likes
    ``post``, ``comment`` and ``like`` events in the window.
orders_total, first_purchase_at, last_purchase_at
    Over all given history.
lifecycle
    ``"never-bought"`` without any purchase; ``"new"`` if the first purchase is at most
    ``new_days`` old and the customer has exactly one order in all history; otherwise by
    recency: ``"active"`` (<= ``active_days``), ``"at-risk"`` (<= ``at_risk_days``),
    ``"lapsed"`` (older).

The output is indexed by ``customer_id`` (sorted); ``customer_ids`` adds rows for
customers without events (zeros, nulls and ``"never-bought"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_WEIGHTS", "FEATURE_COLUMNS", "REQUIRED_COLUMNS", "LIFECYCLES",
    "catalogue_price_cuts", "compute_features", "score_rfm",
]

DEFAULT_WEIGHTS: dict[str, float | str] = {
    "view": 1.0, "click": 1.5, "add_to_cart": 3.0, "purchase": 5.0, "favorite": 3.0,
    "like": 2.0, "comment": 2.0, "post": 2.0, "share": 2.5, "search": 0.0,
    "rating": "explicit", "return": 0.0,
}
# ``item_kind`` is part of the input contract but not needed by any feature yet, so not required.
REQUIRED_COLUMNS = ("customer_id", "type", "value", "amount", "occurred_at", "category", "item_price")
LIFECYCLES = ("new", "active", "at-risk", "lapsed", "never-bought")
FEATURE_COLUMNS = (
    "recency_days", "frequency", "monetary", "avg_order_value", "interests", "top_categories",
    "median_price", "price_band", "active_days", "last_seen", "first_seen", "events_30d", "n_events",
    "community_posts", "community_comments", "community_likes", "orders_total",
    "first_purchase_at", "last_purchase_at", "lifecycle",
)

_NS_PER_DAY = 86_400 * 10**9
_PRICE_TYPES = ("view", "click", "add_to_cart", "purchase")


def catalogue_price_cuts(prices: Iterable[float], quantiles: tuple[float, float] = (1 / 3, 2 / 3)) -> tuple[float, float]:
    """The two prices that split a catalogue into low / mid / high thirds (nulls ignored)."""
    arr = pd.Series(list(prices) if not isinstance(prices, (pd.Series, np.ndarray)) else prices, dtype=float).dropna()
    if arr.empty:
        return (np.nan, np.nan)
    low, high = np.quantile(arr.to_numpy(), quantiles)
    return float(low), float(high)


def _now_ns(now: datetime | pd.Timestamp) -> int:
    ts = pd.Timestamp(now)
    if ts.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return ts.tz_convert("UTC").value


def _utc_ns(col: pd.Series) -> np.ndarray:
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        raise ValueError("occurred_at must be a timezone-aware datetime column")
    return col.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").array.asi8


def _to_ts(ns: np.ndarray, present: np.ndarray) -> pd.DatetimeIndex:
    """UTC timestamps from int64 nanoseconds, NaT where not ``present``."""
    raw = np.where(present, ns, np.iinfo(np.int64).min).view("datetime64[ns]")
    return pd.DatetimeIndex(raw).tz_localize("UTC")


def compute_features(
    events: pd.DataFrame,
    *,
    now: datetime | pd.Timestamp,
    window_days: float = 365,
    weights: Mapping[str, float | str | None] | None = None,
    half_life_days: float = 60.0,
    new_days: float = 30,
    active_days: float = 90,
    at_risk_days: float = 180,
    recent_days: float = 30,
    price_cuts: tuple[float, float] | None = None,
    customer_ids: Iterable[int] | None = None,
) -> pd.DataFrame:
    """One row of profile features per customer (see the module docstring for definitions).

    Parameters
    ----------
    events : DataFrame
        Columns ``REQUIRED_COLUMNS`` (``customer_id`` int, ``occurred_at`` tz-aware) and
        optionally ``order_id`` and ``item_kind``. Every event of each customer present must be included.
    now : tz-aware datetime
    window_days, half_life_days, recent_days : float, days
    weights : mapping event type -> weight (missing types weigh 0); default ``DEFAULT_WEIGHTS``.
    new_days, active_days, at_risk_days : float, days; lifecycle thresholds.
    price_cuts : (low, high) prices, see ``catalogue_price_cuts``.
    customer_ids : customers to include even without events.

    Returns
    -------
    DataFrame indexed by ``customer_id`` with ``FEATURE_COLUMNS``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack column(s): {', '.join(missing)}")
    if not (0 <= new_days and active_days <= at_risk_days):
        raise ValueError("lifecycle thresholds must satisfy active_days <= at_risk_days")
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    now_ns = _now_ns(now)

    t = _utc_ns(events["occurred_at"])
    keep = t <= now_ns
    ev = events.loc[keep]
    t = t[keep]
    cid_all = ev["customer_id"].to_numpy(dtype=np.int64)
    ids = np.unique(cid_all)
    if customer_ids is not None:
        ids = np.union1d(ids, np.asarray(list(customer_ids), dtype=np.int64))
    n = len(ids)
    inv = np.searchsorted(ids, cid_all)
    etype = ev["type"].to_numpy(dtype=object)
    age_ns = now_ns - t
    day = t // _NS_PER_DAY
    in_win = age_ns < window_days * _NS_PER_DAY
    value = ev["value"].to_numpy(dtype=float)
    amount = ev["amount"].to_numpy(dtype=float)
    price = ev["item_price"].to_numpy(dtype=float)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(inv[mask], minlength=n).astype(np.int64)

    def extreme(mask: np.ndarray, fn) -> np.ndarray:
        out = np.full(n, np.iinfo(np.int64).min if fn is np.maximum else np.iinfo(np.int64).max, dtype=np.int64)
        if mask.any():
            s = pd.Series(t[mask]).groupby(inv[mask]).agg("max" if fn is np.maximum else "min")
            out[s.index.to_numpy()] = s.to_numpy()
        return out

    has_any = count(np.ones(len(inv), dtype=bool)) > 0
    out = pd.DataFrame(index=pd.Index(ids, name="customer_id"))

    # ---- purchases, orders, money ------------------------------------------------------
    is_p = etype == "purchase"
    is_r = etype == "return"
    qty = np.where(np.isnan(value), 1.0, value)
    money = np.where(np.isnan(amount), np.nan_to_num(qty * price), amount)
    if "order_id" in ev.columns:
        oid = ev["order_id"].to_numpy(dtype=object)
        has_oid = pd.notna(oid)
    else:
        oid = None
        has_oid = np.zeros(len(inv), dtype=bool)
    okey = np.empty(len(inv), dtype=np.int64)
    if has_oid.any():
        okey[has_oid] = pd.factorize(pd.Series(oid[has_oid]).astype(str))[0]
    okey[~has_oid] = -1 - day[~has_oid]          # day keys are negative, order ids non-negative

    def n_orders(mask: np.ndarray) -> np.ndarray:
        pairs = pd.DataFrame({"c": inv[mask], "k": okey[mask]}).drop_duplicates()
        return np.bincount(pairs["c"].to_numpy(), minlength=n).astype(np.int64)

    last_p = extreme(is_p, np.maximum)
    first_p = extreme(is_p, np.minimum)
    bought = count(is_p) > 0
    recency = np.where(bought, (now_ns - last_p) / _NS_PER_DAY, np.nan)
    frequency = n_orders(is_p & in_win)
    orders_total = n_orders(is_p)
    spend = np.bincount(inv[is_p & in_win], weights=money[is_p & in_win], minlength=n)
    refunds = np.bincount(inv[is_r & in_win], weights=money[is_r & in_win], minlength=n)
    monetary = np.round(spend - refunds, 6)
    with np.errstate(divide="ignore", invalid="ignore"):
        aov = np.where(frequency > 0, monetary / np.maximum(frequency, 1), np.nan)
    out["recency_days"] = recency
    out["frequency"] = frequency
    out["monetary"] = monetary
    out["avg_order_value"] = aov

    # ---- interests ---------------------------------------------------------------------
    wvec = np.zeros(len(inv))
    for etype_name, weight in w.items():
        sel = etype == etype_name
        if not sel.any():
            continue
        if etype_name == "rating" and (weight is None or weight == "explicit"):
            wvec[sel] = np.nan_to_num(value[sel])
        else:
            wvec[sel] = float(weight or 0.0)
    decay = np.power(0.5, (age_ns / _NS_PER_DAY) / float(half_life_days))
    contrib = wvec * decay
    cat = ev["category"].to_numpy(dtype=object)
    use = (contrib > 0) & pd.notna(cat)
    interests = [dict() for _ in range(n)]
    top = [[] for _ in range(n)]
    if use.any():
        g = pd.DataFrame({"c": inv[use], "cat": cat[use].astype(str), "w": contrib[use]})
        g = g.groupby(["c", "cat"], sort=False, observed=True)["w"].sum().reset_index()
        g["w"] = g["w"] / g.groupby("c")["w"].transform("sum")
        g = g.sort_values(["c", "w", "cat"], ascending=[True, False, True], kind="stable")
        c_arr = g["c"].to_numpy()
        cats = g["cat"].tolist()
        ws = np.round(g["w"].to_numpy(), 6).tolist()
        bounds = np.flatnonzero(np.diff(c_arr)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(c_arr)]])
        for cust, s, e in zip(c_arr[starts].tolist(), starts.tolist(), ends.tolist()):
            interests[cust] = dict(zip(cats[s:e], ws[s:e]))
            top[cust] = cats[s:min(e, s + 3)]
    out["interests"] = interests
    out["top_categories"] = top

    # ---- price band --------------------------------------------------------------------
    priced = np.isin(etype, _PRICE_TYPES) & in_win & ~np.isnan(price)
    median_price = np.full(n, np.nan)
    if priced.any():
        med = pd.Series(price[priced]).groupby(inv[priced]).median()
        median_price[med.index.to_numpy()] = med.to_numpy()
    if price_cuts is None:
        price_cuts = catalogue_price_cuts(np.unique(price[~np.isnan(price)]))
    low, high = price_cuts
    band = np.where(median_price < low, "low", np.where(median_price > high, "high", "mid")).astype(object)
    band[np.isnan(median_price)] = None
    out["median_price"] = median_price
    out["price_band"] = band

    # ---- activity ------------------------------------------------------------------------
    days = pd.DataFrame({"c": inv[in_win], "d": day[in_win]}).drop_duplicates()
    out["active_days"] = np.bincount(days["c"].to_numpy(), minlength=n).astype(np.int64)
    all_rows = np.ones(len(inv), dtype=bool)
    last_seen = extreme(all_rows, np.maximum)
    first_seen = extreme(all_rows, np.minimum)
    out["last_seen"] = _to_ts(last_seen, has_any)
    out["first_seen"] = _to_ts(first_seen, has_any)
    out["events_30d"] = count(age_ns < recent_days * _NS_PER_DAY)
    out["n_events"] = count(in_win)
    out["community_posts"] = count((etype == "post") & in_win)
    out["community_comments"] = count((etype == "comment") & in_win)
    out["community_likes"] = count((etype == "like") & in_win)
    out["orders_total"] = orders_total
    out["first_purchase_at"] = _to_ts(first_p, bought)
    out["last_purchase_at"] = _to_ts(last_p, bought)

    # ---- lifecycle -----------------------------------------------------------------------
    first_age = (now_ns - first_p) / _NS_PER_DAY
    lifecycle = np.select(
        [~bought, (first_age <= new_days) & (orders_total == 1), recency <= active_days, recency <= at_risk_days],
        ["never-bought", "new", "active", "at-risk"],
        default="lapsed",
    ).astype(object)
    out["lifecycle"] = lifecycle
    return out[list(FEATURE_COLUMNS)]


def _score(values: pd.Series, higher_is_better: bool) -> np.ndarray:
    """1 + floor(5 x share of scored customers strictly worse), so ties share a score and
    the result does not depend on row order."""
    key = values if higher_is_better else -values
    worse = key.rank(method="min").to_numpy() - 1
    return np.minimum(1 + np.floor(5 * worse / len(values)), 5).astype(np.int64)


def score_rfm(features: pd.DataFrame) -> pd.DataFrame:
    """Add ``r_score``, ``f_score``, ``m_score`` (1-5) and ``rfm_code`` (e.g. ``"545"``).

    Scored over the whole population given: the customers who ever purchased (non-null
    ``recency_days``). A score is ``1 + floor(5 x fraction of those customers strictly
    worse on that measure)``: quintiles for distinct values, and tied customers always
    share a score (ties go to the lower quintile). Recency: more recent is better.
    Customers who never purchased get ``0`` for all three and ``rfm_code`` ``"000"``.
    """
    out = features.copy()
    scored = out["recency_days"].notna()
    for col, src, better in (("r_score", "recency_days", False), ("f_score", "frequency", True),
                             ("m_score", "monetary", True)):
        s = np.zeros(len(out), dtype=np.int64)
        if scored.any():
            s[scored.to_numpy()] = _score(out.loc[scored, src].astype(float), better)
        out[col] = s
    out["rfm_code"] = (out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str))
    return out
