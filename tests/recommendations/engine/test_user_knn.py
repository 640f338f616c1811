"""UserKNN on matrices small enough to check by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import EXPLAIN_SIMILAR_USERS, UserKNN


def test_means_are_over_observed_ratings_only(tiny_ratings):
    model = UserKNN(similarity="msd", neighbourhood="per_item").fit(tiny_ratings)

    assert model.user_means_ == pytest.approx([4.0, 3.0, 10 / 3])


def test_msd_similarities_match_hand_computation(tiny_ratings):
    model = UserKNN(similarity="msd", neighbourhood="per_item").fit(tiny_ratings)
    sim = model.similarity_.toarray()

    # (u0,u1) share i0: msd 1; (u0,u2) share i0,i1: msd 10; (u1,u2) share i0,i2: msd 6.5
    assert sim[0, 1] == pytest.approx(1 / 2)
    assert sim[0, 2] == pytest.approx(1 / 11)
    assert sim[1, 2] == pytest.approx(1 / 7.5)
    assert np.allclose(sim, sim.T)


@pytest.mark.parametrize("neighbourhood", ["per_item", "global"])
def test_prediction_follows_the_mean_centred_formula(tiny_ratings, neighbourhood):
    model = UserKNN(k=2, similarity="msd", neighbourhood=neighbourhood, rating_range=None).fit(tiny_ratings)

    pred = model.predict([0, 1], [2, 1])

    # P(u0,i2) = 4 + (1/2·(2−3) + 1/11·(4−10/3)) / (1/2 + 1/11) = 127/39
    # P(u1,i1) = 3 + (1/2·(3−4) + 2/15·(5−10/3)) / (1/2 + 2/15) = 146/57
    assert pred == pytest.approx([127 / 39, 146 / 57])


def test_k_limits_the_neighbours_to_the_most_similar(tiny_ratings):
    model = UserKNN(k=1, similarity="msd", neighbourhood="per_item").fit(tiny_ratings)

    # only u1 (sim 1/2) among the raters of i2: 4 + (2 − 3)
    assert model.predict([0], [2]) == pytest.approx([3.0])


def test_unknown_users_and_items_get_the_global_mean_and_predictions_are_clipped():
    r = sp.csr_matrix(np.array([[5, 1, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0]], dtype=float))
    model = UserKNN(similarity="msd", neighbourhood="per_item").fit(r)

    pred = model.predict([2, 0, 1], [0, 2, 1])

    assert pred[0] == pytest.approx(11 / 3)  # user 2 has no ratings
    assert pred[1] == pytest.approx(11 / 3)  # item 2 has none
    assert 1.0 <= pred[2] <= 5.0


def test_min_k_falls_back_to_the_user_mean(tiny_ratings):
    model = UserKNN(k=5, min_k=3, similarity="msd", neighbourhood="per_item").fit(tiny_ratings)

    assert model.predict([0], [2]) == pytest.approx([4.0])


def test_pearson_uses_co_rated_items_only():
    # u0 and u1 agree perfectly on the two items they share; u1's third item must not matter
    r = sp.csr_matrix(np.array([[1, 3, 0], [2, 4, 1]], dtype=float))
    model = UserKNN(similarity="pearson", neighbourhood="per_item").fit(r)

    assert model.similarity_[0, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("min_k", [1, 3])
@pytest.mark.parametrize("neighbourhood", ["per_item", "global"])
def test_block_scores_equal_pair_predictions(monkeypatch, random_implicit, neighbourhood, min_k, n_threads):
    # predict() would score this many pairs as rows itself; make it take the per-pair path
    monkeypatch.setattr("recommendations.engine.knn._ROW_VS_PAIR_COST", float("inf"))
    model = UserKNN(k=5, similarity="pearson", neighbourhood=neighbourhood, min_k=min_k, n_threads=n_threads).fit(
        random_implicit
    )
    users = np.repeat(np.arange(60), 45)
    items = np.tile(np.arange(45), 60)

    block = model.score(np.arange(60))

    np.testing.assert_allclose(block.reshape(-1), model.predict(users, items), rtol=0, atol=1e-12)


def _surprise_similarity(a, b, name):
    """One pair's similarity the way scikit-surprise computes it, over co-rated items."""
    common = (a != 0) & (b != 0)
    x, y, n = a[common], b[common], common.sum()
    if n == 0:
        return 0.0
    if name == "msd":
        return 1.0 / (np.sum((x - y) ** 2) / n + 1.0)
    if name == "cosine":
        den = np.sqrt(np.sum(x**2) * np.sum(y**2))
        return 0.0 if den == 0 else np.sum(x * y) / den
    den = np.sqrt((n * np.sum(x**2) - np.sum(x) ** 2) * (n * np.sum(y**2) - np.sum(y) ** 2))
    return 0.0 if den == 0 else (n * np.sum(x * y) - np.sum(x) * np.sum(y)) / den


