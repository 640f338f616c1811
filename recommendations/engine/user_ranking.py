"""User-based collaborative filtering that ranks: neighbours' votes for top-N lists.

:class:`UserKNN` predicts ratings with the mean-centred formula (scikit-surprise's
``KNNWithMeans``); used for ranking, that formula puts items rated highly by one or two
neighbours first. :class:`UserKNNRanker` is the top-N form of the same idea for implicit
and mixed feedback: each user's ``k`` most similar users vote for the items they
interacted with, weighted by similarity, and nothing is divided by the number of voters.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ._base import (
    EXPLAIN_NONE,
    EXPLAIN_SIMILAR_USERS,
    BaseRecommender,
    Explanations,
    SparseLookup,
    capped_threads,
    check_user_items,
    chunks,
    gather_ranges,
    n_threads_or_default,
)
from .knn import _assemble, _top_rows

_RANKER_SIMILARITIES = ("cosine", "pearson")
_VALUE_TRANSFORMS = ("log1p", "binary", "none")
# bytes of one dense (users × users) similarity tile built while fitting
_FIT_BLOCK_BYTES = 32 * 2**20


def _tile_topk(negated: np.ndarray, k: int, offset: int):
    """The ``k`` largest entries of each row of a dense tile given negated (fewer
    columns: all), as (values, column + ``offset``)."""
    kk = min(k, negated.shape[1])
    if kk < negated.shape[1]:
        part = np.argpartition(negated, kk - 1, axis=1)[:, :kk]
        # rows whose k-th value is tied beyond the cut: redo them with a stable sort so
        # that the lower indices win, as in the full-row definition
        kth = np.take_along_axis(negated, part, axis=1).max(axis=1)
        tied = np.flatnonzero(((negated <= kth[:, None]).sum(axis=1) > kk) & (kth < 0))
        if len(tied):
            part[tied] = np.argsort(negated[tied], axis=1, kind="stable")[:, :kk]
    else:
        part = np.broadcast_to(np.arange(negated.shape[1]), negated.shape)
    return -np.take_along_axis(negated, part, axis=1), part + offset


def _merge_topk(val_a, idx_a, val_b, idx_b, k: int):
    """Per row, the ``k`` best of two candidate lists: larger value first, ties to the lower index."""
    val = np.hstack([val_a, val_b])
    idx = np.hstack([idx_a, idx_b])
    tie = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((tie, -val), axis=1)[:, :k]
    return np.take_along_axis(val, order, axis=1), np.take_along_axis(idx, order, axis=1)


def transform_values(r: sp.csr_matrix, value_transform: str) -> sp.csr_matrix:
    """``r`` with ``log1p``, ``binary`` (1 per stored entry) or ``none`` applied to its values."""
    if value_transform not in _VALUE_TRANSFORMS:
        raise ValueError(f"value_transform must be one of {_VALUE_TRANSFORMS}, got {value_transform!r}")
    r = r.copy()
    if value_transform == "log1p":
        r.data = np.log1p(np.maximum(r.data, 0))
    elif value_transform == "binary":
        r.data[:] = 1.0
    r.eliminate_zeros()
    return r


class UserKNNRanker(BaseRecommender):
    """User-based CF for top-N: similarity-weighted votes of the ``k`` nearest users.

    With ``x_u`` the user's row after ``value_transform`` (over decayed implicit
    weights, counts or ratings), the similarity of two users is

    - ``"cosine"``: ``x_u·x_v / (‖x_u‖ ‖x_v‖)`` over all items (absent = 0);
    - ``"pearson"``: the correlation of the two full rows (absent = 0), i.e. the cosine
      of the rows centred on their mean over the whole catalogue;

    multiplied by ``n_uv / (n_uv + shrinkage)`` (``n_uv``: items both users have, so
    that neighbours sharing one or two items count less) and raised to ``exponent``
    (larger values favour the closest neighbours). Only positive similarities are kept;
    ``N_k(u)`` holds the ``k`` largest (ties: lower user index), ``u`` itself excluded.
    Scores are the neighbours' votes, divided by the item's popularity to the power ``beta``

    ``score(u, i) = Σ_{v ∈ N_k(u)} s_uv · x_vi · pop(i)^-beta``

    (``x_vi`` is 1 for every stored entry with ``value_transform="binary"``; ``pop(i)`` is
    the number of users with the item). Each
    suggestion is explained as "customers with similar taste bought this"
    (``EXPLAIN_SIMILAR_USERS``) with the number of neighbours in ``N_k(u)`` who have the
    item (``Explanations.count``).

    Parameters
    ----------
    k : int
        Neighbours per user.
    similarity : {"cosine", "pearson"}
    shrinkage : float
        Significance weighting of small overlaps; 0 disables.
    exponent : float
        Power applied to the (shrunk) similarities.
    beta : float
        Popularity penalty on the votes (as PureSVD's); 0 disables.
    value_transform : {"log1p", "binary", "none"}
        Applied to the stored values before everything else.
    chunk_size : int, optional
        Users per chunk when scoring; default from a memory budget.
    n_threads : int, optional
        BLAS/OpenMP threads, and the threads that share the tiles of the user × user
        similarities while fitting; default all available cores.

    Fitting computes the similarities tile by tile (about 2,000 × 2,000 users, 32 MB),
    only the tiles on and above the diagonal (the matrix is symmetric, so each serves
    both groups of users), and keeps a running top ``k`` per user: memory is
    ``n_users × k`` plus a few tiles, never ``n_users × n_users``.

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
        The transformed training matrix ``x``.
    similarity_ : csr_matrix, shape (n_users, n_users)
        Row ``u``: ``u``'s neighbours and their weights ``s_uv`` (at most ``k``).
    item_weights_ : ndarray, shape (n_items,)
        ``pop(i)^-beta`` (0 for items nobody has).
    votes_ : csr_matrix, shape (n_users, n_items)
        ``x · diag(item_weights_)``: what each neighbour contributes.
    """

    _explain_kind = EXPLAIN_SIMILAR_USERS

    def __init__(
        self,
        k: int = 100,
        similarity: str = "cosine",
        shrinkage: float = 0.0,
        exponent: float = 1.0,
        beta: float = 0.0,
        value_transform: str = "log1p",
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.k = k
        self.similarity = similarity
        self.shrinkage = shrinkage
        self.exponent = exponent
        self.beta = beta
        self.value_transform = value_transform
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def fit(self, user_items) -> UserKNNRanker:
        """Find every user's ``k`` nearest neighbours.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)
            Stored entries are observations (decayed implicit weights, counts, ratings).

        Returns
        -------
        self
        """
        if self.similarity not in _RANKER_SIMILARITIES:
            raise ValueError(f"similarity must be one of {_RANKER_SIMILARITIES}, got {self.similarity!r}")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        if self.shrinkage < 0 or self.exponent <= 0:
            raise ValueError("shrinkage must be >= 0 and exponent > 0")
        x = transform_values(check_user_items(user_items), self.value_transform)
        with capped_threads(self.n_threads):
            self.user_items_ = x
            self.similarity_ = self._neighbours(x)
            self.similarity_.sort_indices()
            pop = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)
            self.item_weights_ = np.where(pop > 0, np.power(np.maximum(pop, 1.0), -self.beta), 0.0)
            self.votes_ = (x @ sp.diags(self.item_weights_)).tocsr()
            self._pattern = sp.csr_matrix((np.ones(x.nnz), x.indices, x.indptr), shape=x.shape)
        return self

    def _neighbours(self, x: sp.csr_matrix) -> sp.csr_matrix:
        # The user-user similarities are computed tile by tile (users I × users J, J >= I):
        # the matrix is symmetric, so each tile serves I's rows and, transposed, J's rows,
        # halving the products; each tile is cut to its k best per row at once and merged
        # into a running (n_users × k) top-k, so no user × user matrix is ever held.
        n_users, n_items = x.shape
        b = sp.csr_matrix((np.ones(x.nnz), x.indices, x.indptr), shape=x.shape)
        sums = np.asarray(x.sum(axis=1)).ravel()
        sq = np.asarray(x.multiply(x).sum(axis=1)).ravel()
        if self.similarity == "pearson":
            mean = sums / max(n_items, 1)
            norm = np.sqrt(np.maximum(sq - n_items * mean**2, 0.0))
        else:
            mean = None
            norm = np.sqrt(sq)
        inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
        k = min(self.k, max(n_users - 1, 1))
        step = max(1, int(np.sqrt(_FIT_BLOCK_BYTES / 8)))
        parts = list(chunks(n_users, step))
        x_t = [x[sl].T.tocsr() for sl in parts]
        b_t = [b[sl].T.tocsr() for sl in parts] if self.shrinkage else None

        local = threading.local()

        def buffers(shape):
            # each thread reuses three tile-sized arrays: fresh 32 MB arrays cost page faults
            if not hasattr(local, "flat"):
                local.flat = [np.empty(step * step) for _ in range(3)]
            size = shape[0] * shape[1]
            return [f[:size].reshape(shape) for f in local.flat]

        def tile(ij):
            i, j = ij
            si, sj = parts[i], parts[j]
            s, co, tmp = buffers((si.stop - si.start, sj.stop - sj.start))
            s.fill(0.0)
            (x[si] @ x_t[j]).toarray(out=s)
            if mean is not None:
                np.multiply(mean[si, None], mean[None, sj], out=tmp)
                tmp *= n_items
                s -= tmp  # Σ (x_ui − m_u)(x_vi − m_v)
            s *= inv[si, None]
            s *= inv[None, sj]
            if self.shrinkage:
                co.fill(0.0)
                (b[si] @ b_t[j]).toarray(out=co)
                np.add(co, self.shrinkage, out=tmp)
                np.divide(co, tmp, out=co)
                s *= co
            if i == j:
                np.fill_diagonal(s, 0.0)
            np.maximum(s, 0.0, out=s)
            if self.exponent != 1.0:
                np.power(s, self.exponent, out=s)
            np.negative(s, out=tmp)
            rows = _tile_topk(tmp, k, sj.start)
            cols = _tile_topk(tmp.T, k, si.start) if i != j else None
            return i, j, rows, cols

        best_val = np.zeros((n_users, k))
        best_idx = np.full((n_users, k), -1, dtype=np.int64)

        def merge(sl, top):
            val, idx = top
            best_val[sl], best_idx[sl] = _merge_topk(best_val[sl], best_idx[sl], val, idx, k)

        tiles = [(i, j) for i in range(len(parts)) for j in range(i, len(parts))]
        workers = min(n_threads_or_default(self.n_threads), len(tiles))
        # numpy and scipy.sparse release the GIL in the products and the partition;
        # the merges happen here, one tile at a time, in the tiles' order
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for i, j, rows, cols in pool.map(tile, tiles):
                    merge(parts[i], rows)
                    if cols is not None:
                        merge(parts[j], cols)
        else:
            for i, j, rows, cols in map(tile, tiles):
                merge(parts[i], rows)
                if cols is not None:
                    merge(parts[j], cols)
        keep = best_val > 0
        order = np.argsort(np.where(keep, best_idx, n_users), axis=1, kind="stable")
        best_idx = np.take_along_axis(best_idx, order, axis=1)
        best_val = np.take_along_axis(best_val, order, axis=1)
        keep = np.take_along_axis(keep, order, axis=1)
        indptr = np.r_[0, np.cumsum(keep.sum(axis=1))]
        return _assemble([best_val[keep]], [best_idx[keep]], indptr, (n_users, n_users), np.float64)

    def _score_block(self, users):
        return (self.similarity_[users] @ self.votes_).toarray()

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Ranking scores ``Σ_v s_uv x_vi`` of ``(user, item)`` pairs, shape (n_pairs,)."""
        self._check_fitted()
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        i = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        lookup = SparseLookup(self.votes_)
        w = self.similarity_
        pos, owner = gather_ranges(w.indptr, u)
        votes = w.data[pos] * lookup(w.indices[pos], i[owner])
        return np.bincount(owner, weights=votes, minlength=len(u))

    def voters(self, user_idx, item_idx) -> np.ndarray:
        """How many of each user's neighbours have each item.

        Parameters
        ----------
        user_idx : array-like of int, shape (n_rows,)
        item_idx : array-like of int, shape (n_rows, n)
            ``-1`` entries get 0.

        Returns
        -------
        ndarray of int64, shape (n_rows, n)
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        items = np.asarray(item_idx, dtype=np.int64).reshape(len(users), -1)
        w = self.similarity_[users]
        hood = sp.csr_matrix((np.ones(w.nnz), w.indices, w.indptr), shape=w.shape)
        counts = (hood @ self._pattern).tocsr()
        rows = np.broadcast_to(np.arange(len(users))[:, None], items.shape)
        out = SparseLookup(counts)(rows.ravel(), np.maximum(items, 0).ravel()).reshape(items.shape)
        out = np.rint(out).astype(np.int64)
        out[items < 0] = 0
        return out

    def _explain_pairs(self, users, items):
        count = self.voters(users, items)
        kind = np.where(count > 0, EXPLAIN_SIMILAR_USERS, EXPLAIN_NONE).astype(np.int8)
        return Explanations(kind=kind, item=np.full(items.shape, -1, dtype=np.int64), count=count)

    def similar_users(self, user_idx, n: int = 10):
        """Each query user's ``n`` nearest neighbours (at most ``k``) and their weights.

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n), ``-1`` padding
        scores : ndarray of float64, shape (n_queries, n), ``-inf`` padding
        """
        self._check_fitted()
        return _top_rows(self.similarity_, np.atleast_1d(np.asarray(user_idx, dtype=np.int64)), n)
