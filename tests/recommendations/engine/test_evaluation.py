"""Top-N and rating metrics on lists small enough to check by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine.evaluation import evaluate_topn, mae, rmse, topn_metrics


def test_rating_errors():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)


def test_topn_metrics_by_hand():
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=float))
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0]], dtype=float))
    recs = np.array([[1, 2], [3, 4]])

    m = topn_metrics(recs, relevant, np.array([0, 1]), train, k=2)

    # user 0: hit at rank 1 of 2 relevant; user 1: no hit
    assert m["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["hit_rate@2"] == pytest.approx(0.5)
    idcg0 = 1 + 1 / np.log2(3)
    assert m["ndcg@2"] == pytest.approx((1 / idcg0 + 0) / 2)
    assert m["map@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["coverage@2"] == pytest.approx(4 / 5)


def test_evaluate_topn_fits_and_excludes_training_items():
    class Constant:
        def fit(self, train):
            self.train = train
            return self

        def recommend(self, users, n=10, exclude_seen=True):
            return np.tile(np.arange(n), (len(users), 1)), np.zeros((len(users), n))

    relevant = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1]], dtype=float))
    out = evaluate_topn(Constant(), sp.csr_matrix((2, 3)), relevant, k=1)

    assert out["hit_rate@1"] == pytest.approx(0.5)
    assert out["n_users"] == 2
