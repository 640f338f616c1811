"""The recommender on Spark agrees with the local engine on MovieLens 100K (issue #15).

Each test computes the local figure and the Spark one in the same run, on the evaluation's last-10
split (`movielens_topn_split`): item-item neighbours against exact cosine (`ItemKNN`), the seed's
mean-centred user-based predictions against `UserKNN`, and implicit ALS's NDCG@10 against the
`implicit` library's ALS as the evaluation runs it (`ImplicitPeer`). To keep the Spark work small
the neighbourhood tests use the first 300 users of ML-100K (all their items); ALS uses all of it.
"""

import numpy as np
import pandas as pd
import pytest

from recommendations.engine import ItemKNN, UserKNN
from recommendations.engine.evaluation import ImplicitPeer, load_movielens_ratings, movielens_topn_split, topn_metrics

pytestmark = [pytest.mark.spark, pytest.mark.datasets, pytest.mark.slow]

SUBSET_USERS = 300


@pytest.fixture(scope="module")
def ml(datasets_dir):
    return movielens_topn_split(datasets_dir / "ml-100k")


def _frame(spark, m):
    c = m.tocoo()
    pdf = pd.DataFrame({"user": c.row.astype(np.int64), "item": c.col.astype(np.int64), "value": c.data})
    return spark.createDataFrame(pdf).cache()


@pytest.fixture(scope="module")
def subset(ml):
    """The training matrix of the first users only (rows kept, so indices are the split's)."""
    train = ml.train.tolil(copy=True)
    train[SUBSET_USERS:, :] = 0
    return train.tocsr()


def _overlap(local, spark_pairs: pd.DataFrame) -> float:
    """Mean share of each item's local top-k neighbours that Spark also lists."""
    got = spark_pairs.groupby("item")["other"].apply(set)
    shares = []
    for i in range(local.shape[0]):
        want = set(local.indices[local.indptr[i] : local.indptr[i + 1]].tolist())
        if want:
            shares.append(len(want & got.get(i, set())) / len(want))
    return float(np.mean(shares))


def test_item_neighbours_match_exact_cosine(spark, subset):
    from recommendations.engine import spark as spark_engine

    exact = ItemKNN(k=20).fit(subset).similarity_
    df = _frame(spark, subset)
    pairs = spark_engine.item_similarities(df, 20, method="exact").toPandas()
    overlap = _overlap(exact, pairs)
    print(f"exact: top-20 overlap {overlap:.4f}")
    assert overlap >= 0.95
    # the scores are the cosines themselves
    local = pd.DataFrame({"item": np.repeat(np.arange(exact.shape[0]), np.diff(exact.indptr)), "other": exact.indices})
    local["local"] = exact.data
    both = local.merge(pairs, on=["item", "other"])
    np.testing.assert_allclose(both["score"], both["local"], atol=1e-9)


def test_dimsum_neighbours_overlap_exact_cosine(spark, subset):
    from recommendations.engine import spark as spark_engine

    exact = ItemKNN(k=20).fit(subset).similarity_
    pairs = spark_engine.item_similarities(_frame(spark, subset), 20, method="dimsum", threshold=0.01).toPandas()
    overlap = _overlap(exact, pairs)
    print(f"DIMSUM (threshold 0.01): top-20 overlap {overlap:.4f}")
    assert overlap >= 0.95


def test_user_based_predictions_equal_userknn(spark, ml, subset, datasets_dir):
    from recommendations.engine import spark as spark_engine

    # the test pairs of the subset's users: their last 10 ratings (the split's held-out ratings)
    ratings = load_movielens_ratings(datasets_dir / "ml-100k" / "u.data")
    ratings = ratings.sort_values(["user", "timestamp", "item"], kind="mergesort")
    test = ratings[ratings.groupby("user").cumcount(ascending=False) < 10]
    u = np.searchsorted(ml.user_ids, test.user.to_numpy())
    i = np.searchsorted(ml.item_ids, test.item.to_numpy())
    keep = u < SUBSET_USERS
    pairs = pd.DataFrame({"user": u[keep].astype(np.int64), "item": i[keep].astype(np.int64)})
    local = UserKNN(k=40, similarity="pearson", neighbourhood="per_item").fit(subset[:SUBSET_USERS])
    expected = local.predict(pairs.user, pairs.item)
    got = spark_engine.user_knn_predict(_frame(spark, subset), spark.createDataFrame(pairs), k=40).toPandas()
    got = pairs.merge(got, on=["user", "item"], how="left")
    assert len(got) == len(pairs) > 2000
    print(f"user-based: {len(pairs)} pairs, largest difference {np.abs(got['prediction'] - expected).max():.2e}")
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, atol=1e-6, rtol=0)


def test_als_reaches_implicit_ndcg(spark, ml):
    from recommendations.engine import spark as spark_engine

    k = 10
    peer = ImplicitPeer("als", {"factors": 64}).fit(ml.train)
    items, _ = peer.recommend(ml.users, n=k)
    local = topn_metrics(items, ml.relevant, ml.users, ml.train, k=k)[f"ndcg@{k}"]

    df = _frame(spark, ml.train)
    model = spark_engine.als_fit(df, factors=64, iterations=15, regularization=0.01, alpha=1.0)
    top = spark_engine.factor_top_n(model.userFactors, model.itemFactors, df, n=k, reasons=False).toPandas()
    lists = np.full((ml.train.shape[0], k), -1)
    lists[top.user.to_numpy(), top["rank"].to_numpy() - 1] = top.item.to_numpy()
    # no list holds an item of the user's training history
    listed = lists >= 0
    rows = np.broadcast_to(np.arange(lists.shape[0])[:, None], lists.shape)
    assert not (np.asarray(ml.train[rows[listed], lists[listed]]).ravel() > 0).any()
    got = topn_metrics(lists[ml.users], ml.relevant, ml.users, ml.train, k=k)[f"ndcg@{k}"]
    print(f"NDCG@10 implicit ALS {local:.4f}, Spark ALS {got:.4f}")
    assert abs(got - local) <= 0.01
