"""Working on top-N lists after a model made them: pair look-ups, dropped slots, re-ranking.

A list is a pair of arrays of shape ``(n_queries, n)``: item indices best first (``-1`` for an
empty slot, always at the end) and their scores.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._base import SparseLookup


def pair_values(m: sp.csr_matrix, rows, cols) -> np.ndarray:
    """``m[rows, cols]`` for index arrays broadcast to one shape (0 where nothing is stored).

    Parameters
    ----------
    m : csr_matrix, shape (n_rows, n_cols)
    rows, cols : array-like of int
        Broadcast against each other (e.g. ``users[:, None]`` and a ``(n_users, n)`` list).

    Returns
    -------
    ndarray of ``m.dtype``, the broadcast shape
    """
    rows, cols = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
    return SparseLookup(m)(rows.ravel(), cols.ravel()).reshape(rows.shape)


def compact(
    items: np.ndarray,
    scores: np.ndarray,
    drop: np.ndarray,
    *,
    n: int | None = None,
    aligned: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, ...]:
    """Remove the ``drop`` slots of each row, keeping the order of the rest.

    Parameters
    ----------
    items : ndarray of int, shape (n_queries, m)
    scores : ndarray of float, shape (n_queries, m)
    drop : ndarray of bool, shape (n_queries, m)
        Slots to remove (empty slots, ``items < 0``, are removed anyway).
    n : int, optional
        Keep the first ``n`` columns (default all ``m``).
    aligned : tuple of ndarray, each of shape (n_queries, m)
        Arrays that go with the slots (reasons, ...), moved along with them.

    Returns
    -------
    (items, scores, *aligned), each of shape (n_queries, n)
        The kept slots first; ``-1`` items and ``-inf`` scores fill the rest (the aligned arrays
        keep whatever the removed slots held).
    """
    items = np.where(drop, -1, items)
    scores = np.where(drop, -np.inf, scores)
    order = np.argsort(items < 0, axis=1, kind="stable")
    return tuple(np.take_along_axis(a, order, axis=1)[:, :n] for a in (items, scores, *aligned))


def penalise_shown(
    users: np.ndarray, items: np.ndarray, scores: np.ndarray, shown: sp.csr_matrix, *, penalty: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank lists so that items already shown to the user move down, and cut them to ``n``.

    A score is multiplied by ``penalty ** times_shown`` (divided, if it is negative, so it still
    goes down); ties are broken towards the lower item index.

    Parameters
    ----------
    users : ndarray of int, shape (n_queries,)
        Rows of ``shown``.
    items, scores : ndarray, shape (n_queries, m)
        Lists as a model's ``recommend`` returns them (ask for more than ``n`` so that something
        can move up).
    shown : csr_matrix, shape (n_users, n_items)
        How many times each item was shown to each user.
    penalty : float
        In (0, 1]; 1 changes nothing.
    n : int

    Returns
    -------
    items : ndarray of int64, shape (n_queries, n)
    scores : ndarray of float64, shape (n_queries, n)
        The penalised scores.
    """
    times = pair_values(shown, np.asarray(users)[:, None], np.maximum(items, 0))
    times[items < 0] = 0
    factor = penalty**times
    adjusted = np.where(scores > 0, scores * factor, scores / np.maximum(factor, 1e-12))
    order = np.lexsort((items, -adjusted), axis=1)
    return np.take_along_axis(items, order, axis=1)[:, :n], np.take_along_axis(adjusted, order, axis=1)[:, :n]
