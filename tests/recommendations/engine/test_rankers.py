"""User-based ranker, blends and the rankers' factories (issue #20), on matrices worked out by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import (
    BLEND_PARAMS,
    EXPLAIN_ITEM,
    EXPLAIN_NONE,
    EXPLAIN_SIMILAR_USERS,
    ITEM_RANKER_PARAMS,
    USER_RANKER_PARAMS,
    Blend,
    ItemKNN,
    Popularity,
    PureSVD,
    UserKNNRanker,
    blend_ranker,
    default_recommender,
    item_based_ranker,
    normalise_rows,
    user_based_ranker,
)


def rows(*baskets, n_items=None) -> sp.csr_matrix:
    """A binary user × item matrix from each user's list of items."""
    n_items = n_items or max(max(b) for b in baskets if b) + 1
    dense = np.zeros((len(baskets), n_items))
    for u, basket in enumerate(baskets):
        dense[u, list(basket)] = 1.0
    return sp.csr_matrix(dense)


# -- the user-based ranker ------------------------------------------------------------------


def test_ranker_suggests_first_what_the_most_similar_customer_bought():
    # u0 and u1 share items 0 and 1, and u1 also bought 2; u2 and u3 live elsewhere
    r = rows([0, 1], [0, 1, 2], [3, 4], [3, 4, 5])
    model = UserKNNRanker(k=1, value_transform="binary").fit(r)

    items, scores = model.recommend([0, 2], n=1)

    assert items[:, 0].tolist() == [2, 5]
    assert scores[0, 0] == pytest.approx(2 / (np.sqrt(2) * np.sqrt(3)))  # cosine(u0, u1) · one vote


def test_ranker_scores_are_the_neighbours_similarity_weighted_votes():
    r = rows([0, 1], [0, 1, 2], [0, 2], [1, 2, 3], n_items=5)
    model = UserKNNRanker(k=3, value_transform="binary").fit(r)

    s01, s02, s03 = 2 / np.sqrt(6), 1 / 2, 1 / np.sqrt(6)
    assert model.score([0])[0].tolist() == pytest.approx([s01 + s02, s01 + s03, s01 + s02 + s03, s03, 0])
    assert model.predict([0, 0], [2, 3]) == pytest.approx([s01 + s02 + s03, s03])


def test_shrinkage_lowers_neighbours_that_share_few_items():
    # A shares one item with u0 (cosine 0.354), B shares three but has 20 items (0.335)
    a = [0, 9]
    b = [0, 1, 2] + list(range(10, 27))
    r = rows([0, 1, 2, 3], a, b)
    plain = UserKNNRanker(k=1, value_transform="binary").fit(r)
    shrunk = UserKNNRanker(k=1, shrinkage=10, value_transform="binary").fit(r)

    assert plain.similar_users([0], n=1)[0][0, 0] == 1  # A is the nearest without shrinkage
    assert shrunk.similar_users([0], n=1)[0][0, 0] == 2  # B with it
    assert shrunk.similar_users([0], n=1)[1][0, 0] == pytest.approx(3 / (2 * np.sqrt(20)) * 3 / 13)
    # and so u0 is offered A's item 9 only without shrinkage
    assert plain.recommend([0], n=1)[0][0, 0] == 9
    assert shrunk.recommend([0], n=1)[0][0, 0] in b


def test_exponent_favours_the_closest_neighbour():
    # u0's close neighbour u1 bought item 5, four distant ones bought item 6
    r = rows([0, 1, 2], [0, 1, 2, 5], [0, 7, 8, 6], [1, 9, 10, 6], [2, 11, 12, 6], [0, 13, 14, 6])
    linear = UserKNNRanker(k=5, value_transform="binary").fit(r)
    squared = UserKNNRanker(k=5, exponent=2.0, value_transform="binary").fit(r)

    assert linear.recommend([0], n=1)[0][0, 0] == 6  # 4 × 0.289 > 0.866
    assert squared.recommend([0], n=1)[0][0, 0] == 5  # 0.866² = 0.75 > 4 × 0.289² = 0.33


