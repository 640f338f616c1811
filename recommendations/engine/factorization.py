"""Latent-factor model: PureSVD with a popularity penalty (the product default)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from ._base import (
    EXPLAIN_ITEM,
    BaseRecommender,
    Explanations,
    capped_threads,
    check_user_items,
    chunks,
    gather_ranges,
)


class PureSVD(BaseRecommender):
    """PureSVD (Cremonesi, Koren & Turrin 2010) on popularity-scaled columns.

    The training values ``x_ui`` (after ``value_transform``) form ``X``; its columns are
    scaled by ``pop(i)^-β`` (``pop``: number of users with an entry) and a truncated
    SVD ``X·diag(pop^-β) ≈ U Σ Vᵀ`` keeps ``factors`` components. Scores fold the user
    in: ``score(u, ·) = x_u V Vᵀ``, i.e. an item-item model ``W = V Vᵀ`` of rank
    ``factors``; so each suggestion ``i`` is explained by the user's item ``j`` with
    the largest ``x_uj · (v_j · v_i)`` ("because you bought X").

    Parameters
    ----------
    factors : int
        Rank of the truncated SVD.
    beta : float
        Popularity penalty on the columns before the SVD (0 = plain PureSVD).
    value_transform : {"log1p", "binary", "none"}
        Applied to the stored values (counts, decayed weights or ratings).
    n_iter : int
        Power iterations of the randomized SVD.
    random_state : int
        Seed of the randomized SVD.
    chunk_size : int, optional
        Users per chunk when scoring.
    n_threads : int, optional
        BLAS/OpenMP threads.

    Attributes
    ----------
    user_items_ : csr_matrix of float32, shape (n_users, n_items)
        The transformed training matrix.
    item_factors_ : ndarray of float32, shape (n_items, factors)
        ``V``.
    singular_values_ : ndarray, shape (factors,)
    """

    _block_factor = 2

    def __init__(
        self,
        factors: int = 32,
        beta: float = 0.2,
        value_transform: str = "log1p",
        n_iter: int = 5,
        random_state: int = 0,
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.factors = factors
        self.beta = beta
        self.value_transform = value_transform
        self.n_iter = n_iter
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def fit(self, user_items) -> PureSVD:
        """Factorise the (transformed, column-scaled) training matrix.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)

        Returns
        -------
        self
        """
        r = check_user_items(user_items, dtype=np.float32)
        if self.value_transform == "log1p":
            r.data = np.log1p(np.maximum(r.data, 0)).astype(np.float32)
        elif self.value_transform == "binary":
            r.data[:] = 1.0
        elif self.value_transform != "none":
            raise ValueError("value_transform must be 'log1p', 'binary' or 'none'")
        r.eliminate_zeros()
        with capped_threads(self.n_threads):
            self.user_items_ = r
            pop = np.bincount(r.indices, minlength=r.shape[1]).astype(np.float64)
            scale = np.where(pop > 0, np.power(np.maximum(pop, 1.0), -self.beta), 0.0).astype(np.float32)
            scaled = (r @ sp.diags(scale)).tocsr()
            rank = int(max(1, min(self.factors, min(r.shape) - 1)))
            _, s, vt = randomized_svd(scaled, rank, n_iter=self.n_iter, random_state=self.random_state)
            self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)
            self.singular_values_ = s
        return self

    def _score_block(self, users):
        v = self.item_factors_
        return np.asarray(self.user_items_[users] @ v) @ v.T

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Ranking scores of ``(user, item)`` pairs, shape (n_pairs,)."""
        self._check_fitted()
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        i = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        v = self.item_factors_
        out = np.empty(len(u))
        for sl in chunks(len(u), 65536):
            out[sl] = np.einsum("pf,pf->p", np.asarray(self.user_items_[u[sl]] @ v), v[i[sl]])
        return out

    def similar_items(self, item_idx, n: int = 10):
        """Items with the largest ``v_i · v_j`` (the model's item-item weights).

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n)
        scores : ndarray of float64, shape (n_queries, n)
        """
        from ._base import topn_from_scores

        self._check_fitted()
        q = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        v = self.item_factors_
        scores = (v[q] @ v.T).astype(np.float64)
        scores[np.arange(len(q)), q] = -np.inf
        return topn_from_scores(scores, n)

    def _explain_pairs(self, users, items, max_entries: int = 250_000):
        items = np.asarray(items, dtype=np.int64)
        n_rows, n_cols = items.shape
        kind = np.zeros(items.shape, dtype=np.int8)
        src = np.full(items.shape, -1, dtype=np.int64)
        r, v = self.user_items_, self.item_factors_
        deg = np.diff(r.indptr)[users]
        step = max(1, int(max_entries // (max(1.0, float(deg.mean()) if deg.size else 1.0) * max(1, n_cols))))
        for sl in chunks(n_rows, step):
            rows = np.arange(sl.start, sl.stop)
            pair_item = items[rows].reshape(-1)
            pos, owner = gather_ranges(r.indptr, np.repeat(users[rows], n_cols))
            target = pair_item[owner]
            own = r.indices[pos].astype(np.int64)
            contrib = r.data[pos] * np.einsum("ef,ef->e", v[own], v[np.maximum(target, 0)])
            valid = (target >= 0) & (contrib > 0)
            owner, own, contrib = owner[valid], own[valid], contrib[valid]
            if not owner.size:
                continue
            order = np.lexsort((own, -contrib, owner))
            first = np.r_[True, owner[order][1:] != owner[order][:-1]]
            best = order[first]
            flat_k = np.zeros(len(rows) * n_cols, dtype=np.int8)
            flat_s = np.full(len(rows) * n_cols, -1, dtype=np.int64)
            flat_k[owner[best]] = EXPLAIN_ITEM
            flat_s[owner[best]] = own[best]
            kind[rows] = flat_k.reshape(-1, n_cols)
            src[rows] = flat_s.reshape(-1, n_cols)
        return Explanations(kind=kind, item=src)
