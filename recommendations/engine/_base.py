"""Shared machinery of the engine's recommenders.

Every recommender works on a scipy.sparse CSR matrix of shape ``(n_users, n_items)``
whose stored entries are the observed interactions (ratings or implicit weights).
Whole-population work happens in chunks of users so that memory stays bounded, and
every public entry point caps the BLAS/OpenMP thread pools with threadpoolctl.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

# Explanation kinds (see ``Explanations``).
EXPLAIN_NONE = 0
EXPLAIN_ITEM = 1  # "because you bought X": ``Explanations.item`` holds X
EXPLAIN_SIMILAR_USERS = 2  # "customers with similar taste bought this"
EXPLAIN_POPULAR = 3  # "popular (in your segment)"

EXPLANATION_LABELS = {
    EXPLAIN_NONE: "none",
    EXPLAIN_ITEM: "item",
    EXPLAIN_SIMILAR_USERS: "similar_users",
    EXPLAIN_POPULAR: "popular",
}

# Default memory budget of one chunk's dense score block, in bytes.
DEFAULT_CHUNK_BYTES = 128 * 2**20


@dataclass(frozen=True)
class Explanations:
    """Why each suggestion was made, aligned with the ``(user, item)`` pairs it explains.

    Attributes
    ----------
    kind : ndarray of int8
        One of ``EXPLAIN_NONE`` (0), ``EXPLAIN_ITEM`` (1), ``EXPLAIN_SIMILAR_USERS`` (2),
        ``EXPLAIN_POPULAR`` (3), same shape as the pairs explained.
    item : ndarray of int64
        For ``EXPLAIN_ITEM``: the index of the user's own item that contributed most to
        the score ("because you bought X"); ``-1`` otherwise. Same shape as ``kind``.
    count : ndarray of int64
        For ``EXPLAIN_SIMILAR_USERS`` from a neighbourhood model: how many of the user's
        neighbours have the item ("3 customers with similar taste bought this"); 0
        otherwise (and when not given). Same shape as ``kind``.
    """

    kind: np.ndarray
    item: np.ndarray
    count: np.ndarray | None = None

    def __post_init__(self):
        if self.count is None:
            object.__setattr__(self, "count", np.zeros(np.shape(self.kind), dtype=np.int64))

    def labels(self) -> np.ndarray:
        """Return ``kind`` as strings (``"item"``, ``"similar_users"``, ...)."""
        lut = np.array([EXPLANATION_LABELS[k] for k in sorted(EXPLANATION_LABELS)], dtype=object)
        return lut[self.kind]


def check_user_items(user_items, *, dtype=np.float64) -> sp.csr_matrix:
    """Return ``user_items`` as a canonical CSR matrix (summed duplicates, sorted
    indices, no explicit zeros) of the given dtype."""
    if not sp.issparse(user_items):
        user_items = sp.csr_matrix(np.asarray(user_items))
    m = sp.csr_matrix(user_items, dtype=dtype, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def n_threads_or_default(n_threads: int | None) -> int:
    if n_threads is not None:
        return max(1, int(n_threads))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_controller: tuple[int, ThreadpoolController] | None = None


def _threadpool_controller() -> ThreadpoolController:
    """A cached ``ThreadpoolController``: finding the loaded BLAS/OpenMP libraries
    takes ~10 ms with the usual stack loaded, and they only change when an extension
    module is imported, so the cache is renewed whenever ``sys.modules`` grows."""
    global _controller
    key = len(sys.modules)
    cached = _controller
    if cached is None or cached[0] != key:
        cached = _controller = (key, ThreadpoolController())
    return cached[1]


@contextmanager
def capped_threads(n_threads: int | None):
    """Cap BLAS and OpenMP pools; Celery workers run several processes per machine."""
    with _threadpool_controller().limit(limits=n_threads_or_default(n_threads)):
        yield


def chunks(n: int, size: int):
    """Yield ``slice`` objects covering ``range(n)`` in steps of ``size``."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def row_ids(m: sp.csr_matrix) -> np.ndarray:
    """Row index of every stored entry of a CSR matrix, shape ``(nnz,)``."""
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))


