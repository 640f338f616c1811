"""Graph-based item-to-item model: RP3beta (random walks of length 3, popularity-penalised)."""

from __future__ import annotations

import numpy as np

from ._base import BaseRecommender, capped_threads, check_user_items, chunks, item_explanations, row_ids
from .knn import _append_topk, _assemble, _top_rows

# bytes of the dense (item chunk × n_items) block built while fitting
_FIT_BLOCK_BYTES = 64 * 2**20


class RP3beta(BaseRecommender):
    """RP3beta (Paudel et al. 2017; Dacrema et al. 2019).

    With ``P_ui = x_ui / Σ_j x_uj`` (user → item) and ``P_iu = x_ui / Σ_v x_vi``
    (item → user), the item-item weight is

    ``W_ij = (Σ_u P_iu^α · P_uj^α) / pop(j)^β``

    keeping the ``k`` largest weights of each row ``i``; scores are
    ``score(u, j) = Σ_i x_ui · W_ij``. ``β`` penalises popular targets. Each suggestion
    is explained by the user's item ``i`` with the largest ``x_ui · W_ij``.

    Parameters
    ----------
    alpha : float
        Exponent on the transition probabilities.
    beta : float
        Popularity penalty (0 = P3alpha).
    k : int
        Neighbours kept per item.
    binary : bool
        Use 1 for every stored entry (implicit feedback) instead of its value.
    value_transform : {"none", "log1p"}
        Applied to the values when ``binary`` is false (repeat purchases count, but
        less than linearly).
    normalize_rows : bool
        Scale each kept row of ``W`` to sum to 1.
    chunk_size : int, optional
        Users per chunk when scoring.
    n_threads : int, optional
        BLAS/OpenMP threads.

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
        The (transformed) training matrix used for scoring.
    similarity_ : csr_matrix of float32, shape (n_items, n_items)
        ``W``, at most ``k`` entries per row.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.5,
        k: int = 200,
        binary: bool = True,
        value_transform: str = "none",
        normalize_rows: bool = False,
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.binary = binary
        self.value_transform = value_transform
        self.normalize_rows = normalize_rows
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def fit(self, user_items) -> RP3beta:
        """Build the item-item graph weights.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)

        Returns
        -------
        self
        """
        r = check_user_items(user_items, dtype=np.float32)
        if self.binary:
            r.data[:] = 1.0
        elif self.value_transform == "log1p":
            r.data = np.log1p(r.data)
        elif self.value_transform != "none":
            raise ValueError("value_transform must be 'none' or 'log1p'")
        with capped_threads(self.n_threads):
            self.user_items_ = r
            n_items = r.shape[1]
            row_sum = np.asarray(r.sum(axis=1)).ravel()
            col_sum = np.asarray(r.sum(axis=0)).ravel()
            p_ui = r.copy()
            p_ui.data = (r.data / row_sum[row_ids(r)]) ** self.alpha
            rt = r.T.tocsr()
            p_iu = rt.copy()
            p_iu.data = (rt.data / col_sum[row_ids(rt)]) ** self.alpha
            pop = np.bincount(r.indices, minlength=n_items).astype(np.float32)
            penalty = np.where(pop > 0, np.power(np.maximum(pop, 1), -self.beta), 0).astype(np.float32)
            step = max(1, int(_FIT_BLOCK_BYTES // (4 * max(1, n_items))))
            data, indices, indptr = [], [], [0]
            for sl in chunks(n_items, step):
                block = (p_iu[sl] @ p_ui).toarray()
                block *= penalty[None, :]
                rows = np.arange(sl.start, sl.stop)
                block[rows - sl.start, rows] = 0.0
                _append_topk(block, self.k, data, indices, indptr)
            w = _assemble(data, indices, indptr, (n_items, n_items), np.float32)
            if self.normalize_rows:
                s = np.asarray(w.sum(axis=1)).ravel()
                w.data /= np.where(s > 0, s, 1)[row_ids(w)]
            self.similarity_ = w
        return self

    def _score_block(self, users):
        return (self.user_items_[users] @ self.similarity_).toarray()

    def _explain_pairs(self, users, items):
        return item_explanations(self.user_items_, self.similarity_, users, items)

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Ranking scores of ``(user, item)`` pairs, shape (n_pairs,)."""
        from .knn import ItemKNN

        return ItemKNN.predict(self, user_idx, item_idx)

    def similar_items(self, item_idx, n: int = 10):
        """Items most often reached from each query item (rows of ``W``).

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n), ``-1`` padding
        scores : ndarray of float64, shape (n_queries, n)
        """
        self._check_fitted()
        return _top_rows(self.similarity_, np.atleast_1d(np.asarray(item_idx, dtype=np.int64)), n)
