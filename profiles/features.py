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
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_WEIGHTS",
    "FEATURE_COLUMNS",
    "LIFECYCLES",
    "PROFILE_FIELDS",
    "REQUIRED_COLUMNS",
    "catalogue_price_cuts",
    "compute_features",
    "score_rfm",
]

#: The stored profile's computed fields, in the order the profile writes use (local and Spark).
PROFILE_FIELDS = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "r_score",
    "f_score",
    "m_score",
    "rfm_code",
    "interests",
    "top_categories",
    "top_category",
    "median_price",
    "price_band",
    "active_days",
    "first_seen",
    "last_seen",
    "events_30d",
    "n_events",
    "community_posts",
    "community_comments",
    "community_likes",
    "orders_total",
    "first_purchase_at",
    "last_purchase_at",
    "lifecycle",
    "p_alive",
    "predicted_orders",
    "predicted_value",
    "churn_risk",
    "next_order_at",
    "prediction_basis",
    "prediction_horizon_days",
]

DEFAULT_WEIGHTS: dict[str, float | str] = {
    "view": 1.0,
    "click": 1.5,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "favorite": 3.0,
    "like": 2.0,
    "comment": 2.0,
    "post": 2.0,
    "share": 2.5,
    "search": 0.0,
    "rating": "explicit",
    "return": 0.0,
}
# ``item_kind`` is part of the input contract but not needed by any feature yet, so not required.
REQUIRED_COLUMNS = ("customer_id", "type", "value", "amount", "occurred_at", "category", "item_price")
LIFECYCLES = ("new", "active", "at-risk", "lapsed", "never-bought")
FEATURE_COLUMNS = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "interests",
    "top_categories",
    "median_price",
    "price_band",
    "active_days",
    "last_seen",
    "first_seen",
    "events_30d",
    "n_events",
    "community_posts",
    "community_comments",
    "community_likes",
    "orders_total",
    "first_purchase_at",
    "last_purchase_at",
    "lifecycle",
)

_NS_PER_DAY = 86_400 * 10**9
_PRICE_TYPES = ("view", "click", "add_to_cart", "purchase")


def catalogue_price_cuts(
    prices: Iterable[float], quantiles: tuple[float, float] = (1 / 3, 2 / 3)
) -> tuple[float, float]:
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
    if not (new_days >= 0 and active_days <= at_risk_days):
        raise ValueError("lifecycle thresholds must satisfy active_days <= at_risk_days")
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    ev = _Events(events, now=now, window_days=window_days, customer_ids=customer_ids)
    out = pd.DataFrame(index=pd.Index(ev.ids, name="customer_id"))

    bought = _purchases(ev)
    out["recency_days"] = bought.recency_days
    out["frequency"] = bought.frequency
    out["monetary"] = bought.monetary
    out["avg_order_value"] = bought.avg_order_value
    out["interests"], out["top_categories"] = _interests(ev, w, half_life_days=half_life_days)
    out["median_price"], out["price_band"] = _price_band(ev, price_cuts)
    for name, column in _activity(ev, recent_days=recent_days).items():
        out[name] = column
    out["orders_total"] = bought.orders_total
    out["first_purchase_at"] = _to_ts(bought.first_ns, bought.ever)
    out["last_purchase_at"] = _to_ts(bought.last_ns, bought.ever)
    out["lifecycle"] = _lifecycle(ev, bought, new_days=new_days, active_days=active_days, at_risk_days=at_risk_days)
    return out[list(FEATURE_COLUMNS)]