def gather_ranges(indptr: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the stored entries of the rows ``which`` of a compressed matrix.

    Returns ``(pos, owner)``: ``pos`` indexes ``indices``/``data``; ``owner[e]`` is the
    position in ``which`` that entry ``e`` belongs to. Fully vectorised.
    """
    which = np.asarray(which, dtype=np.int64)
    starts = indptr[which].astype(np.int64)
    counts = (indptr[which + 1] - indptr[which]).astype(np.int64)
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(which), dtype=np.int64), counts)
    offsets = np.cumsum(counts) - counts
    pos = np.arange(total, dtype=np.int64) - offsets[owner] + starts[owner]
    return pos, owner


class SparseLookup:
    """Vectorised ``M[rows, cols]`` for a canonical CSR matrix (0 where not stored)."""

    def __init__(self, m: sp.csr_matrix):
        m = sp.csr_matrix(m)
        m.sort_indices()
        self.m = m
        self.n_cols = m.shape[1]
        self.keys = row_ids(m) * self.n_cols + m.indices.astype(np.int64)

    def __call__(self, rows, cols) -> np.ndarray:
        q = np.asarray(rows, dtype=np.int64) * self.n_cols + np.asarray(cols, dtype=np.int64)
        pos = np.searchsorted(self.keys, q)
        pos_c = np.minimum(pos, max(len(self.keys) - 1, 0))
        found = (pos < len(self.keys)) & (self.keys[pos_c] == q) if len(self.keys) else np.zeros(len(q), bool)
        out = np.zeros(len(q), dtype=self.m.dtype)
        out[found] = self.m.data[pos_c[found]]
        return out


def topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest stored values of each row (ties: lower column first)."""
    m = sp.csr_matrix(m)
    counts = np.diff(m.indptr)
    if counts.size == 0 or counts.max(initial=0) <= k:
        return m
    rows = row_ids(m)
    order = np.lexsort((m.indices, -m.data, rows))
    start = np.repeat(m.indptr[:-1], counts)
    keep_sorted = (np.arange(m.nnz) - start) < k
    keep = order[keep_sorted]
    keep.sort()
    out = sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(np.minimum(counts, k))]), shape=m.shape)
    return out


