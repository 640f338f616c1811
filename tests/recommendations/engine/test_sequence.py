"""SASRec, the sequence model (issue #18), on tiny histories where the order is the whole signal."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import EXPLAIN_ITEM, EXPLAIN_NONE, PureSVD, SASRec
from recommendations.engine.sequence import ordered_histories, right_aligned, training_windows

N_ITEMS = 24
SMALL = {"max_len": 8, "factors": 16, "blocks": 1, "epochs": 40, "batch_size": 32, "n_threads": 1}


def histories(*seqs, n_items=N_ITEMS):
    """(user_items, timestamps) from each user's items in the order they happened."""
    rows, cols, ts = [], [], []
    for u, seq in enumerate(seqs):
        for k, item in enumerate(seq):
            rows.append(u)
            cols.append(item)
            ts.append(1_000_000 + 3600.0 * k)
    shape = (len(seqs), n_items)
    r = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    t = sp.csr_matrix((np.array(ts), (rows, cols)), shape=shape)
    return r, t


def chains(n_users=240, seed=0):
    """Users walking up the catalogue: item i is always followed by item i + 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_users):
        length = int(rng.integers(3, 7))
        start = int(rng.integers(0, N_ITEMS - length))
        out.append(list(range(start, start + length)))
    return out


@pytest.fixture(scope="module")
def walk():
    seqs = chains()
    # two customers with the same items: A went 10 then 15, B went 15 then 10
    seqs += [[10, 15], [15, 10]]
    r, t = histories(*seqs)
    return seqs, r, t, SASRec(**SMALL).fit(r, timestamps=t)


def test_importing_the_engine_does_not_load_tensorflow():
    code = "import sys, recommendations.engine; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_next_item_of_the_chain_comes_first(walk):
    seqs, r, t, model = walk
    chain_users = np.arange(len(seqs) - 2)
    items, _ = model.recommend(chain_users, n=1)
    expected = np.array([s[-1] + 1 for s in seqs[:-2]])
    # the top of the catalogue has no next item to learn
    has_next = expected < N_ITEMS
    assert (items[has_next, 0] == expected[has_next]).mean() >= 0.9


def test_the_same_items_in_another_order_give_another_suggestion_unlike_an_order_blind_model(walk):
    seqs, r, t, model = walk
    a, b = len(seqs) - 2, len(seqs) - 1

    items, _ = model.recommend([a, b], n=1)
    blind, _ = PureSVD(factors=8, n_threads=1).fit(r).recommend([a, b], n=3)

    assert items[:, 0].tolist() == [16, 11]  # what follows each one's last item
    assert blind[0].tolist() == blind[1].tolist()  # the same set of items, the same list


def test_a_fit_is_reproducible_for_the_same_seed_and_differs_for_another():
    r, t = histories(*chains(80, seed=3))
    params = {**SMALL, "epochs": 3}
    first = SASRec(**params).fit(r, timestamps=t)
    again = SASRec(**params).fit(r, timestamps=t)
    other = SASRec(**params, random_state=1).fit(r, timestamps=t)

    assert np.array_equal(first.user_states_, again.user_states_)
    assert np.array_equal(first.item_embeddings_, again.item_embeddings_)
    assert first.loss_ == again.loss_
    assert not np.allclose(first.item_embeddings_, other.item_embeddings_)


def test_seen_and_filtered_items_are_never_suggested(walk):
    seqs, r, t, model = walk
    users = np.arange(40)
    items, scores = model.recommend(users, n=10, filter_items=[0, 23])

    for u in users:
        assert not set(items[u].tolist()) & set(seqs[u])
    assert not np.isin(items, [0, 23]).any()
    assert np.all(np.diff(scores, axis=1) <= 0)
    anything, _ = model.recommend(users, n=N_ITEMS, exclude_seen=False)
    assert set(seqs[0]) <= set(anything[0].tolist())


def test_each_suggestion_is_explained_by_an_item_of_the_history(walk):
    seqs, r, t, model = walk
    users = np.arange(30)
    items, _, why = model.recommend(users, n=5, return_explanations=True)

    assert (why.kind == EXPLAIN_ITEM).all()
    for u in users:
        assert set(why.item[u].tolist()) <= set(seqs[u][-SMALL["max_len"] :])
    # the reason is the history item whose embedding is closest (dot product) to the suggestion's
    e = model.item_embeddings_
    u, i = 0, items[0, 0]
    assert why.item[0, 0] == seqs[u][int(np.argmax(e[seqs[u]] @ e[i]))]
    pairs = model.explain([0, 1], [items[0, 0], items[1, 0]])
    assert pairs.item.tolist() == [why.item[0, 0], why.item[1, 0]]


def test_shapes_chunks_and_a_customer_without_history():
    r, t = histories([0, 1, 2], [], [4, 5], [1, 2, 3, 4])
    model = SASRec(**{**SMALL, "epochs": 2}).fit(r, timestamps=t)

    assert model.score([0, 1, 2]).shape == (3, N_ITEMS)
    assert np.isneginf(model.score([1])).all()
    items, scores, why = model.recommend([0, 1, 2, 3], n=4, return_explanations=True)
    assert items.shape == scores.shape == why.kind.shape == (4, 4)
    assert (items[1] == -1).all() and (why.kind[1] == EXPLAIN_NONE).all()
    one_by_one = SASRec(**{**SMALL, "epochs": 2, "chunk_size": 1}).fit(r, timestamps=t)
    assert np.array_equal(one_by_one.recommend([0, 1, 2, 3], n=4)[0], items)
    similar, sim_scores = model.similar_items([0, 5], n=3)
    assert similar.shape == (2, 3) and 0 not in similar[0] and 5 not in similar[1]
    assert model.predict([0], [7])[0] == pytest.approx(model.score([0])[0, 7], rel=1e-5)
    assert model.history_.shape == (4, SMALL["max_len"])


def test_histories_are_ordered_by_time_then_item_and_by_item_without_times():
    r = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 1, 0, 1]], dtype=float))
    t = sp.csr_matrix(np.array([[30, 10, 10, 0], [0, 5, 0, 2]], dtype=float))

    items, indptr = ordered_histories(r, t)
    assert items.tolist() == [1, 2, 0, 3, 1] and indptr.tolist() == [0, 3, 5]
    assert ordered_histories(r)[0].tolist() == [0, 1, 2, 1, 3]


def test_a_baskets_lines_come_in_a_seeded_random_order_after_what_came_before():
    # one basket of 30 lines at t=10 after one item at t=5: item order must not leak into the sequence
    r = sp.csr_matrix(np.ones((1, 31)))
    t = sp.csr_matrix(np.r_[5.0, np.full(30, 10.0)][None])
    first, _ = ordered_histories(r, t, np.random.default_rng(0))
    again, _ = ordered_histories(r, t, np.random.default_rng(0))

    assert first[0] == 0 and sorted(first[1:].tolist()) == list(range(1, 31))
    assert first[1:].tolist() != list(range(1, 31))
    assert first.tolist() == again.tolist()


def test_histories_become_right_aligned_windows_of_every_transition():
    items = np.array([5, 6, 7, 8, 9, 1])
    indptr = np.array([0, 5, 6])

    assert right_aligned(items, indptr, 3).tolist() == [[8, 9, 10], [0, 0, 2]]
    inputs, targets = training_windows(items, indptr, 3)
    # user 0's transitions 5→6, 6→7, 7→8, 8→9 in windows of 3 from the end; user 1 has none
    assert inputs.tolist() == [[7, 8, 9], [0, 0, 6]]
    assert targets.tolist() == [[8, 9, 10], [0, 0, 7]]
    # only the most recent window of each history
    inputs, targets = training_windows(items, indptr, 3, max_windows=1)
    assert inputs.tolist() == [[7, 8, 9]] and targets.tolist() == [[8, 9, 10]]


def test_a_bounded_fit_runs_fewer_epochs_then_the_most_recent_windows_first():
    # 60 customers walking 0 → 23 (23 transitions: three windows of 8 each)
    long_walks = [list(range(N_ITEMS))] * 60
    r, t = histories(*long_walks)
    windows = 60 * 3
    params = {**SMALL, "epochs": 10, "batch_size": 30}  # 6 steps per epoch, 60 in all

    free = SASRec(**params, max_updates=None).fit(r, timestamps=t)
    assert (free.epochs_run_, free.updates_, free.windows_trained_) == (10, 60, windows)
    # the bound buys whole epochs while one epoch fits in it
    whole = SASRec(**params, max_updates=20).fit(r, timestamps=t)
    assert (whole.epochs_run_, whole.updates_, whole.windows_trained_, whole.windows_) == (3, 18, windows, windows)
    # below one epoch: one pass over 2 steps × 30 windows, every customer's most recent window first
    model = SASRec(**params, max_updates=2)
    items, indptr = ordered_histories(r, t, None)
    inputs, targets = training_windows(items, indptr, 8)
    kept_in, kept_t, epochs = model._within_budget(indptr, inputs, targets)
    assert epochs == 1 and len(kept_t) == 60
    assert (kept_t[:, -1] == N_ITEMS).all()  # each ends with the walk's last item (index + 1)
    assert (kept_in[:, -1] == N_ITEMS - 1).all()
    fitted = model.fit(r, timestamps=t)
    assert (fitted.epochs_run_, fitted.updates_, fitted.windows_trained_) == (1, 2, 60)
    with pytest.raises(ValueError, match="max_updates"):
        SASRec(max_updates=0).fit(r)


def test_bad_input_is_refused():
    r, t = histories([0, 1], [2, 3])
    with pytest.raises(RuntimeError):
        SASRec().recommend([0])
    with pytest.raises(ValueError, match="shape"):
        SASRec(**SMALL).fit(r, timestamps=t[:, :5])
    with pytest.raises(ValueError, match="sparse"):
        SASRec(**SMALL).fit(r, timestamps=t.toarray())
    with pytest.raises(ValueError, match="multiple of heads"):
        SASRec(factors=10, heads=3).fit(r)
    with pytest.raises(ValueError, match="dropout"):
        SASRec(dropout=1.0).fit(r)
    with pytest.raises(ValueError, match="loss"):
        SASRec(loss="hinge").fit(r)
    with pytest.raises(ValueError, match="ties"):
        SASRec(ties="alphabetical").fit(r)


@pytest.mark.slow
@pytest.mark.datasets
def test_on_movielens_leave_last_out_sasrec_beats_the_default_by_ten_percent(datasets_dir):
    from recommendations.engine import (
        SASREC_PARAMS,
        build_interactions,
        default_recommender,
        last_items_holdout,
        pair_matrix,
        topn_metrics,
    )
    from recommendations.engine.evaluation import load_movielens_ratings

    df = load_movielens_ratings(datasets_dir / "ml-100k" / "u.data")
    u, i = df.user.to_numpy() - 1, df.item.to_numpy() - 1
    t = df.timestamp.to_numpy(dtype=np.float64)
    shape = (int(u.max()) + 1, int(i.max()) + 1)
    relevant, keep = last_items_holdout(
        u, i, t, np.ones(len(u), bool), n_holdout=1, min_items=5, n_users=shape[0], n_items=shape[1]
    )
    r = build_interactions(
        u[keep], i[keep], df.rating.to_numpy(float)[keep], t[keep], n_users=shape[0], n_items=shape[1], explicit=True
    )
    times = pair_matrix(u[keep], i[keep], t[keep], n_users=shape[0], n_items=shape[1], agg="max")
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)

    def ndcg(model):
        return topn_metrics(model.recommend(users, n=10)[0], relevant, users, r, k=10)["ndcg@10"]

    sequence = ndcg(SASRec(**SASREC_PARAMS, n_threads=2).fit(r, timestamps=times))
    blind = ndcg(default_recommender(n_threads=2).fit(r))
    assert sequence >= 1.10 * blind, (sequence, blind)


def test_the_documented_defaults_are_the_estimators():
    from recommendations.engine import SASREC_PARAMS

    params = SASRec().get_params()
    assert {k: params[k] for k in SASREC_PARAMS} == SASREC_PARAMS