@pytest.mark.parametrize("sparse_path", [False, True])
@pytest.mark.parametrize("values", ["integer", "fractional"])
@pytest.mark.parametrize("similarity", ["msd", "pearson", "cosine"])
def test_similarities_equal_a_loop_over_co_rated_items(monkeypatch, similarity, values, sparse_path):
    # integer ratings take exact float32 products, fractional ones float64; both the
    # dense products (small populations) and the chunked sparse ones must agree
    if sparse_path:
        monkeypatch.setattr("recommendations.engine.knn._DENSE_SIM_MAX", 0)
    rng = np.random.default_rng(3)
    dense = (rng.random((40, 30)) < 0.3) * rng.integers(1, 6, size=(40, 30)).astype(float)
    if values == "fractional":
        dense = dense * rng.uniform(0.3, 1.7, size=dense.shape)
    dense[7] = 0  # a user with no ratings

    model = UserKNN(similarity=similarity, neighbourhood="per_item").fit(sp.csr_matrix(dense))

    expected = np.array([[_surprise_similarity(dense[u], dense[v], similarity) for v in range(40)] for u in range(40)])
    expected[expected < 0] = 0.0
    np.fill_diagonal(expected, (dense != 0).any(axis=1).astype(float))  # a user is its own neighbour
    # integer sums are exact, so those similarities are bit-identical; fractional ones
    # differ in the order of summation only (Pearson's n·Σx² − (Σx)² cancels)
    tolerance = 0.0 if values == "integer" else 1e-9
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("similarity", ["pearson", "cosine", "msd"])
def test_chunking_gives_the_same_recommendations(random_implicit, similarity):
    whole = UserKNN(k=5, similarity=similarity, neighbourhood="per_item", chunk_size=1000).fit(random_implicit)
    chunked = UserKNN(k=5, similarity=similarity, neighbourhood="per_item", chunk_size=7).fit(random_implicit)

    a_items, a_scores = whole.recommend(np.arange(60), n=5)
    b_items, b_scores = chunked.recommend(np.arange(60), n=5)

    assert np.array_equal(a_items, b_items)
    assert np.allclose(a_scores, b_scores)


def test_recommend_excludes_seen_and_filtered_items_and_explains(tiny_ratings):
    model = UserKNN(k=2, similarity="msd", neighbourhood="global").fit(tiny_ratings)

    items, scores, why = model.recommend([0, 1], n=2, filter_items=[1], return_explanations=True)

    assert items[0].tolist() == [2, -1]  # i0, i1 seen; i1 also filtered
    assert items[1].tolist() == [-1, -1]  # u1 saw i0, i2; i1 filtered
    assert scores[0, 0] == pytest.approx(127 / 39)
    assert why.kind[0, 0] == EXPLAIN_SIMILAR_USERS
    assert why.labels()[0, 0] == "similar_users"
    assert why.kind[0, 1] == 0


def test_global_neighbourhood_keeps_k_best_users(random_implicit):
    model = UserKNN(k=3, similarity="cosine", neighbourhood="global").fit(random_implicit)

    assert np.diff(model.similarity_.indptr).max() <= 3
    assert model.similarity_.diagonal().sum() == 0
    idx, sims = model.similar_users([0], n=3)
    assert (np.diff(sims[0][np.isfinite(sims[0])]) <= 0).all()
