"""ItemKNN, Popularity, RP3beta, PureSVD, build_interactions: hand-checked behaviour."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import (
    EXPLAIN_ITEM,
    EXPLAIN_NONE,
    EXPLAIN_POPULAR,
    ItemKNN,
    Popularity,
    PureSVD,
    RP3beta,
    build_interactions,
    default_recommender,
)


def test_build_interactions_sums_implicit_weights_with_decay():
    day = 86_400
    m = build_interactions(
        [0, 0, 1],
        [1, 1, 0],
        [1.0, 3.0, 2.0],
        timestamps=[0, 10 * day, 10 * day],
        half_life_days=10,
        n_users=2,
        n_items=2,
    )

    # the purchase 10 days before "now" counts half
    assert m.toarray() == pytest.approx(np.array([[0, 0.5 + 3.0], [2.0, 0]]))


def test_build_interactions_explicit_latest_rating_wins():
    m = build_interactions(
        [0, 0, 0], [1, 1, 1], [5.0, 2.0, 4.0], timestamps=[30, 10, 20], n_users=1, n_items=2, explicit=True
    )

    assert m[0, 1] == 5.0


def test_build_interactions_rejects_out_of_range_indices():
    with pytest.raises(ValueError):
        build_interactions([3], [0], n_users=2, n_items=2)


def test_item_knn_cosine_and_similar_items():
    # items 0 and 1 always bought together, item 2 alone
    r = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=float))
    model = ItemKNN(k=2).fit(r)

    idx, scores = model.similar_items([0], n=2)

    assert idx[0].tolist() == [1, 2]
    assert scores[0, 0] == pytest.approx(2 / (np.sqrt(3) * np.sqrt(2)))
    assert scores[0, 1] == pytest.approx(1 / (np.sqrt(3) * np.sqrt(2)))


def test_item_knn_explains_with_the_users_own_item():
    r = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=float))
    model = ItemKNN(k=3).fit(r)

    items, _, why = model.recommend([3, 4], n=1, return_explanations=True)

    assert items[:, 0].tolist() == [1, 3]
    assert why.kind[:, 0].tolist() == [EXPLAIN_ITEM, EXPLAIN_ITEM]
    assert why.item[:, 0].tolist() == [0, 2]  # "because you bought item 0 / item 2"
    assert model.explain([3], [1]).item.tolist() == [0]


def test_popularity_overall_group_and_decay():
    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=float))
    model = Popularity().fit(r)

    assert model.popularity_.tolist() == [1, 2, 2]
    items, scores = model.recommend_for_group([0, 1], n=2)
    assert items.tolist() == [1, 0] and scores.tolist() == [2, 1]
    mask = np.array([False, False, True, True])
    assert model.recommend_for_group(mask, n=1)[0].tolist() == [2]
    recs, _, why = model.recommend([0], n=2, return_explanations=True)
    assert recs[0].tolist() == [2, -1]
    assert why.kind[0, 0] == EXPLAIN_POPULAR

    # the two users of item 2 bought it 10 days after the others: the older entries count half
    ts = sp.csr_matrix((np.r_[1.0, 1.0, 1.0, 864_001.0, 864_001.0], r.indices, r.indptr), shape=r.shape)
    decayed = Popularity(half_life_days=10).fit(r, timestamps=ts)
    assert decayed.popularity_ == pytest.approx([0.5, 1.0, 2.0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: RP3beta(k=10),
        lambda: PureSVD(factors=8),
        lambda: ItemKNN(k=10),
        default_recommender,
        lambda: Popularity(),
    ],
)
def test_chunking_and_exclude_seen(random_implicit, make):
    whole = make()
    whole.chunk_size = 1000
    chunked = make()
    chunked.chunk_size = 7
    whole.fit(random_implicit)
    chunked.fit(random_implicit)

    a, sa = whole.recommend(np.arange(60), n=8)
    b, sb = chunked.recommend(np.arange(60), n=8)

    assert np.array_equal(a, b)
    assert np.allclose(sa, sb)
    seen = random_implicit[np.arange(60)].toarray() > 0
    rows = np.repeat(np.arange(60), 8).reshape(60, 8)
    assert not seen[rows[a >= 0], a[a >= 0]].any()
    assert (np.diff(sa, axis=1)[np.isfinite(sa[:, 1:])] <= 1e-12).all()


@pytest.mark.parametrize("make", [lambda: RP3beta(k=10), default_recommender])
def test_item_level_explanations_point_to_the_top_contributor(random_implicit, make):
    model = make().fit(random_implicit)
    users = np.arange(60)
    items, _, why = model.recommend(users, n=3, return_explanations=True)

    # brute force: argmax_j x_uj · W_ji over the user's own items
    x = model.user_items_.toarray()
    if isinstance(model, PureSVD):
        w = model.item_factors_ @ model.item_factors_.T
    else:
        w = model.similarity_.toarray()
    by_item = 0
    for u, i, kind, src in zip(np.repeat(users, 3), items.ravel(), why.kind.ravel(), why.item.ravel(), strict=False):
        contrib = x[u] * w[:, i] if i >= 0 else np.zeros(1)
        if contrib.max() > 0:
            assert kind == EXPLAIN_ITEM
            assert contrib[src] == pytest.approx(contrib.max(), rel=1e-5)
            by_item += 1
        else:  # no own item speaks for it (user 5 has none): no "because you bought" either
            assert (kind, src) == (EXPLAIN_NONE, -1)
    assert by_item == 59 * 3  # every suggestion of each of the 59 users with interactions


def test_default_recommender_is_pure_svd_with_overrides():
    model = default_recommender(n_threads=1)

    assert isinstance(model, PureSVD)
    assert model.n_threads == 1


def test_capped_threads_limits_blas_inside_and_restores_it_after():
    from threadpoolctl import threadpool_info

    from recommendations.engine._base import capped_threads

    before = [lib["num_threads"] for lib in threadpool_info()]
    for _ in range(2):  # the second time through the cached controller
        with capped_threads(1):
            assert all(lib["num_threads"] == 1 for lib in threadpool_info())
        assert [lib["num_threads"] for lib in threadpool_info()] == before
