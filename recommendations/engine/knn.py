"""Neighbourhood models: user-based (:class:`UserKNN`) and item-based (:class:`ItemKNN`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ._base import (
    EXPLAIN_SIMILAR_USERS,
    BaseRecommender,
    SparseLookup,
    capped_threads,
    check_user_items,
    chunks,
    gather_ranges,
    item_explanations,
    n_threads_or_default,
    row_ids,
    topk_per_row,
)

_USER_SIMILARITIES = ("pearson", "cosine", "msd")
_ITEM_SIMILARITIES = ("cosine", "adjusted_cosine")
# entries of the (chunk × neighbours) products held at once while computing similarities
_SIM_CHUNK_ENTRIES = 8_000_000
# elements of the (users × items × raters) block used by the per-item neighbourhood
_PER_ITEM_BLOCK = 500_000
# cost of one padded rater in a row of scores relative to one (pair, rater) entry of
# the per-pair path (see UserKNN._blocks_are_cheaper)
_ROW_VS_PAIR_COST = 1 / 50
# populations small enough for dense user × user and user × item arrays
_DENSE_SIM_MAX = 16_000_000


def _on_pattern(p: sp.csr_matrix, ref: sp.csr_matrix, ref_keys: np.ndarray | None = None) -> np.ndarray:
    """Values of ``p`` on the stored pattern of ``ref`` (``p``'s pattern must be a subset).

    Sparse products drop entries that cancel to zero, so patterns of products of
    signed matrices can be smaller than the co-occurrence pattern.
    """
    p = sp.csr_matrix(p)
    p.sort_indices()
    if p.nnz == ref.nnz:
        return p.data
    if ref_keys is None:
        ref_keys = row_ids(ref) * ref.shape[1] + ref.indices
    keys = row_ids(p) * p.shape[1] + p.indices
    out = np.zeros(ref.nnz, dtype=np.float64)
    out[np.searchsorted(ref_keys, keys)] = p.data
    return out


def _exact_in_float32(x: sp.csr_matrix) -> bool:
    """Whether float32 products of ``x`` (and of its square and pattern) with their
    transposes are exact: integer values whose sums of squares stay below 2**24."""
    d = x.data
    if d.size == 0:
        return True
    per_row = int(np.diff(x.indptr).max())
    top = float(np.abs(d).max())
    return bool(top * top * per_row < 2**24 and np.array_equal(d, np.round(d)))


def _group_positions(group: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal ``group`` values (sorted input)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.r_[True, group[1:] != group[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


class UserKNN(BaseRecommender):
    """User-based collaborative filtering with mean-centred neighbour ratings.

    ``P(u,i) = mean(u) + Σ_{v∈S(u,K)} w_uv·(R_vi − mean(v)) / Σ_{v∈S(u,K)} |w_uv|``

    where the sums run over the neighbours that rated ``i``, means are taken over each
    user's observed entries only, and only neighbours with ``w_uv > 0`` contribute
    (as in scikit-surprise's ``KNNWithMeans``).

    Parameters
    ----------
    k : int
        Number of neighbours ``K``.
    similarity : {"pearson", "cosine", "msd"}
        Computed, for each pair of users, over the items both rated (co-rated items)
        exactly as scikit-surprise does: Pearson correlation centred on the co-rated
        means, cosine of the raw co-rated ratings, or ``1 / (1 + mean squared
        difference)``.
    shrinkage : float
        Shrink each similarity by ``n_uv / (n_uv + shrinkage)`` (``n_uv``: number of
        co-rated items); 0 disables.
    min_support : int
        Similarities of pairs with fewer than ``min_support`` co-rated items are 0.
    neighbourhood : {"global", "per_item"}
        ``"per_item"``: for each ``(u, i)`` the ``K`` most similar users among those
        who rated ``i`` (rating-prediction benchmarks; needs all user-user
        similarities, ``O(n_users²)`` memory). ``"global"``: ``u``'s ``K`` most similar
        users, chosen once (scales to large populations for top-N).
    min_k : int
        With fewer than ``min_k`` contributing neighbours the prediction is ``mean(u)``.
    rating_range : "auto", (float, float) or None
        Predictions are clipped to this range; ``"auto"`` uses the min and max of the
        training values; ``None`` disables clipping.
    chunk_size : int, optional
        Users per chunk when scoring; default from a memory budget.
    n_threads : int, optional
        BLAS/OpenMP threads (threadpoolctl), and the threads that share the per-item
        top-K when scoring; default all available cores.

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
        Training matrix.
    user_means_ : ndarray, shape (n_users,)
        Mean of each user's observed values (global mean for users without any).
    global_mean_ : float
        Mean of all observed values; the prediction for unknown users or items.
    similarity_ : csr_matrix, shape (n_users, n_users)
        Positive similarities. ``"per_item"``: all of them, diagonal set to 1 (a user
        is its own neighbour for items it rated, as in surprise). ``"global"``: the
        ``k`` best neighbours of each user, diagonal excluded.
    rating_range_ : tuple of float or None
    """

    _explain_kind = EXPLAIN_SIMILAR_USERS

    def __init__(
        self,
        k: int = 40,
        similarity: str = "pearson",
        shrinkage: float = 0.0,
        min_support: int = 1,
        neighbourhood: str = "global",
        min_k: int = 1,
        rating_range="auto",
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.k = k
        self.similarity = similarity
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.neighbourhood = neighbourhood
        self.min_k = min_k
        self.rating_range = rating_range
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    # -- fitting -------------------------------------------------------------------
    def fit(self, user_items) -> UserKNN:
        """Compute means and user-user similarities.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)
            Stored entries are the observed ratings (or implicit weights).

        Returns
        -------
        self
        """
        if self.similarity not in _USER_SIMILARITIES:
            raise ValueError(f"similarity must be one of {_USER_SIMILARITIES}, got {self.similarity!r}")
        if self.neighbourhood not in ("global", "per_item"):
            raise ValueError(f"neighbourhood must be 'global' or 'per_item', got {self.neighbourhood!r}")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        r = check_user_items(user_items)
        with capped_threads(self.n_threads):
            self.user_items_ = r
            counts = np.diff(r.indptr)
            self.global_mean_ = float(r.data.mean()) if r.nnz else 0.0
            sums = np.asarray(r.sum(axis=1)).ravel()
            self.user_means_ = np.where(counts > 0, sums / np.maximum(counts, 1), self.global_mean_)
            self.item_support_ = np.bincount(r.indices, minlength=r.shape[1])
            if self.rating_range == "auto":
                self.rating_range_ = (float(r.data.min()), float(r.data.max())) if r.nnz else None
            elif self.rating_range is None:
                self.rating_range_ = None
            else:
                lo, hi = self.rating_range
                self.rating_range_ = (float(lo), float(hi))
            centred = r.copy()
            centred.data = r.data - self.user_means_[row_ids(r)]
            self.centred_ = centred
            self._pattern = sp.csr_matrix((np.ones(r.nnz), r.indices, r.indptr), shape=r.shape)
            if self.neighbourhood == "per_item":
                # a user is its own neighbour (similarity 1) for the items it rated
                sim = self._similarities(r, diagonal=np.where(counts > 0, 1.0, 0.0))
                self._prepare_per_item()
            else:
                sim = self._similarities(r, diagonal=np.zeros(r.shape[0]))
                sim = topk_per_row(sim, self.k)
                sim.sort_indices()
            self.similarity_ = sim
            self._sim_lookup = None
        return self

    def _similarities(self, r: sp.csr_matrix, diagonal: np.ndarray) -> sp.csr_matrix:
        """Positive user-user similarities over co-rated items, in chunks of users.

        ``diagonal`` (shape ``(n_users,)``) replaces each user's similarity with itself.
        """
        x = r.copy()
        if self.similarity in ("pearson", "msd") and x.nnz and x.data.min() <= 0:
            # both are shift-invariant; a positive shift keeps every co-rated pair in the
            # products' patterns (an integer shift keeps integer sums exact)
            x.data = x.data + (1.0 - np.floor(x.data.min()))
        b = self._pattern
        x2 = x.multiply(x).tocsr()
        bt, xt, x2t = b.T.tocsr(), x.T.tocsr(), x2.T.tocsr()
        n_users = r.shape[0]
        if n_users * n_users <= _DENSE_SIM_MAX and n_users * r.shape[1] <= _DENSE_SIM_MAX:
            return self._similarities_dense(x, b, x2, diagonal)
        # co-raters per user is bounded by n_users and by Σ_i∈I(u) |U_i|
        co = np.asarray(b @ (b.T @ np.ones(n_users))).ravel() if r.nnz else np.zeros(n_users)
        est = np.minimum(co, n_users).mean() if n_users else 1
        step = max(1, int(_SIM_CHUNK_ENTRIES // max(1.0, est)))
        parts = []
        for sl in chunks(n_users, step):
            bc, xc, x2c = b[sl], x[sl], x2[sl]
            n = bc @ bt
            n.sort_indices()
            keys = row_ids(n) * n.shape[1] + n.indices
            cnt = n.data
            if self.similarity == "msd":
                sq = (
                    _on_pattern(x2c @ bt, n, keys)
                    + _on_pattern(bc @ x2t, n, keys)
                    - 2.0 * _on_pattern(xc @ xt, n, keys)
                )
                sim = 1.0 / (sq / cnt + 1.0)
            elif self.similarity == "cosine":
                prods = _on_pattern(xc @ xt, n, keys)
                den = np.sqrt(_on_pattern(x2c @ bt, n, keys) * _on_pattern(bc @ x2t, n, keys))
                sim = np.divide(prods, den, out=np.zeros_like(prods), where=den != 0)
            else:  # pearson, same arithmetic as surprise.similarities.pearson
                prods = _on_pattern(xc @ xt, n, keys)
                sqi = _on_pattern(x2c @ bt, n, keys)
                sqj = _on_pattern(bc @ x2t, n, keys)
                si = _on_pattern(xc @ bt, n, keys)
                sj = _on_pattern(bc @ xt, n, keys)
                num = cnt * prods - si * sj
                den = np.sqrt((cnt * sqi - si**2) * (cnt * sqj - sj**2))
                sim = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
            if self.shrinkage:
                sim = sim * (cnt / (cnt + self.shrinkage))
            sim[cnt < self.min_support] = 0.0
            sim[~(sim > 0)] = 0.0
            on_diag = row_ids(n) + sl.start == n.indices
            sim[on_diag] = diagonal[n.indices[on_diag]]
            block = sp.csr_matrix((sim, n.indices, n.indptr), shape=n.shape)
            block.eliminate_zeros()
            parts.append(block)
        out = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((n_users, n_users))
        out.sort_indices()
        return out

    def _similarities_dense(self, x, b, x2, diagonal) -> sp.csr_matrix:
        """Small populations: the same sums as dense BLAS products. With integer ratings
        every partial sum is an exact integer, so the result is bit-identical; float32
        products are then exact too (sums below 2**24) and twice as fast."""
        dtype = np.float32 if _exact_in_float32(x) else np.float64
        xd, bd, x2d = (m.astype(dtype).toarray() for m in (x, b, x2))
        cnt = (bd @ bd.T).astype(np.float64)
        sqi = (x2d @ bd.T).astype(np.float64)  # Σ x_u² over items co-rated with v; sqi.T for v
        prods = (xd @ xd.T).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.similarity == "msd":
                sim = 1.0 / ((sqi + sqi.T - 2.0 * prods) / cnt + 1.0)
            elif self.similarity == "cosine":
                den = np.sqrt(sqi * sqi.T)
                sim = np.divide(prods, den, out=np.zeros_like(den), where=den != 0)
            else:
                si = (xd @ bd.T).astype(np.float64)
                num = cnt * prods - si * si.T
                den = np.sqrt((cnt * sqi - si**2) * (cnt * sqi.T - si.T**2))
                sim = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
        if self.shrinkage:
            sim = sim * (cnt / (cnt + self.shrinkage))
        sim[(cnt < max(self.min_support, 1)) | ~(sim > 0)] = 0.0
        np.fill_diagonal(sim, diagonal)
        out = sp.csr_matrix(sim)
        out.sort_indices()
        return out

    def _prepare_per_item(self):
        """Group items by number of raters so that the per-item top-K is a batched
        ``np.partition`` over padded blocks (a loop over a few size classes, not items)."""
        raters = self.centred_.tocsc()
        raters.sort_indices()
        self._raters = raters
        support = np.diff(raters.indptr)
        k = self.k
        self._small_items = np.flatnonzero(support <= k)
        self._small_raters = raters[:, self._small_items]
        self._small_pattern = sp.csc_matrix(
            (np.ones(self._small_raters.nnz), self._small_raters.indices, self._small_raters.indptr),
            shape=self._small_raters.shape,
        )
        big = np.flatnonzero(support > k)
        groups = []
        if big.size:
            # widths on a grid of 8 steps per octave keep the padding waste under ~10%
            sup = support[big].astype(np.float64)
            octave = 2.0 ** np.floor(np.log2(sup))
            step = np.maximum(octave / 8, 1)
            width = (np.ceil(sup / step) * step).astype(np.int64)
            for w in np.unique(width):
                items = big[width == w]
                pos, owner = gather_ranges(raters.indptr, items)
                col = np.arange(len(pos)) - (np.cumsum(support[items]) - support[items])[owner]
                vpad = np.full((len(items), w), self.n_users_, dtype=np.int64)
                rpad = np.zeros((len(items), w), dtype=np.float64)
                vpad[owner, col] = raters.indices[pos]
                rpad[owner, col] = raters.data[pos]
                groups.append((items, vpad, rpad))
        self._item_groups = groups

    # -- scoring -------------------------------------------------------------------
    def _finish(self, users, num, den, cnt, item_known):
        """Apply means, ``min_k``, unknown users/items and clipping.

        ``cnt`` (contributing neighbours) may be ``None`` when ``min_k <= 1``: every
        neighbour has a positive weight, so ``den != 0`` already means one contributed.
        """
        mean = self.user_means_[users]
        enough = den != 0 if cnt is None else (cnt >= self.min_k) & (den != 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.where(enough, num / np.where(den != 0, den, 1.0), 0.0)
        est = mean.reshape(mean.shape + (1,) * (dev.ndim - mean.ndim)) + dev
        user_known = np.diff(self.user_items_.indptr)[users] > 0
        known = user_known.reshape(user_known.shape + (1,) * (dev.ndim - user_known.ndim)) & item_known
        est = np.where(known, est, self.global_mean_)
        if self.rating_range_ is not None:
            est = np.clip(est, *self.rating_range_)
        return est

    def _score_block(self, users: np.ndarray) -> np.ndarray:
        if self.neighbourhood == "global":
            w = self.similarity_[users]
            num = (w @ self.centred_).toarray()
            den = (w @ self._pattern).toarray()
            cnt = None
            if self.min_k > 1:
                cnt = (sp.csr_matrix((np.ones(w.nnz), w.indices, w.indptr), shape=w.shape) @ self._pattern).toarray()
        else:
            num, den, cnt = self._per_item_block(users)
        return self._finish(users, num, den, cnt, self.item_support_ > 0)

    def _per_item_block(self, users):
        n_users, n_items, k = self.n_users_, self.n_items_, self.k
        c = len(users)
        sv = self.similarity_[users].toarray()
        num = np.zeros((c, n_items))
        den = np.zeros((c, n_items))
        cnt = None
        if self.min_k > 1:  # contributing neighbours: min(K, positive raters), ranks put positives first
            cnt = np.minimum((self._pattern.T @ (sv > 0).T.astype(np.float64)).T, k)
        s = np.zeros((c, n_users + 1))  # last column: the padding sentinel, similarity 0
        s[:, :n_users] = sv
        rank = np.empty((c, n_users + 1), dtype=np.int32)
        rank[:, n_users] = n_users

        def small_items():  # at most K raters: every positive neighbour among them counts
            small = self._small_items
            if small.size:
                num[:, small] = (self._small_raters.T @ sv.T).T
                den[:, small] = (self._small_pattern.T @ sv.T).T

        def ranks(rows):
            # rank of each user in the query user's order: similarity descending, then
            # lower index (surprise's order). Similarities are >= +0.0, whose float64 bit
            # patterns sort like the values, and integers sort faster. int32 ranks: numpy's
            # partition is vectorised (SIMD) for 32-bit keys, not for 16-bit ones.
            order = np.argsort(-sv[rows].view(np.int64), axis=1, kind="stable")
            rank[np.arange(rows.start, rows.stop)[:, None], order] = np.arange(n_users, dtype=np.int32)

        def top_k(block):
            items, v, r = block  # v, r: (g, width) raters of the g items and their centred ratings
            rk = np.take(rank, v, axis=1)  # (c, g, width); take is faster than rank[:, v]
            thr = np.partition(rk, k - 1, axis=2)[:, :, k - 1 : k]  # K-th smallest rank
            sw = np.take(s, v, axis=1)
            sw *= rk <= thr  # the K most similar raters of each (user, item) keep their weight
            num[:, items] = np.einsum("cgw,gw->cg", sw, r)
            den[:, items] = sw.sum(axis=2)

        blocks = []
        for items, vpad, rpad in self._item_groups:
            step = max(1, _PER_ITEM_BLOCK // (c * vpad.shape[1]))
            blocks += [(items[sl], vpad[sl], rpad[sl]) for sl in chunks(len(items), step)]
        workers = n_threads_or_default(self.n_threads)
        halves = list(chunks(c, -(-c // workers))) if blocks else []
        # every task writes its own rows or columns, and numpy and scipy.sparse release
        # the GIL inside them, so a thread per core shares the work
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for done in [pool.submit(small_items)] + [pool.submit(ranks, h) for h in halves]:
                    done.result()  # the ranks are complete before any block reads them
                list(pool.map(top_k, blocks))
        else:
            small_items()
            for h in halves:
                ranks(h)
            for block in blocks:
                top_k(block)
        return num, den, cnt

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Predicted ratings of ``(user_idx[j], item_idx[j])`` pairs.

        Parameters
        ----------
        user_idx, item_idx : array-like of int, shape (n_pairs,)

        Returns
        -------
        ndarray of float64, shape (n_pairs,)
            Unknown users or items (no training entries, or indices outside the
            matrix) get ``global_mean_``; everything is clipped to ``rating_range_``.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        items = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        if users.shape != items.shape:
            raise ValueError("user_idx and item_idx must have the same shape")
        inside = (users >= 0) & (users < self.n_users_) & (items >= 0) & (items < self.n_items_)
        out = np.full(users.shape, self.global_mean_, dtype=np.float64)
        if self.rating_range_ is not None:
            out = np.clip(out, *self.rating_range_)
        u, i = users[inside], items[inside]
        num = np.zeros(len(u))
        den = np.zeros(len(u))
        cnt = np.zeros(len(u))
        with capped_threads(self.n_threads):
            if self.neighbourhood == "per_item" and self._blocks_are_cheaper(u, i):
                out[inside] = self._predict_from_blocks(u, i)
                return out
            if self._sim_lookup is None:
                self._sim_lookup = SparseLookup(self.similarity_)
            if self.neighbourhood == "per_item":
                self._predict_per_item(u, i, num, den, cnt)
            else:
                self._predict_global(u, i, num, den, cnt)
        out[inside] = self._finish(u, num, den, cnt, self.item_support_[i] > 0)
        return out

    def _blocks_are_cheaper(self, u, i) -> bool:
        """Whether scoring whole rows of the distinct users beats the per-pair sort.

        The pair path sorts every (pair, rater) entry (~400 ns each); a row costs a
        partition over the padded raters of every item (~7 ns each). Many pairs per user
        (an evaluation fold) are cheaper as rows; a few pairs are not.
        """
        entries = float(self.item_support_[i].sum())
        per_row = sum(v.size for _, v, _ in self._item_groups) + self._small_raters.nnz + self.n_items_
        return len(np.unique(u)) * per_row * _ROW_VS_PAIR_COST < entries

    def _predict_from_blocks(self, u, i):
        users, inverse = np.unique(u, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(0, len(users) + 1))
        out = np.empty(len(u))
        for sl in chunks(len(users), self._user_chunk_size()):
            block = self._score_block(users[sl])
            pairs = order[bounds[sl.start] : bounds[sl.stop]]
            out[pairs] = block[inverse[pairs] - sl.start, i[pairs]]
        return out

    def _predict_per_item(self, u, i, num, den, cnt, max_entries=4_000_000):
        support = self.item_support_[i]
        step_bounds = np.cumsum(support)
        start = 0
        while start < len(u):
            stop = int(np.searchsorted(step_bounds, step_bounds[start] - support[start] + max_entries, side="right"))
            stop = max(stop, start + 1)
            sl = slice(start, stop)
            pos, owner = gather_ranges(self._raters.indptr, i[sl])
            v = self._raters.indices[pos].astype(np.int64)
            rc = self._raters.data[pos]
            sim = self._sim_lookup(u[sl][owner], v)
            keep = sim > 0
            owner, v, rc, sim = owner[keep], v[keep], rc[keep], sim[keep]
            # surprise: heapq.nlargest by similarity, ties in rater order (lower index)
            order = np.lexsort((v, -sim, owner))
            owner, rc, sim = owner[order], rc[order], sim[order]
            top = _group_positions(owner) < self.k
            owner, rc, sim = owner[top], rc[top], sim[top]
            m = stop - start
            num[sl] = np.bincount(owner, weights=sim * rc, minlength=m)
            den[sl] = np.bincount(owner, weights=sim, minlength=m)
            cnt[sl] = np.bincount(owner, minlength=m)
            start = stop

    def _predict_global(self, u, i, num, den, cnt):
        w = self.similarity_
        pos, owner = gather_ranges(w.indptr, u)
        v = w.indices[pos].astype(np.int64)
        sim = w.data[pos]
        lookup = SparseLookup(self.centred_)
        pos_r = np.searchsorted(lookup.keys, v * self.n_items_ + i[owner])
        pos_c = np.minimum(pos_r, max(len(lookup.keys) - 1, 0))
        rated = (pos_r < len(lookup.keys)) & (lookup.keys[pos_c] == v * self.n_items_ + i[owner])
        owner, sim, rc = owner[rated], sim[rated], self.centred_.data[pos_c[rated]]
        num[:] = np.bincount(owner, weights=sim * rc, minlength=len(u))
        den[:] = np.bincount(owner, weights=sim, minlength=len(u))
        cnt[:] = np.bincount(owner, minlength=len(u))

    def similar_users(self, user_idx, n: int = 10):
        """The ``n`` most similar users of each query user.

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n) (``-1`` padding)
        scores : ndarray of float64, shape (n_queries, n)
        """
        self._check_fitted()
        sim = self.similarity_.copy()
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        return _top_rows(sim, np.atleast_1d(np.asarray(user_idx, dtype=np.int64)), n)


def _top_rows(m: sp.csr_matrix, rows: np.ndarray, n: int):
    block = topk_per_row(m[rows], n)
    idx = np.full((len(rows), n), -1, dtype=np.int64)
    val = np.full((len(rows), n), -np.inf)
    r = row_ids(block)
    order = np.lexsort((block.indices, -block.data, r))
    pos = _group_positions(r[order])
    idx[r[order], pos] = block.indices[order]
    val[r[order], pos] = block.data[order]
    return idx, val


class ItemKNN(BaseRecommender):
    """Item-based collaborative filtering for top-N ranking.

    ``score(u, i) = Σ_j R_uj · W_ji`` where ``W_j·`` holds the ``k`` items most similar
    to ``j``. Every suggestion is explained by the user's own item ``j`` with the
    largest ``R_uj · W_ji`` ("because you bought X").

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    similarity : {"cosine", "adjusted_cosine"}
        Cosine between item columns; ``"adjusted_cosine"`` first subtracts each user's
        mean (over observed entries) from that user's values.
    shrinkage : float
        Shrink each similarity by ``n_ij / (n_ij + shrinkage)`` (``n_ij``: users who
        interacted with both); 0 disables.
    binary : bool
        Use 1 for every stored entry instead of its value (implicit feedback).
    value_transform : {"none", "log1p"}
        Applied to the values when ``binary`` is false (repeat purchases and decayed
        weights count, but less than linearly).
    chunk_size : int, optional
        Users per chunk when scoring.
    n_threads : int, optional
        BLAS/OpenMP threads.

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
        The (transformed) training matrix.
    similarity_ : csr_matrix, shape (n_items, n_items)
        Row ``j``: the ``k`` most similar items of ``j`` (diagonal excluded).
    """

    def __init__(
        self,
        k: int = 100,
        similarity: str = "cosine",
        shrinkage: float = 0.0,
        binary: bool = False,
        value_transform: str = "none",
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ):
        self.k = k
        self.similarity = similarity
        self.shrinkage = shrinkage
        self.binary = binary
        self.value_transform = value_transform
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def fit(self, user_items) -> ItemKNN:
        """Compute the top-``k`` item-item similarities.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)

        Returns
        -------
        self
        """
        if self.similarity not in _ITEM_SIMILARITIES:
            raise ValueError(f"similarity must be one of {_ITEM_SIMILARITIES}, got {self.similarity!r}")
        if self.value_transform not in ("none", "log1p"):
            raise ValueError(f"value_transform must be 'none' or 'log1p', got {self.value_transform!r}")
        r = check_user_items(user_items)
        if self.binary:
            r.data[:] = 1.0
        elif self.value_transform == "log1p":
            r.data = np.log1p(np.maximum(r.data, 0))
            r.eliminate_zeros()
        with capped_threads(self.n_threads):
            self.user_items_ = r
            x = r.copy()
            if self.similarity == "adjusted_cosine":
                counts = np.diff(r.indptr)
                means = np.asarray(r.sum(axis=1)).ravel() / np.maximum(counts, 1)
                x.data = x.data - means[row_ids(r)]
            xt = x.T.tocsr()
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
            inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
            b = sp.csr_matrix((np.ones(r.nnz), r.indices, r.indptr), shape=r.shape)
            bt = b.T.tocsr()
            self.similarity_ = _item_topk(xt, x, inv, self.k, self.shrinkage, bt, b)
            self._explain_lookup = None
        return self

    def _score_block(self, users):
        return (self.user_items_[users] @ self.similarity_).toarray()

    def _explain_pairs(self, users, items):
        return item_explanations(self.user_items_, self.similarity_, users, items)

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Ranking scores ``Σ_j R_uj W_ji`` of ``(user, item)`` pairs, shape (n_pairs,)."""
        self._check_fitted()
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        i = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        pos, owner = gather_ranges(self.user_items_.indptr, u)
        j = self.user_items_.indices[pos]
        w = SparseLookup(self.similarity_)(j, i[owner])
        return np.bincount(owner, weights=self.user_items_.data[pos] * w, minlength=len(u))

    def similar_items(self, item_idx, n: int = 10):
        """The ``n`` most similar items of each query item (at most ``k``).

        Parameters
        ----------
        item_idx : array-like of int, shape (n_queries,)
        n : int

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n), ``-1`` padding
        scores : ndarray of float64, shape (n_queries, n), ``-inf`` padding
        """
        self._check_fitted()
        return _top_rows(self.similarity_, np.atleast_1d(np.asarray(item_idx, dtype=np.int64)), n)


