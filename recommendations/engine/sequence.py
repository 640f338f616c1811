"""SASRec: a self-attention model over each user's last items (issue #18), on Keras 3 / TensorFlow.

The engine's other models are order-blind: they see a user's items as a set. SASRec (Kang &
McAuley 2018) reads each user's history as a sequence ordered in time and predicts the next
item from the last ``max_len`` ones with causal self-attention.

TensorFlow and Keras are imported lazily, inside the functions that need them: importing the
engine (Django's start-up, every test) must not pay the seconds TensorFlow takes to load. The
first fit of a process sets TensorFlow's thread pools (``n_threads`` ops side by side, each on one
thread); TensorFlow cannot change
them once it has run, so later fits in the same process keep the first setting.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import scipy.sparse as sp

from ._base import (
    EXPLAIN_ITEM,
    BaseRecommender,
    Explanations,
    SparseLookup,
    capped_threads,
    check_user_items,
    chunks,
    n_threads_or_default,
    row_ids,
    topn_from_scores,
)

#: TensorFlow's thread pools as the first fit of this process set them (intra-op, inter-op).
_tf_threads: tuple[int, int] | None = None


def _keras(n_threads: int | None):
    """Import Keras on the TensorFlow backend, pinning TensorFlow's threads once per process."""
    global _tf_threads
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(f"SASRec needs Keras on TensorFlow; Keras was loaded with {keras.backend.backend()!r}")
    else:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if _tf_threads is None:
        n = n_threads_or_default(n_threads)
        try:
            # The network's ops are small (a batch is 128 × 50 × 64 floats): splitting each over
            # threads cost more than it gained (6 epochs of ML-100K: 20–22 s with 2 intra-op threads
            # and 1 inter-op, 13–16 s with 1 and 2), so independent ops run side by side instead.
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already ran in this process: its pools are set
            pass
        _tf_threads = (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
    import keras

    return keras


def ordered_histories(user_items: sp.csr_matrix, timestamps=None, ties=None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's items in time order, as one flat array with CSR-like offsets.

    Parameters
    ----------
    user_items : canonical csr_matrix, shape (n_users, n_items)
    timestamps : sparse matrix of the same shape, optional
        Time (e.g. Unix seconds) of each pair's latest event. Pairs of ``user_items`` with no
        stored time count as the oldest. Without timestamps the order is the column index.
    ties : numpy.random.Generator, optional
        Pairs of a user with the same time (the lines of one basket) are put in a random order
        drawn from it; by default in item index order.

    Returns
    -------
    items : ndarray of int64, shape (nnz,)
        Item indices, user after user, oldest first (ties in time: see ``ties``).
    indptr : ndarray of int64, shape (n_users + 1,)
        ``items[indptr[u]:indptr[u + 1]]`` is user ``u``'s history.
    """
    rows = row_ids(user_items)
    cols = user_items.indices.astype(np.int64)
    if timestamps is None:
        return cols, user_items.indptr.astype(np.int64)
    if not sp.issparse(timestamps):
        raise ValueError("timestamps must be a sparse matrix of the same shape as user_items")
    if timestamps.shape != user_items.shape:
        raise ValueError(f"timestamps has shape {timestamps.shape}, user_items {user_items.shape}")
    t = SparseLookup(sp.csr_matrix(timestamps, dtype=np.float64))(rows, cols)
    tie = cols if ties is None else ties.permutation(len(cols))
    order = np.lexsort((tie, t, rows))
    return cols[order], user_items.indptr.astype(np.int64)


def right_aligned(items: np.ndarray, indptr: np.ndarray, length: int) -> np.ndarray:
    """The last ``length`` items of each history, right-aligned, as ``item + 1`` (0 pads).

    Returns
    -------
    ndarray of int32, shape (n_users, length)
    """
    n_users = len(indptr) - 1
    out = np.zeros((n_users, length), dtype=np.int32)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    from_end = indptr[rows + 1] - 1 - np.arange(len(items), dtype=np.int64)
    keep = from_end < length
    out[rows[keep], length - 1 - from_end[keep]] = items[keep] + 1
    return out


def training_windows(
    items: np.ndarray, indptr: np.ndarray, length: int, max_windows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training pairs: every transition of every history, in windows of ``length``.

    A history ``s_0 … s_{n-1}`` gives the transitions ``s_{t-1} → s_t``; they are cut into
    windows of ``length`` from the most recent backwards, so the last window is the one the
    model serves from and every transition is learned once. Windows are right-aligned and
    padded with 0; items are shifted by one (``item + 1``). ``max_windows`` keeps only each user's
    most recent windows (1: the original paper's single window of the last ``length + 1`` items).

    Returns
    -------
    inputs, targets : ndarray of int32, shape (n_windows, length)
    """
    counts = np.diff(indptr)
    n_trans = np.maximum(counts - 1, 0)
    n_win = -(-n_trans // length)  # ceil
    if max_windows is not None:
        n_win = np.minimum(n_win, max_windows)
    first_win = np.cumsum(n_win) - n_win
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    at = np.arange(len(items), dtype=np.int64)
    from_end = indptr[rows + 1] - 1 - at
    # a target: not the first item of its history, and within the windows kept
    is_target = (at > indptr[rows]) & (from_end < n_win[rows] * length)
    from_end = from_end[is_target]
    win = first_win[rows[is_target]] + from_end // length
    col = length - 1 - from_end % length
    inputs = np.zeros((int(n_win.sum()), length), dtype=np.int32)
    targets = np.zeros_like(inputs)
    targets[win, col] = items[is_target] + 1
    inputs[win, col] = items[np.flatnonzero(is_target) - 1] + 1
    return inputs, targets


def _network(keras, *, n_items, max_len, factors, blocks, heads, dropout, n_negatives, loss):
    """The SASRec network as a Keras model whose ``call`` gives the hidden state of every position
    and whose ``compute_loss`` is the next-item loss (sampled or full softmax, or BCE)."""
    ops = keras.ops
    layers = keras.layers

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.item_embedding = layers.Embedding(n_items + 1, factors, name="items")
            self.position_embedding = layers.Embedding(max_len, factors, name="positions")
            self.input_dropout = layers.Dropout(dropout)
            self.blocks = [
                {
                    "norm1": layers.LayerNormalization(epsilon=1e-8),
                    "attention": layers.MultiHeadAttention(heads, max(1, factors // heads), dropout=dropout),
                    "drop1": layers.Dropout(dropout),
                    "norm2": layers.LayerNormalization(epsilon=1e-8),
                    "dense1": layers.Dense(factors, activation="relu"),
                    "drop2": layers.Dropout(dropout),
                    "dense2": layers.Dense(factors),
                    "drop3": layers.Dropout(dropout),
                }
                for _ in range(blocks)
            ]
            self.final_norm = layers.LayerNormalization(epsilon=1e-8)
            self.seed = keras.random.SeedGenerator(0)

        def call(self, seq, training=False):
            valid = ops.cast(ops.expand_dims(seq > 0, -1), "float32")
            x = self.item_embedding(seq) * math.sqrt(factors)
            x = x + self.position_embedding(ops.arange(max_len))[None]
            x = self.input_dropout(x, training=training) * valid
            causal = ops.tril(ops.ones((max_len, max_len), dtype="bool"))
            # a query may attend to itself even when it is padding, so no row is fully masked
            keys = ops.logical_or(ops.expand_dims(seq > 0, 1), ops.eye(max_len, dtype="bool")[None])
            mask = ops.logical_and(causal[None], keys)
            for b in self.blocks:
                q = b["norm1"](x)
                x = x + b["drop1"](b["attention"](q, x, attention_mask=mask, training=training), training=training)
                y = b["dense1"](b["norm2"](x))
                y = b["dense2"](b["drop2"](y, training=training))
                x = (x + b["drop3"](y, training=training)) * valid
            return self.final_norm(x)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            table = self.item_embedding.embeddings
            target = ops.cast(y, "int32")
            weight = ops.cast(target > 0, "float32")
            pos = ops.sum(y_pred * ops.take(table, target, axis=0), axis=-1)
            if loss == "bce":
                neg_items = keras.random.randint(ops.shape(target), 1, n_items + 1, seed=self.seed)
                neg = ops.sum(y_pred * ops.take(table, neg_items, axis=0), axis=-1)
                per = -ops.log_sigmoid(pos) - ops.log_sigmoid(-neg)
            elif n_negatives and n_negatives < n_items:
                neg_items = keras.random.randint((n_negatives,), 1, n_items + 1, seed=self.seed)
                neg = ops.einsum("bld,kd->blk", y_pred, ops.take(table, neg_items, axis=0))
                hit = ops.expand_dims(target, -1) == neg_items[None, None, :]
                neg = ops.where(hit, -1e9, neg)
                logits = ops.concatenate([ops.expand_dims(pos, -1), neg], axis=-1)
                per = ops.logsumexp(logits, axis=-1) - pos
            else:
                logits = ops.einsum("bld,kd->blk", y_pred, table[1:])
                per = ops.logsumexp(logits, axis=-1) - pos
            return ops.sum(per * weight) / ops.maximum(ops.sum(weight), 1.0)

    return Net()


def last_states(net, history: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The network's state at the last position of each history, and its item table.

    Returns
    -------
    states : ndarray of float32, shape (n_users, factors)
        Zero for empty histories.
    table : ndarray of float32, shape (n_items + 1, factors)
        Row ``i + 1`` embeds item ``i`` (row 0: padding).
    """
    # TensorFlow tensors' own .numpy() (keras.ops.convert_to_numpy warns under numpy 2)
    table = np.asarray(net.item_embedding.embeddings.numpy(), dtype=np.float32)
    states = np.zeros((len(history), table.shape[1]), dtype=np.float32)
    rows = np.flatnonzero(history[:, -1] > 0)
    for sl in chunks(len(rows), chunk):
        out = net(history[rows[sl]], training=False)
        states[rows[sl]] = out[:, -1, :].numpy()
    return states, table


class SASRec(BaseRecommender):
    """SASRec (Kang & McAuley 2018): causal self-attention over each user's last ``max_len`` items.

    Each user's items are ordered by ``timestamps`` (the time of each pair's latest event; ties:
    in a seeded random order, see ``ties``; without timestamps: by item index, i.e. no real order,
    so pass them) and the model
    learns to predict every next item from the ones before it. An item ``i`` is embedded as
    ``e_i`` (the same table reads the input and scores the output), a position as ``p_t``; the
    sequence goes through ``blocks`` pre-norm Transformer blocks (``heads``-head causal
    attention, a point-wise feed-forward layer, residuals, dropout). The state ``h_u`` at the
    last position scores every item: ``score(u, i) = h_u · e_i``.

    Training uses every transition of every history (histories longer than ``max_len`` are cut
    into windows) with a softmax cross-entropy over the positive and ``n_negatives`` items drawn
    uniformly per batch (``None`` or at least the catalogue: the full softmax), or ``loss="bce"``,
    the original paper's binary cross-entropy with one random negative per position. The stored
    values (ratings, decayed weights) only say which items a user has: their size is not used.

    A suggestion is explained by the item of the user's last ``max_len`` whose embedding has the
    largest dot product with the suggestion's (``EXPLAIN_ITEM``: "because you bought X"). Users
    without history get no suggestions (``-inf`` scores). Fits are reproducible for the same data
    and ``random_state`` (TensorFlow's thread count is part of "the same": see the module doc).

    Parameters
    ----------
    max_len : int
        Items of each history the model reads (the most recent ones).
    factors : int
        Embedding and hidden size.
    blocks, heads : int
        Transformer blocks, attention heads (``factors`` is split among the heads).
    dropout : float
        Dropout rate of embeddings, attention and feed-forward layers.
    epochs, batch_size : int
        Passes over the training windows; windows per gradient step.
    learning_rate : float
        Adam's step size.
    loss : {"softmax", "bce"}
    n_negatives : int or None
        Negatives per batch of the sampled softmax (None: every item).
    windows_per_user : int or None
        Train on each user's most recent ``windows_per_user`` windows of ``max_len`` transitions
        only (None: all of them; 1: the paper's last ``max_len + 1`` items). Fewer windows fit faster.
    max_updates : int or None
        Most gradient steps a fit takes (None: no bound). Where ``epochs`` passes over the windows
        would take more, the fit runs as many whole epochs as fit in the bound, or, when even one
        epoch is larger, one epoch over the most recent windows of every user first. A small shop
        (ML-100K: 20 epochs × 21 steps) trains in full; a large one's fit costs a bounded time
        (100,000 customers × 50 items: one epoch over 2,500 × 128 windows).
    ties : {"random", "index"}
        Order of a user's items with the same time (one basket's lines): random (seeded by
        ``random_state``), or by item index, which puts a pattern in the sequences that is not in
        the customers' behaviour (on Online Retail the model learnt it and ranked at popularity's
        level).
    random_state : int
        Seed of the weights, the negatives, dropout and the shuffling.
    chunk_size : int, optional
        Users per chunk when scoring.
    n_threads : int, optional
        BLAS and TensorFlow threads (TensorFlow's: the first fit of the process decides).
    verbose : int
        Keras' progress output while fitting (0: none).

    Attributes
    ----------
    user_items_ : csr_matrix, shape (n_users, n_items)
    history_ : ndarray of int32, shape (n_users, max_len)
        The last ``max_len`` items of each user, right-aligned, as ``item + 1`` (0 pads).
    item_embeddings_ : ndarray of float32, shape (n_items, factors)
    user_states_ : ndarray of float32, shape (n_users, factors)
        ``h_u``; zero for users without history.
    loss_ : list of float
        Training loss after each epoch.
    windows_, windows_trained_ : int
        Training windows in the histories, and those trained on (fewer when ``max_updates`` binds).
    epochs_run_, updates_ : int
        Epochs and gradient steps the fit ran.
    """

    _explain_kind = EXPLAIN_ITEM
    _block_factor = 2
    uses_timestamps = True

    def __init__(
        self,
        max_len: int = 50,
        factors: int = 64,
        blocks: int = 1,
        heads: int = 1,
        dropout: float = 0.2,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        loss: str = "softmax",
        n_negatives: int | None = 256,
        windows_per_user: int | None = None,
        max_updates: int | None = 2500,
        ties: str = "random",
        random_state: int = 0,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        verbose: int = 0,
    ):
        self.max_len = max_len
        self.factors = factors
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.loss = loss
        self.n_negatives = n_negatives
        self.windows_per_user = windows_per_user
        self.max_updates = max_updates
        self.ties = ties
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.verbose = verbose

    def _check_params(self):
        for name in ("max_len", "factors", "blocks", "heads", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.factors % self.heads:
            raise ValueError(f"factors ({self.factors}) must be a multiple of heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.loss not in ("softmax", "bce"):
            raise ValueError(f"loss must be 'softmax' or 'bce', got {self.loss!r}")
        if self.ties not in ("random", "index"):
            raise ValueError(f"ties must be 'random' or 'index', got {self.ties!r}")
        if self.max_updates is not None and (isinstance(self.max_updates, bool) or self.max_updates < 1):
            raise ValueError(f"max_updates must be a positive integer or None, got {self.max_updates!r}")
        if self.windows_per_user is not None and self.windows_per_user < 1:
            raise ValueError(f"windows_per_user must be positive or None, got {self.windows_per_user!r}")
        if self.n_negatives is not None and self.n_negatives < 1:
            raise ValueError(f"n_negatives must be positive or None, got {self.n_negatives!r}")

    def fit(self, user_items, *, timestamps=None, callbacks=None) -> SASRec:
        """Learn to predict each next item of the users' time-ordered histories.

        Parameters
        ----------
        user_items : sparse matrix, shape (n_users, n_items)
            Stored entries are the (user, item) pairs.
        timestamps : sparse matrix, shape (n_users, n_items), optional
            Time (seconds) of each pair's latest event, which orders each history.
        callbacks : list of keras.callbacks.Callback, optional
            Passed to Keras' ``fit`` (the evaluation bench reads a validation figure after each
            epoch with :func:`last_states` on ``callback.model``).

        Returns
        -------
        self
        """
        self._check_params()
        r = check_user_items(user_items, dtype=np.float32)
        rng = np.random.default_rng(self.random_state) if self.ties == "random" else None
        items, indptr = ordered_histories(r, timestamps, rng)
        n_items = r.shape[1]
        inputs, targets = training_windows(items, indptr, self.max_len, self.windows_per_user)
        n_windows = len(inputs)
        inputs, targets, epochs = self._within_budget(indptr, inputs, targets)
        history = right_aligned(items, indptr, self.max_len)
        keras = _keras(self.n_threads)
        keras.utils.set_random_seed(int(self.random_state))
        net = _network(
            keras,
            n_items=n_items,
            max_len=self.max_len,
            factors=self.factors,
            blocks=self.blocks,
            heads=self.heads,
            dropout=float(self.dropout),
            n_negatives=self.n_negatives,
            loss=self.loss,
        )
        net.compile(optimizer=keras.optimizers.Adam(learning_rate=float(self.learning_rate), beta_2=0.98))
        losses: list[float] = []
        with capped_threads(self.n_threads):
            if len(inputs):
                hist = net.fit(
                    inputs,
                    targets,
                    batch_size=int(self.batch_size),
                    epochs=epochs,
                    shuffle=True,
                    verbose=self.verbose,
                    callbacks=callbacks,
                )
                losses = [float(v) for v in hist.history["loss"]]
            else:
                net(history[:1])  # build the weights: nobody has two items to learn from
            states, table = last_states(net, history)
            has_history = history[:, -1] > 0
        self.user_items_ = r
        self.history_ = history
        self.item_embeddings_ = np.ascontiguousarray(table[1:], dtype=np.float32)
        self.user_states_ = states
        self.has_history_ = has_history
        self.loss_ = losses
        self.windows_ = n_windows
        self.windows_trained_ = len(inputs)
        self.epochs_run_ = epochs if len(inputs) else 0
        self.updates_ = self.epochs_run_ * -(-len(inputs) // int(self.batch_size))
        keras.backend.clear_session(free_memory=False)
        return self

    def _within_budget(self, indptr, inputs, targets):
        """The windows and epochs that fit in ``max_updates`` gradient steps: every epoch asked when
        they fit; else fewer whole epochs; else one epoch over each user's most recent windows first
        (ties in a seeded random order), so a large shop's fit costs a bounded number of steps."""
        epochs = int(self.epochs)
        steps = -(-len(inputs) // int(self.batch_size))
        if self.max_updates is None or steps * epochs <= self.max_updates:
            return inputs, targets, epochs
        if steps <= self.max_updates:
            return inputs, targets, int(self.max_updates // steps)
        keep = int(self.max_updates) * int(self.batch_size)
        n_trans = np.maximum(np.diff(indptr) - 1, 0)
        n_win = -(-n_trans // self.max_len)
        if self.windows_per_user is not None:
            n_win = np.minimum(n_win, self.windows_per_user)
        # each window's rank within its user (0: the most recent), as training_windows lays them out
        rank = np.arange(len(inputs)) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        jitter = np.random.default_rng(self.random_state).random(len(inputs))
        chosen = np.sort(np.lexsort((jitter, rank))[:keep])
        return inputs[chosen], targets[chosen], 1

    def _score_block(self, users):
        scores = self.user_states_[users] @ self.item_embeddings_.T
        scores[~self.has_history_[users]] = -np.inf
        return scores

    def predict(self, user_idx, item_idx) -> np.ndarray:
        """Ranking scores ``h_u · e_i`` of ``(user, item)`` pairs, shape (n_pairs,)."""
        self._check_fitted()
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        i = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        out = np.einsum("pf,pf->p", self.user_states_[u], self.item_embeddings_[i]).astype(np.float64)
        out[~self.has_history_[u]] = -np.inf
        return out

    def similar_items(self, item_idx, n: int = 10):
        """Items whose embeddings have the largest cosine with the given items'.

        Returns
        -------
        idx : ndarray of int64, shape (n_queries, n)
        scores : ndarray of float64, shape (n_queries, n)
        """
        self._check_fitted()
        q = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        e = self.item_embeddings_
        unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        out_i = np.empty((len(q), n), dtype=np.int64)
        out_s = np.empty((len(q), n), dtype=np.float64)
        step = max(1, int(2**24 // max(1, len(e))))
        for sl in chunks(len(q), step):
            scores = (unit[q[sl]] @ unit.T).astype(np.float64)
            scores[np.arange(sl.stop - sl.start), q[sl]] = -np.inf
            out_i[sl], out_s[sl] = topn_from_scores(scores, n)
        return out_i, out_s

    def _explain_pairs(self, users, items, max_entries: int = 2**22):
        items = np.asarray(items, dtype=np.int64)
        n_rows, n_cols = items.shape
        kind = np.zeros(items.shape, dtype=np.int8)
        src = np.full(items.shape, -1, dtype=np.int64)
        e = self.item_embeddings_
        step = max(1, int(max_entries // (max(1, n_cols) * self.max_len * max(1, e.shape[1]))))
        for sl in chunks(n_rows, step):
            hist = self.history_[users[sl]].astype(np.int64)  # (rows, L), item + 1
            target = items[sl]
            dots = np.einsum("rcf,rlf->rcl", e[np.maximum(target, 0)], e[np.maximum(hist - 1, 0)])
            dots = np.where((hist > 0)[:, None, :], dots, -np.inf)
            # ties go to the most recent item (the last position)
            best = hist.shape[1] - 1 - np.argmax(dots[:, :, ::-1], axis=2)
            chosen = np.take_along_axis(hist, best, axis=1) - 1
            ok = (target >= 0) & (chosen >= 0)
            kind[sl] = np.where(ok, EXPLAIN_ITEM, 0)
            src[sl] = np.where(ok, chosen, -1)
        return Explanations(kind=kind, item=src)
