"""Building the user × item matrix from event arrays."""

from __future__ import annotations

import numpy as np
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
    now : scalar, optional
        Reference time (same unit as ``timestamps``); default the latest event.
    """
    t = to_seconds(timestamps)
    if half_life_days is None or t.size == 0:
        return np.ones(t.shape)
    ref = t.max() if now is None else float(to_seconds(np.asarray([now]))[0])
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