class _Events:
    """The events up to ``now`` as arrays, one entry per event; ``inv`` gives each event's customer
    as a position in ``ids`` (the customers, sorted), so per-customer sums are bincounts."""

    def __init__(self, events: pd.DataFrame, *, now, window_days: float, customer_ids: Iterable[int] | None):
        self.now_ns = _now_ns(now)
        t = _utc_ns(events["occurred_at"])
        keep = t <= self.now_ns
        self.frame = events.loc[keep]
        self.t = t[keep]
        cid_all = self.frame["customer_id"].to_numpy(dtype=np.int64)
        ids = np.unique(cid_all)
        if customer_ids is not None:
            ids = np.union1d(ids, np.asarray(list(customer_ids), dtype=np.int64))
        self.ids = ids
        self.n = len(ids)
        self.inv = np.searchsorted(ids, cid_all)
        self.etype = self.frame["type"].to_numpy(dtype=object)
        self.age_ns = self.now_ns - self.t
        self.day = self.t // _NS_PER_DAY
        self.in_win = self.age_ns < window_days * _NS_PER_DAY
        self.value = self.frame["value"].to_numpy(dtype=float)
        self.amount = self.frame["amount"].to_numpy(dtype=float)
        self.price = self.frame["item_price"].to_numpy(dtype=float)

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Events per customer among ``mask``."""
        return np.bincount(self.inv[mask], minlength=self.n).astype(np.int64)

    def extreme(self, mask: np.ndarray, fn) -> np.ndarray:
        """Latest (``np.maximum``) or earliest (``np.minimum``) time per customer among ``mask``, in
        ns; the int64 extreme of the other side for a customer without such an event."""
        out = np.full(self.n, np.iinfo(np.int64).min if fn is np.maximum else np.iinfo(np.int64).max, dtype=np.int64)
        if mask.any():
            s = pd.Series(self.t[mask]).groupby(self.inv[mask]).agg("max" if fn is np.maximum else "min")
            out[s.index.to_numpy()] = s.to_numpy()
        return out


@dataclass
class _Purchases:
    """Per customer: what the purchase features are made of."""

    ever: np.ndarray  # bool: purchased at least once
    first_ns: np.ndarray
    last_ns: np.ndarray
    recency_days: np.ndarray
    frequency: np.ndarray
    orders_total: np.ndarray
    monetary: np.ndarray
    avg_order_value: np.ndarray


def _purchases(ev: _Events) -> _Purchases:
    """Purchases, orders and money: recency, frequency, monetary (returns netted), average order value."""
    is_p = ev.etype == "purchase"
    is_r = ev.etype == "return"
    qty = np.where(np.isnan(ev.value), 1.0, ev.value)
    money = np.where(np.isnan(ev.amount), np.nan_to_num(qty * ev.price), ev.amount)
    okey = _order_keys(ev)

    def n_orders(mask: np.ndarray) -> np.ndarray:
        pairs = pd.DataFrame({"c": ev.inv[mask], "k": okey[mask]}).drop_duplicates()
        return np.bincount(pairs["c"].to_numpy(), minlength=ev.n).astype(np.int64)

    last_p = ev.extreme(is_p, np.maximum)
    first_p = ev.extreme(is_p, np.minimum)
    bought = ev.count(is_p) > 0
    recency = np.where(bought, (ev.now_ns - last_p) / _NS_PER_DAY, np.nan)
    frequency = n_orders(is_p & ev.in_win)
    orders_total = n_orders(is_p)
    spend = np.bincount(ev.inv[is_p & ev.in_win], weights=money[is_p & ev.in_win], minlength=ev.n)
    refunds = np.bincount(ev.inv[is_r & ev.in_win], weights=money[is_r & ev.in_win], minlength=ev.n)
    monetary = np.round(spend - refunds, 6)
    with np.errstate(divide="ignore", invalid="ignore"):
        aov = np.where(frequency > 0, monetary / np.maximum(frequency, 1), np.nan)
    return _Purchases(
        ever=bought,
        first_ns=first_p,
        last_ns=last_p,
        recency_days=recency,
        frequency=frequency,
        orders_total=orders_total,
        monetary=monetary,
        avg_order_value=aov,
    )


def _order_keys(ev: _Events) -> np.ndarray:
    """Each event's order: its ``order_id`` (as a code >= 0) when it has one, else its UTC day (< 0)."""
    if "order_id" in ev.frame.columns:
        oid = ev.frame["order_id"].to_numpy(dtype=object)
        has_oid = pd.notna(oid)
    else:
        oid = None
        has_oid = np.zeros(len(ev.inv), dtype=bool)
    okey = np.empty(len(ev.inv), dtype=np.int64)
    if has_oid.any():
        okey[has_oid] = pd.factorize(pd.Series(oid[has_oid]).astype(str))[0]
    okey[~has_oid] = -1 - ev.day[~has_oid]  # day keys are negative, order ids non-negative
    return okey


