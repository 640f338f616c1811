"""Popularity, overall or within a group of users (cold start: "popular in your segment")."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._base import EXPLAIN_POPULAR, BaseRecommender, check_user_items
from .interactions import decay_weights


class Popularity(BaseRecommender):
    """Items ranked by how many users interacted with them, optionally time-decayed.

    ``pop(i) = Σ_u c_ui · 0.5 ** ((now − t_ui) / half_life)`` where ``c_ui`` is 1 for
    every stored entry (``weighting="users"``) or the entry's value
    (``weighting="values"``) and ``t_ui`` the entry's timestamp (no decay without
    timestamps or ``half_life_days``).

    Parameters
    ----------
    half_life_days : float, optional
        Half-life of the decay, in days.
    weighting : {"users", "values"}
    n_threads, chunk_size : optional
        As for the other recommenders.

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
    weights_ : csr_matrix, shape (n_users, n_items)
        Per-entry contributions ``c_ui · decay``.
    popularity_ : ndarray, shape (n_items,)
    """

    _explain_kind = EXPLAIN_POPULAR
    _block_factor = 2

    def __init__(
        self,
        half_life_days: float | None = None,
        weighting: str = "users",
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.half_life_days = half_life_days
        self.weighting = weighting
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def fit(self, user_items, timestamps=None, now=None) -> Popularity:
        """Count (decayed) interactions per item.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)
        timestamps : sparse matrix with the same stored pattern, or array of shape (nnz,), optional
            Time of each stored entry (Unix seconds; e.g. the latest event of the
            pair). Arrays follow the entry order of the canonical CSR form.
        now : scalar, optional
            Reference time; default the latest timestamp.

        Returns
        -------
        self
        """
        if self.weighting not in ("users", "values"):
            raise ValueError("weighting must be 'users' or 'values'")
        r = check_user_items(user_items)
        c = np.ones(r.nnz) if self.weighting == "users" else r.data.copy()
        if timestamps is not None and self.half_life_days is not None:
            if sp.issparse(timestamps):
                t = sp.csr_matrix(timestamps, dtype=np.float64, copy=True)
                t.sum_duplicates()
                t.sort_indices()
                lookup = sp.csr_matrix((np.arange(1, t.nnz + 1, dtype=np.float64), t.indices, t.indptr), shape=t.shape)
                pos = np.asarray(lookup[r.nonzero()]).ravel().astype(np.int64) - 1
                if (pos < 0).any():
                    raise ValueError("timestamps must have a value for every stored entry of user_items")
                t = t.data[pos]
            else:
                t = np.asarray(timestamps, dtype=np.float64)
                if t.shape != (r.nnz,):
                    raise ValueError("timestamps must have one value per stored entry")
            c = c * decay_weights(t, self.half_life_days, now)
        self.user_items_ = r
        self.weights_ = sp.csr_matrix((c, r.indices, r.indptr), shape=r.shape)
        self.popularity_ = np.asarray(self.weights_.sum(axis=0)).ravel()
        return self

    def _score_block(self, users):
        return np.broadcast_to(self.popularity_, (len(users), self.n_items_)).copy()

    def group_popularity(self, users) -> np.ndarray:
        """Popularity within a group of users.

        Parameters
        ----------
        users : array-like of bool, shape (n_users,), or of int, shape (n_members,)

        Returns
        -------
        ndarray, shape (n_items,)
        """
        self._check_fitted()
        users = np.asarray(users)
        if users.dtype == bool:
            if users.shape != (self.n_users_,):
                raise ValueError("a boolean mask must have one entry per user")
            users = np.flatnonzero(users)
        return np.asarray(self.weights_[users.astype(np.int64)].sum(axis=0)).ravel()

    def recommend_for_group(self, users, n: int = 10, *, filter_items=None, exclude_items=None):
        """Most popular items within a group ("popular in your segment").

        Falls back to overall popularity for items nobody in the group touched, so the
        list is always full (group scores rank first).

        Parameters
        ----------
        users : array-like of bool, shape (n_users,), or of int
            The group's members (a mask or indices).
        n : int
        filter_items, exclude_items : array-like of int, optional
            Items never to return (e.g. the target customer's own items).

        Returns
        -------
        items : ndarray of int64, shape (n,)
        scores : ndarray of float64, shape (n,)
            Group popularity (0 for items filled in from overall popularity).
        """
        group = self.group_popularity(users)
        allowed = np.ones(self.n_items_, dtype=bool)
        for blocked in (filter_items, exclude_items):
            if blocked is not None:
                allowed[np.asarray(blocked, dtype=np.int64)] = False
        cand = np.flatnonzero(allowed)
        # group popularity first, overall popularity breaks ties, then the lower index
        order = np.lexsort((cand, -self.popularity_[cand], -group[cand]))[:n]
        items = np.full(n, -1, dtype=np.int64)
        scores = np.full(n, -np.inf)
        items[: len(order)] = cand[order]
        scores[: len(order)] = group[cand[order]]
        return items, scores