def _item_topk(xt, x, inv_norm, k, shrinkage, bt, b, dtype=np.float64, budget=32 * 2**20):
    """Top-``k`` cosine neighbours of every item, computed in chunks of items."""
    n_items = xt.shape[0]
    step = max(1, int(budget // (8 * max(1, n_items))))
    data, indices, indptr = [], [], [0]
    for sl in chunks(n_items, step):
        block = (xt[sl] @ x).toarray()
        block *= inv_norm[sl, None]
        block *= inv_norm[None, :]
        if shrinkage:
            co = (bt[sl] @ b).toarray()
            block *= co / (co + shrinkage)
        rows = np.arange(sl.start, sl.stop)
        block[rows - sl.start, rows] = 0.0
        _append_topk(block, k, data, indices, indptr)
    return _assemble(data, indices, indptr, (n_items, n_items), dtype)


def _append_topk(block, k, data, indices, indptr):
    """Append the ``k`` largest positive entries of each row of a dense block."""
    kk = min(k, block.shape[1])
    if kk < block.shape[1]:
        part = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(block.shape[1]), block.shape)
    vals = np.take_along_axis(block, part, axis=1)
    keep = vals > 0
    counts = keep.sum(axis=1)
    order = np.argsort(part, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    keep = np.take_along_axis(keep, order, axis=1)
    indices.append(part[keep])
    data.append(vals[keep])
    indptr.extend((indptr[-1] + np.cumsum(counts)).tolist())


def _assemble(data, indices, indptr, shape, dtype):
    m = sp.csr_matrix(
        (
            np.concatenate(data).astype(dtype) if data else np.zeros(0, dtype),
            np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32),
            np.asarray(indptr, dtype=np.int64),
        ),
        shape=shape,
    )
    m.sort_indices()
    return m