def _interests(ev: _Events, weights: dict, *, half_life_days: float) -> tuple[list[dict], list[list]]:
    """Each customer's ``{category: share}`` of decayed, weighted events, and their top three categories."""
    wvec = np.zeros(len(ev.inv))
    for etype_name, weight in weights.items():
        sel = ev.etype == etype_name
        if not sel.any():
            continue
        if etype_name == "rating" and (weight is None or weight == "explicit"):
            wvec[sel] = np.nan_to_num(ev.value[sel])
        else:
            wvec[sel] = float(weight or 0.0)
    decay = np.power(0.5, (ev.age_ns / _NS_PER_DAY) / float(half_life_days))
    contrib = wvec * decay
    # categories as integer codes (grouping and sorting ints, not a million strings); `order` ranks
    # the category names as text, so ties in share still go to the alphabetically first
    codes, names = pd.factorize(ev.frame["category"].to_numpy(dtype=object))
    names = np.asarray([str(x) for x in names], dtype=object)
    order = np.empty(len(names), dtype=np.int64)
    order[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    use = (contrib > 0) & (codes >= 0)
    interests = [dict() for _ in range(ev.n)]
    top = [[] for _ in range(ev.n)]
    if use.any():
        g = pd.DataFrame({"c": ev.inv[use], "cat": codes[use], "w": contrib[use]})
        g = g.groupby(["c", "cat"], sort=False)["w"].sum().reset_index()
        g["w"] = g["w"] / g.groupby("c")["w"].transform("sum")
        g["name"] = order[g["cat"].to_numpy()]
        g = g.sort_values(["c", "w", "name"], ascending=[True, False, True], kind="stable")
        c_arr = g["c"].to_numpy()
        cats = names[g["cat"].to_numpy()].tolist()
        ws = np.round(g["w"].to_numpy(), 6).tolist()
        bounds = np.flatnonzero(np.diff(c_arr)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(c_arr)]])
        for cust, s, e in zip(c_arr[starts].tolist(), starts.tolist(), ends.tolist(), strict=False):
            interests[cust] = dict(zip(cats[s:e], ws[s:e], strict=False))
            top[cust] = cats[s : min(e, s + 3)]
    return interests, top


def _price_band(ev: _Events, price_cuts: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's median price of priced events in the window, and its band against the cuts."""
    priced = np.isin(ev.etype, _PRICE_TYPES) & ev.in_win & ~np.isnan(ev.price)
    median_price = np.full(ev.n, np.nan)
    if priced.any():
        med = pd.Series(ev.price[priced]).groupby(ev.inv[priced]).median()
        median_price[med.index.to_numpy()] = med.to_numpy()
    if price_cuts is None:
        price_cuts = catalogue_price_cuts(np.unique(ev.price[~np.isnan(ev.price)]))
    low, high = price_cuts
    band = np.where(median_price < low, "low", np.where(median_price > high, "high", "mid")).astype(object)
    band[np.isnan(median_price)] = None
    return median_price, band


def _activity(ev: _Events, *, recent_days: float) -> dict[str, np.ndarray | pd.DatetimeIndex]:
    """Active days, first and last seen, recent events, events and community events in the window."""
    days = pd.DataFrame({"c": ev.inv[ev.in_win], "d": ev.day[ev.in_win]}).drop_duplicates()
    all_rows = np.ones(len(ev.inv), dtype=bool)
    has_any = ev.count(all_rows) > 0
    return {
        "active_days": np.bincount(days["c"].to_numpy(), minlength=ev.n).astype(np.int64),
        "last_seen": _to_ts(ev.extreme(all_rows, np.maximum), has_any),
        "first_seen": _to_ts(ev.extreme(all_rows, np.minimum), has_any),
        "events_30d": ev.count(ev.age_ns < recent_days * _NS_PER_DAY),
        "n_events": ev.count(ev.in_win),
        "community_posts": ev.count((ev.etype == "post") & ev.in_win),
        "community_comments": ev.count((ev.etype == "comment") & ev.in_win),
        "community_likes": ev.count((ev.etype == "like") & ev.in_win),
    }


def _lifecycle(
    ev: _Events, bought: _Purchases, *, new_days: float, active_days: float, at_risk_days: float
) -> np.ndarray:
    """never-bought, new, active, at-risk or lapsed (see the module docstring)."""
    first_age = (ev.now_ns - bought.first_ns) / _NS_PER_DAY
    recency = bought.recency_days
    return np.select(
        [
            ~bought.ever,
            (first_age <= new_days) & (bought.orders_total == 1),
            recency <= active_days,
            recency <= at_risk_days,
        ],
        ["never-bought", "new", "active", "at-risk"],
        default="lapsed",
    ).astype(object)


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
    for col, src, better in (
        ("r_score", "recency_days", False),
        ("f_score", "frequency", True),
        ("m_score", "monetary", True),
    ):
        s = np.zeros(len(out), dtype=np.int64)
        if scored.any():
            s[scored.to_numpy()] = _score(out.loc[scored, src].astype(float), better)
        out[col] = s
    out["rfm_code"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    return out