def test_exclude_seen_and_filter_items():
    r = rows([0, 1], [0, 1, 2], [0, 2], [1, 2, 3], n_items=5)
    model = UserKNNRanker(k=3, value_transform="binary").fit(r)

    seen_allowed, _ = model.recommend([0], n=5, exclude_seen=False)
    excluded, _ = model.recommend([0], n=5)
    filtered, _ = model.recommend([0], n=5, filter_items=[2])

    assert seen_allowed[0, :3].tolist() == [2, 0, 1]  # the customer's own items get votes too
    assert excluded[0].tolist() == [2, 3, 4, -1, -1]
    assert filtered[0].tolist()[:2] == [3, 4]


def test_reason_names_how_many_similar_customers_bought_the_item():
    r = rows([0, 1], [0, 1, 2], [0, 2], [1, 2, 3], [4])
    model = UserKNNRanker(k=3, value_transform="binary").fit(r)

    items, _, why = model.recommend([0], n=3, return_explanations=True)

    assert items[0].tolist() == [2, 3, 4]
    assert why.kind[0].tolist() == [EXPLAIN_SIMILAR_USERS, EXPLAIN_SIMILAR_USERS, EXPLAIN_NONE]
    assert why.count[0].tolist() == [3, 1, 0]  # u1, u2, u3 bought 2; u3 bought 3; nobody near bought 4
    assert why.labels()[0, 0] == "similar_users"
    assert model.explain([0, 0], [2, 3]).count.tolist() == [3, 1]


def test_pearson_is_the_correlation_of_the_full_rows(random_implicit):
    model = UserKNNRanker(k=1000, similarity="pearson", value_transform="none").fit(random_implicit)
    dense = random_implicit.toarray()
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nan_to_num(np.corrcoef(dense))
    np.fill_diagonal(expected, 0.0)
    expected[expected < 0] = 0.0

    np.testing.assert_allclose(model.similarity_.toarray(), expected, atol=1e-12)