def topn_from_scores(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` columns of each row of a dense score block, best first.

    ``-inf`` marks items that must not be recommended; such slots come back as
    item ``-1`` with score ``-inf``. Ties are broken towards the lower item index.
    """
    n_rows, n_cols = scores.shape
    n_eff = min(n, n_cols)
    if n_eff < n_cols:
        part = np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # sort by (-score, item) so results do not depend on argpartition internals
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top = np.take_along_axis(part_scores, order, axis=1)
    items[~np.isfinite(top) & (top < 0)] = -1
    if n_eff < n:
        pad = n - n_eff
        items = np.hstack([items, np.full((n_rows, pad), -1, dtype=np.int64)])
        top = np.hstack([top, np.full((n_rows, pad), -np.inf)])
    return items, top


class BaseRecommender:
    """Common ``recommend``/``explain`` logic; subclasses provide ``_score_block``.

    Subclasses implement

    - ``fit(user_items) -> self`` setting ``user_items_`` (the training CSR matrix),
    - ``_score_block(users) -> ndarray (len(users), n_items)``: ranking scores,
    - optionally ``_explain_pairs(users, items) -> Explanations``.
    """

    #: How the scores of this model are explained when it has no item-level reason.
    _explain_kind = EXPLAIN_NONE
    #: True for models whose ``fit`` takes ``timestamps=`` (each pair's latest event time, a
    #: sparse matrix like ``user_items``) to order each user's history: ``SASRec``, and a
    #: ``Blend`` with one among its components. The others ignore the order of events.
    uses_timestamps = False
    #: Dense float arrays of shape (chunk, n_items) held at once while scoring.
    _block_factor = 3

    # -- helpers -------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "user_items_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit() first")

    def _user_chunk_size(self) -> int:
        if getattr(self, "chunk_size", None):
            return int(self.chunk_size)
        n_items = max(1, self.user_items_.shape[1])
        return max(1, int(DEFAULT_CHUNK_BYTES // (8 * n_items * self._block_factor)))

    @property
    def n_users_(self) -> int:
        return self.user_items_.shape[0]

    @property
    def n_items_(self) -> int:
        return self.user_items_.shape[1]

    def _score_block(self, users: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _explain_pairs(self, users: np.ndarray, items: np.ndarray) -> Explanations:
        kind = np.full(items.shape, self._explain_kind, dtype=np.int8)
        kind[items < 0] = EXPLAIN_NONE
        return Explanations(kind=kind, item=np.full(items.shape, -1, dtype=np.int64))

    # -- public API ----------------------------------------------------------------
    def score(self, user_idx) -> np.ndarray:
        """Dense ranking scores of every item for the given users.

        Parameters
        ----------
        user_idx : array-like of int, shape (n_queries,)

        Returns
        -------
        scores : ndarray of float, shape (n_queries, n_items)
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        with capped_threads(getattr(self, "n_threads", None)):
            return self._score_block(users)

    def recommend(
        self,
        user_idx,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        filter_items=None,
        user_items=None,
        return_explanations: bool = False,
    ):
        """Top-``n`` items for many users at once.

        Parameters
        ----------
        user_idx : array-like of int, shape (n_queries,)
            Rows of the training matrix.
        n : int
            Number of items per user.
        exclude_seen : bool
            Drop items the user interacted with (in ``user_items`` or, by default, in
            the training matrix).
        filter_items : array-like of int, optional
            Item indices never to recommend (out of stock, other kind, ...).
        user_items : sparse matrix, shape (n_users, n_items), optional
            Interactions to exclude instead of the training matrix.
        return_explanations : bool
            Also return an :class:`Explanations` aligned with ``items``.

        Returns
        -------
        items : ndarray of int64, shape (n_queries, n)
            Item indices, best first; ``-1`` where fewer than ``n`` items qualify.
        scores : ndarray of float64, shape (n_queries, n)
            Their ranking scores (``-inf`` for the ``-1`` slots).
        explanations : Explanations, only if ``return_explanations``
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        seen = self.user_items_ if user_items is None else sp.csr_matrix(user_items)
        blocked = None
        if filter_items is not None:
            blocked = np.asarray(filter_items, dtype=np.int64)
        out_items = np.empty((len(users), n), dtype=np.int64)
        out_scores = np.empty((len(users), n), dtype=np.float64)
        kinds, sources, counts = [], [], []
        with capped_threads(getattr(self, "n_threads", None)):
            for sl in chunks(len(users), self._user_chunk_size()):
                u = users[sl]
                scores = np.asarray(self._score_block(u), dtype=np.float64)
                scores[~np.isfinite(scores)] = -np.inf
                if exclude_seen:
                    block = seen[u]
                    scores[row_ids(block), block.indices] = -np.inf
                if blocked is not None and blocked.size:
                    scores[:, blocked] = -np.inf
                items, top = topn_from_scores(scores, n)
                out_items[sl], out_scores[sl] = items, top
                if return_explanations:
                    ex = self._explain_pairs(u, items)
                    kinds.append(ex.kind)
                    sources.append(ex.item)
                    counts.append(ex.count)
        if not return_explanations:
            return out_items, out_scores
        ex = Explanations(
            kind=np.concatenate(kinds) if kinds else np.empty((0, n), np.int8),
            item=np.concatenate(sources) if sources else np.empty((0, n), np.int64),
            count=np.concatenate(counts) if counts else np.empty((0, n), np.int64),
        )
        return out_items, out_scores, ex

    def explain(self, user_idx, item_idx) -> Explanations:
        """Explain the score of each ``(user_idx[j], item_idx[j])`` pair.

        Parameters
        ----------
        user_idx, item_idx : array-like of int, same shape

        Returns
        -------
        Explanations
            Same shape as the inputs.
        """
        self._check_fitted()
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        shape = np.broadcast_shapes(users.shape, items.shape)
        users = np.broadcast_to(users, shape).reshape(-1)
        items = np.broadcast_to(items, shape).reshape(-1, 1)
        with capped_threads(getattr(self, "n_threads", None)):
            ex = self._explain_pairs(users, items)
        return Explanations(kind=ex.kind.reshape(shape), item=ex.item.reshape(shape), count=ex.count.reshape(shape))

    def get_params(self) -> dict:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {p: getattr(self, p) for p in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def item_explanations(
    user_items: sp.csr_matrix, sim: sp.csr_matrix, users: np.ndarray, items: np.ndarray, *, max_entries: int = 4_000_000
) -> Explanations:
    """For item-based scores ``R_u · W[:, i]``: the user's item ``j`` maximising
    ``R_uj * W[j, i]`` for each ``(users[r], items[r, c])``.

    ``items`` has shape ``(len(users), n)``; ``-1`` entries are left unexplained.
    """
    items = np.asarray(items, dtype=np.int64)
    n_rows, n_cols = items.shape
    kind = np.zeros(items.shape, dtype=np.int8)
    src = np.full(items.shape, -1, dtype=np.int64)
    lookup = SparseLookup(sim)
    deg = np.diff(user_items.indptr)[users]
    avg = max(1.0, float(deg.mean()) if deg.size else 1.0)
    step = max(1, int(max_entries // (avg * max(1, n_cols))))
    for sl in chunks(n_rows, step):
        rows = np.arange(sl.start, sl.stop)
        pair_user = np.repeat(users[rows], n_cols)
        pair_item = items[rows].reshape(-1)
        pos, owner = gather_ranges(user_items.indptr, pair_user)
        own_item = user_items.indices[pos].astype(np.int64)
        target = pair_item[owner]
        contrib = user_items.data[pos] * lookup(own_item, np.maximum(target, 0))
        valid = (target >= 0) & (contrib > 0)
        owner, own_item, contrib = owner[valid], own_item[valid], contrib[valid]
        if not owner.size:
            continue
        order = np.lexsort((own_item, -contrib, owner))
        first = np.r_[True, owner[order][1:] != owner[order][:-1]]
        best = order[first]
        flat_k = np.zeros(len(rows) * n_cols, dtype=np.int8)
        flat_s = np.full(len(rows) * n_cols, -1, dtype=np.int64)
        flat_k[owner[best]] = EXPLAIN_ITEM
        flat_s[owner[best]] = own_item[best]
        kind[rows] = flat_k.reshape(-1, n_cols)
        src[rows] = flat_s.reshape(-1, n_cols)
    return Explanations(kind=kind, item=src)
