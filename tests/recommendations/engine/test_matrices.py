"""Feedback matrices, the holdout split and list post-processing: hand-checked on plain arrays."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import (
    compact,
    decay_weights,
    interaction_matrix,
    last_items_holdout,
    latest_per_user,
    pair_matrix,
    pair_values,
    penalise_shown,
)

DAY = 86_400
WEIGHTS = {"view": 1.0, "purchase": 4.0, "search": 0.0, "rating": 99.0}


def test_decay_weights_take_one_reference_per_event():
    # ages 10 and 0 days from each event's own reference
    w = decay_weights([0, 20 * DAY], 10, now=[10 * DAY, 20 * DAY])

    assert w == pytest.approx([0.5, 1.0])


def test_latest_per_user_is_each_users_own_latest_event():
    assert latest_per_user([0, 1, 0, 1], [5, 7, 9, 1]).tolist() == [9, 7, 9, 7]


def test_interaction_matrix_decays_from_each_customers_latest_event():
    # user 0: a view 10 days before their latest purchase; user 1: one view, 30 days before user 0's last event
    u, i = [0, 0, 1], [0, 1, 0]
    etype = ["view", "purchase", "view"]
    t = np.array([0, 10 * DAY, -20 * DAY])

    m = interaction_matrix(u, i, etype, [np.nan] * 3, t, weights=WEIGHTS, half_life_days=10, n_users=2, n_items=2)

    # user 1's only event is their own latest: it keeps its whole weight
    assert m.toarray() == pytest.approx(np.array([[0.5, 4.0], [1.0, 0.0]]))


def test_interaction_matrix_decays_from_the_latest_event_of_all():
    u, i = [0, 0, 1], [0, 1, 0]
    etype = ["view", "purchase", "view"]
    t = np.array([0, 10 * DAY, -20 * DAY])

    m = interaction_matrix(
        u, i, etype, [np.nan] * 3, t, weights=WEIGHTS, half_life_days=10, decay_from="latest", n_users=2, n_items=2
    )

    assert m.toarray() == pytest.approx(np.array([[0.5, 4.0], [0.125, 0.0]]))


def test_interaction_matrix_adds_the_latest_rating_as_it_is_and_drops_zero_weights():
    # a search weighs 0; a rating without a value is no rating; the later rating (2) wins over 5
    u, i = [0, 0, 0, 0, 0], [0, 1, 1, 1, 0]
    etype = ["search", "rating", "rating", "rating", "view"]
    value = [np.nan, 5.0, 2.0, np.nan, np.nan]
    t = np.array([0, 1, 2, 3, 0]) * DAY

    m = interaction_matrix(u, i, etype, value, t, weights=WEIGHTS, half_life_days=None, n_users=1, n_items=2)

    assert m.toarray() == pytest.approx(np.array([[1.0, 2.0]]))
    assert m.nnz == 2


def test_interaction_matrix_takes_datetimes_as_well_as_seconds():
    t = np.array(["2024-01-01", "2024-01-11"], dtype="datetime64[ns]")

    m = interaction_matrix(
        [0, 0], [0, 1], ["view", "view"], [np.nan, np.nan], t, weights=WEIGHTS, half_life_days=10, n_users=1, n_items=2
    )

    assert m.toarray() == pytest.approx(np.array([[0.5, 1.0]]))


def test_pair_matrix_sums_or_keeps_the_largest():
    u, i, v = [0, 0, 1], [1, 1, 0], [2.0, 3.0, 1.0]

    assert pair_matrix(u, i, v, n_users=2, n_items=2).toarray().tolist() == [[0, 5], [1, 0]]
    assert pair_matrix(u, i, v, n_users=2, n_items=2, agg="max").toarray().tolist() == [[0, 3], [1, 0]]
    assert pair_matrix(u, i, n_users=2, n_items=2).toarray().tolist() == [[0, 2], [1, 0]]  # one per event


def test_last_items_holdout_holds_out_each_users_latest_new_items():
    # user 0 discovers items 0, 1, 2, 3 (item 0 again at the end: not new); user 1 has two items only
    u = [0, 0, 0, 0, 0, 0, 1, 1]
    i = [0, 1, 2, 3, 0, 3, 0, 1]
    t = [1, 2, 3, 4, 9, 5, 1, 2]
    positive = [True, True, True, True, True, False, True, True]

    relevant, keep = last_items_holdout(u, i, t, positive, n_holdout=2, min_items=3, n_users=2, n_items=4)

    assert relevant.toarray().tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]
    # every event of a held-out pair is out, the non-positive one too
    assert keep.tolist() == [True, True, False, False, True, False, True, True]


def test_last_items_holdout_breaks_ties_in_time_by_item():
    relevant, _ = last_items_holdout(
        [0, 0, 0], [2, 1, 0], [5, 5, 5], [True] * 3, n_holdout=1, min_items=1, n_users=1, n_items=3
    )

    assert relevant.toarray().tolist() == [[0, 0, 1]]


def test_pair_values_broadcasts_rows_against_lists():
    m = sp.csr_matrix(np.array([[0, 2.0, 0], [3.0, 0, 0]]))

    got = pair_values(m, np.array([0, 1])[:, None], np.array([[1, 2], [0, 1]]))

    assert got.tolist() == [[2.0, 0.0], [3.0, 0.0]]


def test_compact_moves_kept_slots_left_and_carries_aligned_arrays():
    items = np.array([[4, 5, 6, -1]])
    scores = np.array([[3.0, 2.0, 1.0, -np.inf]])
    reasons = np.array([["a", "b", "c", "d"]], dtype=object)
    drop = np.array([[False, True, False, False]])

    got_items, got_scores, got_reasons = compact(items, scores, drop, aligned=(reasons,))
    short_items, short_scores = compact(items, scores, np.array([[True, False, False, False]]), n=2)

    assert got_items.tolist() == [[4, 6, -1, -1]]
    assert got_scores.tolist() == [[3.0, 1.0, -np.inf, -np.inf]]
    assert got_reasons.tolist() == [["a", "c", "b", "d"]]
    assert (short_items.tolist(), short_scores.tolist()) == ([[5, 6]], [[2.0, 1.0]])


def test_penalise_shown_moves_shown_items_down():
    # user 0 was shown item 7 twice: 4.0 * 0.5**2 = 1.0 falls behind item 8 (3.0) and ties item 9 (1.0)
    shown = sp.csr_matrix(([2.0], ([0], [7])), shape=(1, 10))
    items = np.array([[7, 8, 9, -1]])
    scores = np.array([[4.0, 3.0, 1.0, -np.inf]])

    got_items, got_scores = penalise_shown(np.array([0]), items, scores, shown, penalty=0.5, n=3)

    assert got_items.tolist() == [[8, 7, 9]]  # the tie goes to the lower item
    assert got_scores.tolist() == [[3.0, 1.0, 1.0]]


def test_penalise_shown_pushes_negative_scores_further_down():
    shown = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 3))

    got_items, got_scores = penalise_shown(
        np.array([0]), np.array([[0, 1]]), np.array([[-1.0, -1.0]]), shown, penalty=0.5, n=2
    )

    assert got_items.tolist() == [[0, 1]] and got_scores.tolist() == [[-1.0, -2.0]]