def test_cosine_shrinkage_exponent_top_k_and_popularity_penalty_against_brute_force(random_implicit):
    model = UserKNNRanker(k=5, shrinkage=3.0, exponent=1.5, beta=0.4, value_transform="log1p").fit(random_implicit)
    x = np.log1p(random_implicit.toarray())
    norms = np.linalg.norm(x, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.nan_to_num(x @ x.T / np.outer(norms, norms))
    co = (x > 0).astype(float) @ (x > 0).T
    sim = np.maximum(sim * co / (co + 3.0), 0) ** 1.5
    np.fill_diagonal(sim, 0.0)
    keep = np.zeros_like(sim)
    for u in range(len(sim)):  # the 5 largest, ties to the lower index
        order = np.lexsort((np.arange(len(sim)), -sim[u]))[:5]
        keep[u, order] = sim[u, order]
    keep[keep <= 0] = 0
    pop = (x > 0).sum(axis=0)
    votes = x * np.where(pop > 0, np.maximum(pop, 1) ** -0.4, 0)

    np.testing.assert_allclose(model.similarity_.toarray(), keep, atol=1e-12)
    np.testing.assert_allclose(model.score(np.arange(len(x))), keep @ votes, atol=1e-12)


def test_ranker_chunked_and_threaded_runs_agree(random_implicit):
    users = np.arange(random_implicit.shape[0])
    base = UserKNNRanker(k=8, shrinkage=5, n_threads=1).fit(random_implicit)
    other = UserKNNRanker(k=8, shrinkage=5, n_threads=2, chunk_size=7).fit(random_implicit)

    a_items, a_scores = base.recommend(users, n=6)
    b_items, b_scores = other.recommend(users, n=6)

    np.testing.assert_array_equal(a_items, b_items)
    np.testing.assert_allclose(a_scores, b_scores)
    np.testing.assert_allclose(base.similarity_.toarray(), other.similarity_.toarray())


@pytest.mark.parametrize("similarity", ["cosine", "pearson"])
@pytest.mark.parametrize("shrinkage,exponent,k", [(0.0, 1.0, 4), (5.0, 1.0, 10), (2.0, 2.0, 300)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_tiled_neighbours_match_the_full_dense_matrix(monkeypatch, similarity, shrinkage, exponent, k, n_threads):
    import recommendations.engine.user_ranking as user_ranking

    rng = np.random.default_rng(11)
    counts = (rng.random((83, 40)) < 0.2) * rng.integers(1, 9, size=(83, 40))
    counts[7] = 0  # a user with nothing
    r = sp.csr_matrix(counts.astype(float))
    # tiles of 9 users: 10 tiles a side, the last one short, so merges across tiles decide
    monkeypatch.setattr(user_ranking, "_FIT_BLOCK_BYTES", 8 * 9 * 9)
    model = UserKNNRanker(k=k, similarity=similarity, shrinkage=shrinkage, exponent=exponent, n_threads=n_threads).fit(
        r
    )

    x = np.log1p(counts.astype(float))
    centred = x - x.mean(axis=1, keepdims=True) if similarity == "pearson" else x
    norms = np.linalg.norm(centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.nan_to_num(centred @ centred.T / np.outer(norms, norms))
    co = (x > 0).astype(float) @ (x > 0).T
    if shrinkage:
        sim = sim * co / (co + shrinkage)
    sim = np.maximum(sim, 0) ** exponent
    np.fill_diagonal(sim, 0.0)
    expected = np.zeros_like(sim)
    for u in range(len(sim)):  # the k largest, ties to the lower index
        order = np.lexsort((np.arange(len(sim)), -sim[u]))[:k]
        expected[u, order] = sim[u, order]

    got = model.similarity_.toarray()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert (model.similarity_.data > 0).all()
    assert np.diff(model.similarity_.indptr).max() <= k


def test_tied_neighbours_go_to_the_lower_user_index_across_tiles(monkeypatch):
    import recommendations.engine.user_ranking as user_ranking

    rng = np.random.default_rng(5)
    base = (rng.random((6, 12)) < 0.4).astype(float)
    base[:, 0] = 1.0  # everyone shares an item: no zero rows
    dense = np.vstack([base] * 40)  # every taste 40 times: exact ties everywhere
    monkeypatch.setattr(user_ranking, "_FIT_BLOCK_BYTES", 8 * 70 * 70)
    model = UserKNNRanker(k=10, value_transform="binary", n_threads=1).fit(sp.csr_matrix(dense))
    # and within one tile, where argpartition alone picks any of the tied columns
    tile = -np.random.default_rng(0).integers(0, 3, (50, 500)).astype(float)
    _, picked = user_ranking._tile_topk(tile, 10, 100)
    expected = np.argsort(tile, axis=1, kind="stable")[:, :10] + 100
    np.testing.assert_array_equal(np.sort(picked, axis=1), np.sort(expected, axis=1))

    for u in range(len(dense)):
        twins = [v for v in range(u % 6, len(dense), 6) if v != u]  # identical rows, similarity 1
        assert model.similarity_[u].indices.tolist() == twins[:10], u


def test_ranker_rejects_bad_parameters(random_implicit):
    for bad in (dict(similarity="msd"), dict(k=0), dict(shrinkage=-1), dict(value_transform="sqrt")):
        with pytest.raises(ValueError):
            UserKNNRanker(**bad).fit(random_implicit)


def test_other_models_explanations_carry_a_zero_count():
    r = rows([0, 1], [0, 1, 2], [1, 2])
    _, _, why = ItemKNN(k=2).fit(r).recommend([0], n=1, return_explanations=True)

    assert why.kind[0, 0] == EXPLAIN_ITEM and why.count[0, 0] == 0


# -- blends --------------------------------------------------------------------------------


def test_minmax_normalisation_uses_the_candidates_only():
    scores = np.array([[10.0, 1.0, 3.0, 5.0], [2.0, 2.0, 2.0, 2.0]])
    cand = np.array([[False, True, True, True], [True, True, True, True]])

    out = normalise_rows(scores, cand, "minmax")

    # the seen item (10) sets nothing: 1 -> 0, 5 -> 1, and the same map applies to it
    assert out[0].tolist() == pytest.approx([2.25, 0.0, 0.5, 1.0])
    assert out[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # no spread: nothing to say


def test_zscore_normalisation_and_non_finite_scores():
    out = normalise_rows(np.array([[1.0, 2.0, 3.0, -np.inf]]), np.array([[True, True, True, True]]), "zscore")

    sd = np.sqrt(2 / 3)
    assert out[0].tolist() == pytest.approx([-1 / sd, 0.0, 1 / sd, -1 / sd])  # -inf becomes the lowest


def test_rank_normalisation_keeps_only_the_order_among_candidates():
    scores = np.array([[10.0, 1.0, 3.0, 5.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0], [1.0, np.nan, -np.inf, 4.0, 0.0]])
    cand = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=bool)

    out = normalise_rows(scores, cand, "rank")

    # worst candidate 0, best 1, ties share their mean rank; the seen item gets 0
    assert out[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 0.5])
    assert out[1].tolist() == [0.0] * 5  # no order: nothing to say
    assert out[2].tolist() == pytest.approx([2 / 3, 1 / 6, 1 / 6, 1.0, 0.0])  # NaN and -inf last


def test_blend_is_the_weighted_sum_of_normalised_scores(random_implicit):
    a, b = ItemKNN(k=10), UserKNNRanker(k=10)
    blend = Blend([a, b], [0.25, 0.75]).fit(random_implicit)
    users = np.arange(10)
    cand = random_implicit[users].toarray() == 0

    expected = 0.25 * normalise_rows(a.score(users), cand, "minmax") + 0.75 * normalise_rows(
        b.score(users), cand, "minmax"
    )

    np.testing.assert_allclose(blend.score(users), expected)
    np.testing.assert_allclose(blend.predict([3, 4], [7, 8]), expected[[3, 4], [7, 8]])


@pytest.mark.parametrize("normalisation", ["minmax", "zscore", "rank"])
def test_a_component_of_weight_zero_leaves_the_other_one_exactly(random_implicit, normalisation):
    users = np.arange(random_implicit.shape[0])
    ranker = UserKNNRanker(k=10).fit(random_implicit)
    item_knn = ItemKNN(k=10).fit(random_implicit)

    only_users = Blend([item_knn, ranker], [0.0, 1.0], normalisation=normalisation, prefit=True).fit(random_implicit)
    only_items = Blend([item_knn, ranker], [2.0, 0.0], normalisation=normalisation, prefit=True).fit(random_implicit)

    np.testing.assert_array_equal(only_users.recommend(users, n=8)[0], ranker.recommend(users, n=8)[0])
    np.testing.assert_array_equal(only_items.recommend(users, n=8)[0], item_knn.recommend(users, n=8)[0])
    _, _, why = only_users.recommend(users, n=8, return_explanations=True)
    _, _, theirs = ranker.recommend(users, n=8, return_explanations=True)
    np.testing.assert_array_equal(why.kind, theirs.kind)
    np.testing.assert_array_equal(why.count, theirs.count)


def test_blend_reason_comes_from_the_component_that_contributed_most(random_implicit):
    item_knn, ranker = ItemKNN(k=10), UserKNNRanker(k=10)
    blend = Blend([item_knn, ranker], [0.5, 0.5]).fit(random_implicit)
    users = np.arange(20)

    items, _, why = blend.recommend(users, n=5, return_explanations=True)

    cand = random_implicit[users].toarray() == 0
    by_item = np.take_along_axis(normalise_rows(item_knn.score(users), cand, "minmax"), items, axis=1)
    by_users = np.take_along_axis(normalise_rows(ranker.score(users), cand, "minmax"), items, axis=1)
    from_items = by_item >= by_users
    item_why = item_knn.explain(np.broadcast_to(users[:, None], items.shape), items)
    user_why = ranker.explain(np.broadcast_to(users[:, None], items.shape), items)
    assert from_items.any() and (~from_items).any()  # both kinds of reason occur
    np.testing.assert_array_equal(why.kind, np.where(from_items, item_why.kind, user_why.kind))
    np.testing.assert_array_equal(why.item, np.where(from_items, item_why.item, -1))
    np.testing.assert_array_equal(why.count, np.where(from_items, 0, user_why.count))


def test_blend_fits_unfitted_components_and_keeps_prefitted_ones(random_implicit):
    fitted = PureSVD(factors=4).fit(random_implicit)
    factors = fitted.item_factors_

    Blend([fitted, Popularity()], prefit=False).fit(random_implicit)
    assert fitted.item_factors_ is not factors  # refitted

    again = fitted.item_factors_
    Blend([fitted], prefit=True).fit(random_implicit)
    assert fitted.item_factors_ is again
    with pytest.raises(RuntimeError):
        Blend([PureSVD(factors=4)], prefit=True).fit(random_implicit)


def test_blend_rejects_bad_weights(random_implicit):
    for weights in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(ValueError):
            Blend([Popularity(), ItemKNN()], weights).fit(random_implicit)
    with pytest.raises(ValueError):
        Blend([Popularity()], normalisation="softmax").fit(random_implicit)


def test_blend_similar_items_combines_the_item_models_only():
    r = rows([0, 1], [0, 1], [0, 1, 2], [2, 3], [2, 3], [3, 4])
    item_knn = ItemKNN(k=4).fit(r)
    blend = Blend([item_knn, UserKNNRanker(k=2).fit(r)], [1.0, 1.0], prefit=True).fit(r)

    idx, _ = blend.similar_items([0, 3], n=2)

    np.testing.assert_array_equal(idx, item_knn.similar_items([0, 3], n=2)[0])
    with pytest.raises(NotImplementedError):
        Blend([UserKNNRanker(k=2)]).fit(r).similar_items([0])


# -- factories ---------------------------------------------------------------------------


def test_factories_return_the_documented_defaults():
    user = user_based_ranker()
    item = item_based_ranker(n_threads=1)
    blend = blend_ranker()

    assert isinstance(user, UserKNNRanker)
    assert {k: user.get_params()[k] for k in USER_RANKER_PARAMS} == USER_RANKER_PARAMS
    assert isinstance(item, ItemKNN) and item.n_threads == 1
    assert {k: item.get_params()[k] for k in ITEM_RANKER_PARAMS} == ITEM_RANKER_PARAMS
    assert [type(c) for c in blend.components] == [UserKNNRanker, ItemKNN]
    assert tuple(blend.weights) == BLEND_PARAMS[("user_based", "item_based")]["weights"]
    assert blend.normalisation == BLEND_PARAMS[("user_based", "item_based")]["normalisation"]
    assert user_based_ranker(k=7).k == 7


def test_blend_ranker_names_its_components():
    with_default = blend_ranker(("user_based", "default"), n_threads=1)
    three = blend_ranker(("user_based", "item_based", "default"))

    assert [type(c) for c in with_default.components] == [UserKNNRanker, type(default_recommender())]
    assert all(c.n_threads == 1 for c in with_default.components) and with_default.n_threads == 1
    assert list(three.weights) == [1.0, 1.0, 1.0] and three.normalisation == "minmax"
    with pytest.raises(ValueError, match="unknown blend components"):
        blend_ranker(("user_based", "svd++"))


def test_blend_ranker_of_the_default_and_rp3beta_takes_the_weights_chosen_for_it():
    from recommendations.engine import RP3BETA_PARAMS, RP3beta

    blend = blend_ranker(("default", "rp3beta"), n_threads=1)
    rp3 = blend.components[1]

    assert [type(c) for c in blend.components] == [PureSVD, RP3beta]
    assert {k: rp3.get_params()[k] for k in RP3BETA_PARAMS} == RP3BETA_PARAMS and rp3.n_threads == 1
    assert tuple(blend.weights) == BLEND_PARAMS[("default", "rp3beta")]["weights"] == (0.9, 0.1)
    assert blend.normalisation == "minmax"


def test_factories_rank_on_a_small_shop(random_implicit):
    users = np.arange(random_implicit.shape[0])
    for model in (user_based_ranker(), item_based_ranker(), blend_ranker()):
        items, _, why = model.fit(random_implicit).recommend(users, n=5, return_explanations=True)
        seen = random_implicit.toarray() > 0
        valid = items >= 0
        assert not seen[np.broadcast_to(users[:, None], items.shape)[valid], items[valid]].any()
        assert why.kind.shape == items.shape


# -- on the public datasets -------------------------------------------------------------


@pytest.fixture(scope="module")
def protocols(datasets_dir):
    from recommendations.engine.evaluation import load_protocol

    return {name: load_protocol(name, datasets_dir) for name in ("ml-100k", "online-retail")}


def _ndcg(model, split):
    from recommendations.engine.evaluation import evaluate_topn

    return evaluate_topn(model, split.train, split.relevant, users=split.users)["ndcg@10"]


@pytest.mark.datasets
@pytest.mark.slow
def test_validation_splits_never_see_the_test_period(datasets_dir, protocols):
    from recommendations.engine.evaluation import load_protocol

    for name, test in protocols.items():
        val = load_protocol(name, datasets_dir, validation=True)
        # every validation pair, trained on or held out, is in the test split's training data
        seen = {(test.user_ids[u], test.item_ids[i]) for u, i in zip(*test.train.nonzero(), strict=True)}
        pairs = zip(*(val.train + val.relevant).nonzero(), strict=True)

        assert {(val.user_ids[u], val.item_ids[i]) for u, i in pairs} <= seen, name
        assert len(val.users) > 500


@pytest.mark.datasets
@pytest.mark.slow
def test_user_based_ranker_reaches_nine_tenths_of_the_default_on_both_protocols(protocols):
    for name, split in protocols.items():
        default = _ndcg(default_recommender(), split)
        ranker = _ndcg(user_based_ranker(), split)

        assert ranker >= 0.9 * default, (name, ranker, default)


@pytest.mark.datasets
@pytest.mark.slow
def test_user_based_plus_default_blend_beats_the_default_on_online_retail_and_nearly_on_movielens(protocols):
    # measured 0.1226 vs 0.1201 and 0.1428 vs 0.1462 (docs/engine.md explains the gap on ML-100K)
    blend = {name: _ndcg(blend_ranker(("user_based", "default")), split) for name, split in protocols.items()}
    default = {name: _ndcg(default_recommender(), split) for name, split in protocols.items()}

    assert blend["online-retail"] >= default["online-retail"]
    assert blend["ml-100k"] >= 0.97 * default["ml-100k"]


@pytest.mark.datasets
@pytest.mark.slow
def test_default_plus_rp3beta_blend_reaches_the_default_on_both_protocols(protocols):
    # measured 0.1471 vs 0.1462 (ML-100K) and 0.1253 vs 0.1201 (Online Retail)
    for name, split in protocols.items():
        blend = _ndcg(blend_ranker(("default", "rp3beta")), split)
        default = _ndcg(default_recommender(), split)

        assert blend >= default, (name, blend, default)
