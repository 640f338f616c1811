"""Clustering of profiles: planted personas are recovered, k is chosen sensibly, identities are stable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from profiles.demo import generate_shop
from profiles.features import catalogue_price_cuts, compute_features, score_rfm
from segments.clustering import (
    build_feature_matrix,
    choose_k,
    cluster_profiles,
    describe_cluster,
    knee_point,
    match_clusters,
    population_stats,
)

NOW = pd.Timestamp("2025-06-01 00:00", tz="UTC")


def demo_profiles(seed: int):
    """The demo shop's profiles, computed the way the Django service does (items joined in,
    integer customer ids, order ids lifted from the context)."""
    shop = generate_shop(seed=seed, now=NOW)
    items = shop.items.set_index("external_id")
    cid = pd.Series(np.arange(1, len(shop.customers) + 1), index=shop.customers["external_id"])
    parts = []
    for ev in shop.iter_events():
        parts.append(
            compute_features(
                pd.DataFrame(
                    {
                        "customer_id": ev["customer"].map(cid).to_numpy(),
                        "type": ev["type"],
                        "value": ev["value"],
                        "amount": ev["amount"],
                        "occurred_at": ev["occurred_at"],
                        "category": ev["item"].map(items["category"]),
                        "item_price": ev["item"].map(items["price"]),
                        "item_kind": ev["item_kind"],
                        "order_id": [c.get("order_id") if c else None for c in ev["context"]],
                    }
                ),
                now=NOW,
                price_cuts=catalogue_price_cuts(items["price"]),
            )
        )
    profiles = score_rfm(pd.concat(parts).sort_index())
    personas = shop.customers.set_index(cid.to_numpy())["persona"].reindex(profiles.index)
    return profiles, personas


# ---------------------------------------------------------------- the key test
@pytest.mark.parametrize("seed", [1, 2])
def test_automatic_clustering_recovers_the_planted_personas(seed):
    # given: the demo shop's profiles
    profiles, personas = demo_profiles(seed)

    # when: clustered with automatic k
    result = cluster_profiles(profiles, random_state=0)

    # then: the clusters are the personas
    assert adjusted_rand_score(personas, result.labels) >= 0.8
    assert result.chosen_k == result.knee == 5
    names = set(result.names()["name"])
    assert {"Community enthusiasts", "New visitors", "Lapsed customers"} <= names
    assert "High value · frequent · recent" in names
    assert any(n.startswith("Bargain hunters") for n in names)
    # and the figures an operator sees are all there
    assert set(result.inertia) == set(result.silhouette) == set(range(2, 11))
    assert sum(result.sizes.values()) == len(profiles)
    assert list(result.sizes.values()) == sorted(result.sizes.values(), reverse=True)
    assert result.duration_s > 0


# ---------------------------------------------------------------- knee and k
def test_knee_point_by_hand():
    assert knee_point([1, 2, 3, 4, 5, 6], [100, 50, 10, 8, 6, 4]) == 3
    assert knee_point([1, 2, 3, 4], [40, 30, 20, 10]) is None  # a straight line has no knee
    assert knee_point([1, 2], [10, 1]) is None


CORNERS = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 10, 0], [10, 0, 10], [0, 10, 10]], dtype=float)


def blobs(n=1500, centers=4, seed=0, std=1.0):
    """Well-separated blobs: centres on corners of a cube of side 10 (10 standard deviations apart)."""
    X, y = make_blobs(n_samples=n, centers=CORNERS[:centers], n_features=3, cluster_std=std, random_state=seed)
    frame = pd.DataFrame(X, columns=["a", "b", "c"], index=pd.RangeIndex(100, 100 + n, name="customer_id"))
    return frame, y


@pytest.mark.parametrize(("centers", "seed"), [(3, 5), (4, 1), (5, 2), (6, 3)])
def test_choose_k_finds_the_obvious_number_of_blobs(centers, seed):
    frame, y = blobs(n=900, centers=centers, seed=seed)
    X = build_feature_matrix(frame, features=["a", "b", "c"], log_features=()).X
    sel = choose_k(X, range(2, 10), random_state=0)
    assert sel.chosen_k == centers
    assert abs(sel.knee - centers) <= 1
    assert sel.silhouette[centers] == max(sel.silhouette.values())


def test_pinned_k_is_respected():
    frame, _ = blobs(centers=4)
    result = cluster_profiles(frame, features=["a", "b", "c"], log_features=(), k=7)
    assert result.chosen_k == 7 and result.k_pinned
    assert len(np.unique(result.labels)) == 7 and len(result.centroids) == 7
    assert result.inertia == {} and result.rule == "pinned by operator"


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_methods_recover_blobs(method):
    frame, y = blobs(n=2000, centers=4, seed=3)
    result = cluster_profiles(
        frame,
        features=["a", "b", "c"],
        log_features=(),
        method=method,
        agglomerative_sample=800,
        random_state=1,
        k_range=(2, 8),
    )
    assert result.chosen_k == 4
    assert adjusted_rand_score(y, result.labels) > 0.98
    assert len(result.labels) == len(frame)


def test_minibatch_above_threshold():
    frame, y = blobs(n=3000, centers=4, seed=4)
    result = cluster_profiles(
        frame,
        features=["a", "b", "c"],
        log_features=(),
        minibatch_above=1000,
        selection_sample=1200,
        silhouette_sample=1000,
        k_range=(2, 8),
    )
    assert result.chosen_k == 4
    assert adjusted_rand_score(y, result.labels) > 0.98


# ---------------------------------------------------------------- original units and imputation
def test_centroids_are_in_original_units():
    # two groups, constant within each: the centroid is exactly the group's value,
    # through log1p and standardisation and back
    profiles = pd.DataFrame(
        {
            "monetary": [10.0] * 30 + [1000.0] * 20,
            "frequency": [1] * 30 + [12] * 20,
            "recency_days": [200.0] * 30 + [3.0] * 20,
        }
    )
    result = cluster_profiles(profiles, features=["monetary", "frequency", "recency_days"], k=2)
    c = result.centroids.sort_values("monetary")
    np.testing.assert_allclose(c.to_numpy(), [[10.0, 1.0, 200.0], [1000.0, 12.0, 3.0]], rtol=1e-9)
    assert result.sizes == {0: 30, 1: 20}
    back = result.to_scaled(result.centroids)
    np.testing.assert_allclose(back, result.centroids_scaled, atol=1e-9)


def test_nulls_are_imputed_as_documented():
    profiles = pd.DataFrame(
        {
            "recency_days": [5.0, np.nan, 20.0],
            "avg_order_value": [10.0, np.nan, 30.0],
            "frequency": [1, 0, 2],
            "community_posts": [1, 0, 0],
            "community_comments": [2, 0, 0],
            "community_likes": [3, 0, 1],
        }
    )
    fm = build_feature_matrix(
        profiles, features=["recency_days", "avg_order_value", "frequency", "community_actions"], window_days=365
    )
    assert fm.raw.loc[1, "recency_days"] == 365
    assert fm.raw.loc[1, "avg_order_value"] == 20.0  # the median of known values
    assert list(fm.raw["community_actions"]) == [6, 0, 1]
    assert set(fm.log_columns) == {"avg_order_value", "frequency", "community_actions"}
    np.testing.assert_allclose(fm.X.mean(axis=0), 0, atol=1e-12)


def test_interest_shares_can_be_added():
    profiles = pd.DataFrame(
        {
            "frequency": [1, 2, 3],
            "interests": [{"Books": 1.0}, {"Books": 0.5, "Garden": 0.5}, {"Garden": 0.2, "Toys": 0.8}],
        }
    )
    fm = build_feature_matrix(profiles, features=["frequency"], interest_categories=2)
    assert fm.columns == ["frequency", "interest:Books", "interest:Toys"]  # largest totals: 1.5, 0.8
    assert list(fm.raw["interest:Toys"]) == [0.0, 0.0, 0.8]


# ---------------------------------------------------------------- naming
STATS = population_stats(
    pd.DataFrame(
        {
            "recency_days": np.linspace(1, 180, 101),
            "frequency": np.linspace(0, 20, 101),
            "monetary": np.linspace(0, 5000, 101),
            "avg_order_value": np.linspace(5, 500, 101),
            "events_30d": np.linspace(0, 40, 101),
            "community_actions": np.linspace(0, 50, 101),
        }
    )
)


@pytest.mark.parametrize(
    ("centroid", "expected"),
    [
        (
            dict(recency_days=5, frequency=18, monetary=4500, avg_order_value=250, events_30d=20, community_actions=1),
            "High value · frequent · recent",
        ),
        (
            dict(recency_days=170, frequency=3, monetary=100, avg_order_value=20, events_30d=0, community_actions=0),
            "Lapsed bargain hunters",
        ),
        (
            dict(recency_days=160, frequency=3, monetary=300, avg_order_value=200, events_30d=0, community_actions=0),
            "Lapsed customers",
        ),
        (
            dict(recency_days=60, frequency=2, monetary=80, avg_order_value=40, events_30d=15, community_actions=45),
            "Community enthusiasts",
        ),
        (
            dict(recency_days=365, frequency=0, monetary=0, avg_order_value=40, events_30d=30, community_actions=0),
            "New visitors",
        ),
        (
            dict(recency_days=365, frequency=0, monetary=0, avg_order_value=40, events_30d=0, community_actions=0),
            "Dormant browsers",
        ),
        (
            dict(recency_days=120, frequency=8, monetary=200, avg_order_value=20, events_30d=8, community_actions=0),
            "Bargain hunters",
        ),
        (
            dict(recency_days=40, frequency=8, monetary=200, avg_order_value=20, events_30d=8, community_actions=0),
            "Bargain hunters · recent",
        ),
        (
            dict(recency_days=10, frequency=1, monetary=40, avg_order_value=40, events_30d=30, community_actions=0),
            "New customers",
        ),
    ],
)
def test_describe_cluster_names(centroid, expected):
    name, description = describe_cluster(centroid, STATS)
    assert name == expected
    assert description.startswith("Typical customer:")


def test_describe_cluster_description_reads_the_centroid():
    _, description = describe_cluster(
        pd.Series(dict(recency_days=5, frequency=12, monetary=3090, avg_order_value=257.5, events_30d=19)), STATS
    )
    assert "12 orders worth 3,090" in description and "last purchase 5.0 days ago" in description


# ---------------------------------------------------------------- matching
def test_match_clusters_keeps_identities_under_permutation():
    prev = pd.DataFrame(np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 3.0], [2.0, -4.0]]), index=[10, 11, 12, 13])
    perm = [2, 0, 3, 1]
    new = pd.DataFrame(prev.to_numpy()[perm] + 0.05, index=[0, 1, 2, 3])
    assert match_clusters(prev, new) == {0: 12, 1: 10, 2: 13, 3: 11}


def test_match_clusters_marks_far_clusters_as_new_and_handles_sizes():
    prev = np.array([[0.0, 0.0], [5.0, 5.0]])
    new = np.array([[5.1, 4.9], [20.0, 20.0], [0.1, 0.0]])
    assert match_clusters(prev, new, threshold=0.5) == {0: 1, 1: None, 2: 0}
    assert match_clusters(np.empty((0, 2)), new) == {0: None, 1: None, 2: None}


def test_rerun_with_other_seed_matches_previous_run():
    frame, _ = blobs(centers=5, seed=6)
    first = cluster_profiles(frame, features=["a", "b", "c"], log_features=(), k=5, random_state=0)
    again = cluster_profiles(
        frame.sample(frac=1, random_state=1), features=["a", "b", "c"], log_features=(), k=5, random_state=7
    )
    mapping = match_clusters(again.to_scaled(first.centroids), again.centroids_scaled)
    assert None not in mapping.values() and sorted(mapping.values()) == list(range(5))
    lab_first = pd.Series(first.labels, index=first.index)
    lab_again = pd.Series(again.labels, index=again.index).map(mapping)
    assert (lab_again.reindex(lab_first.index) == lab_first).mean() > 0.99


def test_clustering_imports_no_django():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, segments.clustering, profiles.features, profiles.demo; "
        "assert not any(m.startswith('django') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
