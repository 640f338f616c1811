"""Building the user × item matrix from event arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

SECONDS_PER_DAY = 86_400.0


def to_seconds(timestamps) -> np.ndarray:
    """Unix seconds as float64 from numbers, ``datetime64`` or pandas datetimes."""
    ts = np.asarray(timestamps)
    if np.issubdtype(ts.dtype, np.datetime64):
        return ts.astype("datetime64[ns]").astype(np.int64) / 1e9
    if ts.dtype == object:  # e.g. datetime.datetime objects
        return np.asarray(ts, dtype="datetime64[ns]").astype(np.int64) / 1e9
    return ts.astype(np.float64)


def decay_weights(timestamps, half_life_days: float | None, now=None) -> np.ndarray:
    """``0.5 ** (age / half_life)`` for each event (1 when ``half_life_days`` is None).

    Parameters
    ----------
    timestamps : array-like, shape (n_events,)
        Unix seconds or datetime64.
    half_life_days : float or None
    now : scalar or array-like of shape (n_events,), optional
        Reference time (same unit as ``timestamps``), one for all events or one per event
        (e.g. :func:`latest_per_user`); default the latest event.
    """
    t = to_seconds(timestamps)
    if half_life_days is None or t.size == 0:
        return np.ones(t.shape)
    if now is None:
        ref = t.max()
    elif np.ndim(now):
        ref = to_seconds(now)
    else:
        ref = float(to_seconds(np.asarray([now]))[0])
    age_days = np.maximum(ref - t, 0.0) / SECONDS_PER_DAY
    return np.power(0.5, age_days / float(half_life_days))


def build_interactions(
    user_idx,
    item_idx,
    event_weight=None,
    timestamps=None,
    half_life_days: float | None = None,
    now=None,
    *,
    n_users: int,
    n_items: int,
    explicit: bool = False,
) -> sp.csr_matrix:
    """CSR user × item matrix from events.

    Parameters
    ----------
    user_idx, item_idx : array-like of int, shape (n_events,)
        Matrix rows and columns (ids already mapped through a vocabulary).
    event_weight : array-like of float, shape (n_events,), optional
        Implicit: the weight of each event (a view counts less than a purchase);
        explicit: the rating. Default 1.
    timestamps : array-like, shape (n_events,), optional
        Unix seconds or datetime64. Needed for time decay and for "latest rating wins".
    half_life_days : float, optional
        Implicit only: each event's weight is multiplied by
        ``0.5 ** ((now - t) / half_life)``.
    now : scalar, optional
        Reference time for the decay; default the latest event.
    n_users, n_items : int
        Matrix shape.
    explicit : bool
        ``False``: weights of repeated ``(user, item)`` events are summed (after decay).
        ``True``: ratings are used as they are and the latest one wins (by timestamp,
        then by position in the input).

    Returns
    -------
    csr_matrix of float64, shape (n_users, n_items)
        Canonical (sorted indices, no duplicates). Entries whose value is exactly 0
        are dropped, since a CSR matrix cannot tell them from "not observed".
    """
    u = np.asarray(user_idx, dtype=np.int64).ravel()
    i = np.asarray(item_idx, dtype=np.int64).ravel()
    if u.shape != i.shape:
        raise ValueError("user_idx and item_idx must have the same length")
    w = np.ones(len(u)) if event_weight is None else np.asarray(event_weight, dtype=np.float64).ravel()
    if w.shape != u.shape:
        raise ValueError("event_weight must have one value per event")
    if len(u) and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
        raise ValueError("user_idx/item_idx out of range for the given n_users/n_items")
    if explicit:
        key = u * n_items + i
        t = np.zeros(len(u)) if timestamps is None else to_seconds(timestamps).ravel()
        # last position after sorting by (key, time, input order) is the latest rating
        order = np.lexsort((np.arange(len(u)), t, key))
        last = np.r_[key[order][1:] != key[order][:-1], True] if len(u) else np.zeros(0, bool)
        sel = order[last]
        m = sp.csr_matrix((w[sel], (u[sel], i[sel])), shape=(n_users, n_items))
    else:
        if half_life_days is not None:
            if timestamps is None:
                raise ValueError("half_life_days needs timestamps")
            w = w * decay_weights(timestamps, half_life_days, now)
        m = sp.csr_matrix((w, (u, i)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def latest_per_user(user_idx, timestamps) -> np.ndarray:
    """Each event's user's latest timestamp, as Unix seconds, shape ``(n_events,)``.

    The reference of a per-user time decay: ``decay_weights(t, half_life, now=latest_per_user(u, t))``
    counts an event's age from its user's own latest event.
    """
    seconds = to_seconds(timestamps)
    return pd.Series(seconds).groupby(np.asarray(user_idx, dtype=np.int64)).transform("max").to_numpy()


def interaction_matrix(
    user_idx,
    item_idx,
    event_type,
    value,
    timestamps,
    *,
    weights: dict,
    half_life_days: float | None,
    decay_from: str = "customer",
    n_users: int,
    n_items: int,
) -> sp.csr_matrix:
    """Implicit events weighted by type and decayed, plus explicit ratings as they are.

    Parameters
    ----------
    user_idx, item_idx : array-like of int, shape (n_events,)
        Matrix rows and columns.
    event_type : array-like of str, shape (n_events,)
        ``"rating"`` marks an explicit rating; any other type is implicit and weighs
        ``weights[type]`` (0 for a type ``weights`` does not name; events of weight 0 are left out).
    value : array-like of float, shape (n_events,)
        The rating of a ``"rating"`` event (NaN: no rating, left out); ignored otherwise.
    timestamps : array-like, shape (n_events,)
        Unix seconds or datetime64.
    half_life_days : float or None
        Half-life of the implicit weights' time decay; None or 0: no decay.
    decay_from : {"customer", "latest"}
        ``"customer"``: an event's age is counted from its user's own latest implicit event, so
        what a lapsed customer liked still says who they are; ``"latest"``: from the latest event
        of all (ratings included), which also fades users who stopped coming.
    n_users, n_items : int
        Matrix shape.

    Returns
    -------
    csr_matrix of float64, shape (n_users, n_items)
        Summed decayed implicit weights plus, where a user rated an item, the latest rating.
    """
    event_type = np.asarray(event_type, dtype=object)
    u, i = np.asarray(user_idx, dtype=np.int64), np.asarray(item_idx, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    seconds = to_seconds(timestamps)
    rating = event_type == "rating"
    w = pd.Series(event_type).map({k: float(v) for k, v in weights.items() if k != "rating"}).fillna(0.0).to_numpy()
    imp = ~rating & (w > 0)
    decay = half_life_days if len(seconds) and half_life_days else None
    if decay is None:
        ref = None
    elif decay_from == "customer":
        ref = latest_per_user(u[imp], seconds[imp])
    else:
        ref = seconds.max()
    implicit = build_interactions(
        u[imp], i[imp], w[imp], seconds[imp], half_life_days=decay, now=ref, n_users=n_users, n_items=n_items
    )
    rated = rating & np.isfinite(value)
    explicit = build_interactions(
        u[rated], i[rated], value[rated], seconds[rated], n_users=n_users, n_items=n_items, explicit=True
    )
    return (implicit + explicit).tocsr()


def pair_matrix(user_idx, item_idx, values=None, *, n_users: int, n_items: int, agg: str = "sum") -> sp.csr_matrix:
    """CSR user × item matrix of one value per pair: the pairs' values summed (``agg="sum"``) or
    their largest (``agg="max"``); 1 per event by default. Zeros are dropped.

    Parameters
    ----------
    user_idx, item_idx : array-like of int, shape (n_events,)
    values : array-like of float, shape (n_events,), optional
    n_users, n_items : int
    agg : {"sum", "max"}
    """
    u = np.asarray(user_idx, dtype=np.int64).ravel()
    i = np.asarray(item_idx, dtype=np.int64).ravel()
    v = np.ones(len(u)) if values is None else np.asarray(values, dtype=np.float64).ravel()
    if agg == "max" and len(u):
        frame = pd.DataFrame({"u": u, "i": i, "v": v}).groupby(["u", "i"], sort=False)["v"].max().reset_index()
        u, i, v = frame["u"].to_numpy(), frame["i"].to_numpy(), frame["v"].to_numpy()
    elif agg not in ("sum", "max"):
        raise ValueError(f"agg must be 'sum' or 'max', not {agg!r}")
    return build_interactions(u, i, v, n_users=n_users, n_items=n_items)
