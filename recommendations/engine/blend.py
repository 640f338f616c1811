"""A weighted blend of recommenders (e.g. user-based + item-based CF as one configuration)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._base import (
    EXPLAIN_NONE,
    BaseRecommender,
    Explanations,
    capped_threads,
    check_user_items,
    chunks,
    row_ids,
    topn_from_scores,
)

_NORMALISATIONS = ("minmax", "zscore", "rank")
# entries of the dense (query items × n_items) blocks of similar_items
_SIMILAR_BLOCK_ENTRIES = 4_000_000


def normalise_rows(scores: np.ndarray, candidates: np.ndarray, how: str) -> np.ndarray:
    """Per-row affine normalisation of a score block over each row's candidate items.

    Parameters
    ----------
    scores : ndarray of float, shape (n_rows, n_items)
    candidates : ndarray of bool, shape (n_rows, n_items)
        The items each row's statistics are taken over (the items that may be
        recommended); the same affine map is then applied to the whole row.
    how : {"minmax", "zscore", "rank"}
        ``"minmax"``: ``(s − min) / (max − min)``, so the best candidate is 1 and the worst
        0; ``"zscore"``: ``(s − mean) / std``; ``"rank"``: the candidate's rank among the
        row's candidates (ties share their mean rank) mapped linearly to [0, 1], best 1,
        so only the order of each component's scores counts (not an affine map: items that
        are not candidates get 0). A row whose candidates all score the same (or that has
        none) becomes 0.

    Returns
    -------
    ndarray of float64, shape (n_rows, n_items)
        Non-finite scores become the row's lowest normalised value.
    """
    s = np.asarray(scores, dtype=np.float64)
    if how == "rank":
        return _rank_rows(s, candidates)
    finite = np.isfinite(s)
    use = candidates & finite
    has = use.any(axis=1)
    if how == "minmax":
        lo = np.where(use, s, np.inf).min(axis=1)
        hi = np.where(use, s, -np.inf).max(axis=1)
        centre, spread = lo, hi - lo
    elif how == "zscore":
        n = np.maximum(use.sum(axis=1), 1)
        centre = np.where(use, s, 0.0).sum(axis=1) / n
        spread = np.sqrt(np.where(use, (s - centre[:, None]) ** 2, 0.0).sum(axis=1) / n)
    else:
        raise ValueError(f"normalisation must be one of {_NORMALISATIONS}, got {how!r}")
    ok = has & (spread > 0) & np.isfinite(spread)
    centre = np.where(ok, centre, 0.0)
    scale = np.divide(1.0, spread, out=np.zeros_like(spread, dtype=np.float64), where=ok)
    out = (np.where(finite, s, 0.0) - centre[:, None]) * scale[:, None]
    if not finite.all():
        floor = np.where(use, out, np.inf).min(axis=1)
        floor = np.where(np.isfinite(floor), floor, 0.0)
        out = np.where(finite, out, floor[:, None])
    return out


def _rank_rows(s: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    cand = np.asarray(candidates, dtype=bool)
    n_cand = cand.sum(axis=1)
    # non-candidates below every candidate (NaN and -inf candidates tie just above them)
    low = np.where(cand, np.nan_to_num(s, nan=-np.inf, neginf=-np.inf), -np.inf)
    low = np.where(cand & ~np.isfinite(low), np.finfo(np.float64).min, low)
    rank = rankdata(low, method="average", axis=1) - (s.shape[1] - n_cand)[:, None] - 1.0
    spread = rank.max(axis=1, initial=0.0, where=cand) - rank.min(axis=1, initial=np.inf, where=cand)
    scale = np.where(spread > 0, 1.0 / np.maximum(n_cand - 1, 1), 0.0)
    return np.where(cand, rank * scale[:, None], 0.0)


class Blend(BaseRecommender):
    """Weighted sum of several recommenders' per-user normalised scores.

    ``score(u, i) = Σ_c w_c · norm_u(score_c(u, i))`` where ``norm_u`` maps each
    component's scores for user ``u`` by an affine function fitted on ``u``'s
    candidate items (those without a training entry for ``u``): ``"minmax"`` sends the
    best candidate to 1 and the worst to 0, ``"zscore"`` gives them mean 0 and standard
    deviation 1 (``"rank"``, not affine, replaces scores by their rank among the
    candidates, see :func:`normalise_rows`). Components on different scales (votes, cosines, factor products) then
    add up; a component of weight 0 has no effect, so the blend ranks exactly as the
    others do. Each suggestion takes the explanation of the component with the largest
    ``w_c · norm_u(score_c(u, i))`` for it.

    Parameters
    ----------
    components : list of recommenders
        Fitted or not (see ``prefit``).
    weights : list of float, optional
        One per component, >= 0; default equal weights.
    normalisation : {"minmax", "zscore", "rank"}
    prefit : bool
        Use the components as they are (already fitted on this matrix's rows and
        columns) instead of fitting each of them in :meth:`fit`.
    chunk_size : int, optional
        Users per chunk when scoring.
    n_threads : int, optional
        BLAS/OpenMP threads (each component keeps its own setting while fitting).

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
        The training matrix (its pattern defines each user's candidates).
    components_ : list of fitted recommenders
    weights_ : ndarray of float, shape (n_components,)
    """

    def __init__(
        self,
        components,
        weights=None,
        normalisation: str = "minmax",
        prefit: bool = False,
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.components = components
        self.weights = weights
        self.normalisation = normalisation
        self.prefit = prefit
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    @property
    def _block_factor(self) -> int:  # every component's block plus the sum and masks
        return 3 + 2 * len(self.components)

    @property
    def uses_timestamps(self) -> bool:
        return any(getattr(c, "uses_timestamps", False) for c in self.components)

    def fit(self, user_items, *, timestamps=None) -> Blend:
        """Fit every component on ``user_items`` (unless ``prefit``).

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)
        timestamps : sparse matrix, shape (n_users, n_items), optional
            Each pair's latest event time, passed on to the components that order histories
            (``uses_timestamps``, e.g. ``SASRec``).

        Returns
        -------
        self
        """
        components = list(self.components)
        if not components:
            raise ValueError("a blend needs at least one component")
        weights = np.ones(len(components)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if weights.shape != (len(components),) or (weights < 0).any() or not np.isfinite(weights).all():
            raise ValueError("weights must be one finite value >= 0 per component")
        if not weights.sum() > 0:
            raise ValueError("at least one weight must be positive")
        if self.normalisation not in _NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {_NORMALISATIONS}, got {self.normalisation!r}")
        r = check_user_items(user_items)
        for c in components:
            if self.prefit:
                c._check_fitted()
                if c.user_items_.shape != r.shape:
                    raise ValueError(f"{type(c).__name__} was fitted on shape {c.user_items_.shape}, not {r.shape}")
            elif timestamps is not None and getattr(c, "uses_timestamps", False):
                c.fit(r, timestamps=timestamps)
            else:
                c.fit(r)
        self.user_items_ = r
        self.components_ = components
        self.weights_ = weights
        self._pattern = sp.csr_matrix((np.ones(r.nnz, dtype=bool), r.indices, r.indptr), shape=r.shape)
        return self

    def _candidates(self, users) -> np.ndarray:
        block = self._pattern[users]
        cand = np.ones((len(users), self.n_items_), dtype=bool)
        cand[row_ids(block), block.indices] = False
        return cand

    def _normalised(self, users) -> list[np.ndarray]:
        cand = self._candidates(users)
        out = []
        for c, w in zip(self.components_, self.weights_, strict=True):
            if w == 0:
                out.append(None)
                continue
            out.append(w * normalise_rows(c._score_block(users), cand, self.normalisation))
        return out

    def _score_block(self, users):
        total = np.zeros((len(users), self.n_items_))
        for part in self._normalised(users):
            if part is not None:
                total += part
        return total

    def _explain_pairs(self, users, items):
        parts = self._normalised(users)
        safe = np.maximum(items, 0)
        best = np.full(items.shape, -1, dtype=np.int64)
        top = np.full(items.shape, -np.inf)
        for c, part in enumerate(parts):
            if part is None:
                continue
            val = np.take_along_axis(part, safe, axis=1)
            better = val > top  # ties: the earlier component
            best[better], top[better] = c, val[better]
        kind = np.full(items.shape, EXPLAIN_NONE, dtype=np.int8)
        src = np.full(items.shape, -1, dtype=np.int64)
        count = np.zeros(items.shape, dtype=np.int64)
        for c, comp in enumerate(self.components_):
            mine = (best == c) & (items >= 0)
            if not mine.any():
                continue
            rows = np.flatnonzero(mine.any(axis=1))
            ex = comp._explain_pairs(users[rows], items[rows])
            sel = mine[rows]
            kind_rows, src_rows, count_rows = kind[rows], src[rows], count[rows]
            kind_rows[sel], src_rows[sel], count_rows[sel] = ex.kind[sel], ex.item[sel], ex.count[sel]
            kind[rows], src[rows], count[rows] = kind_rows, src_rows, count_rows
        return Explanations(kind=kind, item=src, count=count)

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Blended scores of ``(user, item)`` pairs, shape (n_pairs,)."""
        self._check_fitted()
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        i = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        users, inverse = np.unique(u, return_inverse=True)
        out = np.empty(len(u))
        with capped_threads(self.n_threads):
            for sl in chunks(len(users), self._user_chunk_size()):
                block = self._score_block(users[sl])
                mine = (inverse >= sl.start) & (inverse < sl.stop)
                out[mine] = block[inverse[mine] - sl.start, i[mine]]
        return out

    def similar_items(self, item_idx, n: int = 10):
        """Items most similar to each query item by the weighted sum of the components'
        normalised item-item scores (components without ``similar_items``, such as
        user-based ones, are left out and the others keep their weights).

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n), ``-1`` padding
        scores : ndarray of float64, shape (n_queries, n)
        """
        self._check_fitted()
        usable = [(c, w) for c, w in zip(self.components_, self.weights_, strict=True) if w > 0]
        usable = [(c, w) for c, w in usable if hasattr(c, "similar_items")]
        if not usable:
            raise NotImplementedError("no component of this blend has similar_items")
        q = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        n_items = self.n_items_
        idx_out = np.full((len(q), n), -1, dtype=np.int64)
        val_out = np.full((len(q), n), -np.inf)
        with capped_threads(self.n_threads):
            for sl in chunks(len(q), max(1, _SIMILAR_BLOCK_ENTRIES // max(1, n_items))):
                qq = q[sl]
                cand = np.ones((len(qq), n_items), dtype=bool)
                cand[np.arange(len(qq)), qq] = False
                total = np.zeros((len(qq), n_items))
                known = np.zeros((len(qq), n_items), dtype=bool)
                for c, w in usable:
                    idx, val = c.similar_items(qq, n=n_items)
                    dense = np.full((len(qq), n_items), -np.inf)
                    ok = idx >= 0
                    dense[np.nonzero(ok)[0], idx[ok]] = val[ok]
                    present = np.isfinite(dense)
                    known |= present
                    total += w * normalise_rows(dense, cand & present, self.normalisation)
                total[~known] = -np.inf
                total[np.arange(len(qq)), qq] = -np.inf
                idx_out[sl], val_out[sl] = topn_from_scores(total, n)
        return idx_out, val_out
