"""Segments on Spark (issue #15): spark.ml's k-means against scikit-learn's on the demo shop's profiles,
and the Spark backend of the segments step on PostgreSQL: labels written by Spark to a staging table,
switched in one transaction, and a killed Spark job leaving the previous segments in service."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
from django.db import connection, connections
from django.test import override_settings
from sklearn.metrics import adjusted_rand_score

from profiles.demo import generate_shop
from profiles.features import catalogue_price_cuts, compute_features
from profiles.models import Customer, Profile
from segments import clustering
from segments.models import ClusteringRun, Membership, Segment

pytestmark = pytest.mark.spark

NOW = pd.Timestamp("2025-06-01 00:00", tz="UTC")
N_CUSTOMERS = 1_200
PERSONAS_K = 5  # the demo shop plants five personas (docs/segments.md)


@pytest.fixture(scope="module")
def shop_profiles():
    """The demo shop's profiles (1,200 customers at the default density of 75 events each), computed
    as the profiles step does, indexed by the customers' external ids; and their planted personas."""
    shop = generate_shop(seed=4, n_customers=N_CUSTOMERS, n_events=N_CUSTOMERS * 75, n_products=200, now=NOW)
    items = shop.items.set_index("external_id")
    code = pd.Series(np.arange(len(shop.customers)), index=shop.customers["external_id"])
    parts = [
        compute_features(
            pd.DataFrame(
                {
                    "customer_id": ev["customer"].map(code).to_numpy(),
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
        for ev in shop.iter_events()
    ]
    profiles = pd.concat(parts).sort_index()
    profiles.index = code.index[profiles.index]
    personas = shop.customers.set_index("external_id")["persona"].reindex(profiles.index)
    return profiles, personas


def _spark_frame(spark, profiles: pd.DataFrame):
    from segments.services import PROFILE_COLUMNS

    frame = profiles[PROFILE_COLUMNS[1:]].astype(float).copy()
    frame.insert(0, "customer_id", np.arange(len(frame), dtype=np.int64))
    return spark.createDataFrame(frame)


def _labels(result, n: int) -> np.ndarray:
    labels = result.labels.toPandas()
    out = np.full(n, -1)
    out[labels["customer_id"].to_numpy()] = labels["cluster"].to_numpy()
    return out


def test_spark_kmeans_chooses_the_same_k_and_agrees_with_scikit_learn(spark, shop_profiles):
    from segments import spark_clustering

    profiles, personas = shop_profiles
    # k searched over 3..8 (not 2..10) to keep the Spark tests short; Kneedle finds the same knee here.
    local = clustering.cluster_profiles(profiles, k_range=(3, 8))
    result = spark_clustering.cluster_profiles(_spark_frame(spark, profiles), k_range=(3, 8))
    try:
        labels = _labels(result, len(profiles))
    finally:
        spark_clustering.release(result)

    # The same k by the same rule, at the planted personas.
    assert local.chosen_k == result.chosen_k == PERSONAS_K, (local.rule, result.rule)
    assert result.knee == local.knee == PERSONAS_K
    # Spark's inertia is the same quantity as scikit-learn's: equal at the chosen k within 1 %.
    assert result.inertia_chosen == pytest.approx(local.inertia_chosen, rel=0.01)
    # Every customer labelled; the two k-means agree, and both find the personas.
    assert (labels >= 0).all()
    assert adjusted_rand_score(local.labels, labels) >= 0.9
    assert adjusted_rand_score(personas, labels) >= 0.85
    # Clusters numbered by size, with the same names and sizes within 2 % of the customers.
    sizes = [result.sizes[j] for j in range(result.chosen_k)]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(profiles)
    assert list(result.names()["name"]) == list(local.names()["name"])
    assert np.abs(np.array(sizes) - np.array([local.sizes[j] for j in range(local.chosen_k)])).max() <= 0.02 * len(
        profiles
    )
    # The scaling is StandardScaler's (population standard deviation), in Spark.
    np.testing.assert_allclose(result.matrix.mean, local.matrix.scaler.mean_, rtol=1e-9)
    np.testing.assert_allclose(result.matrix.scale, local.matrix.scaler.scale_, rtol=1e-9)


def test_bisecting_kmeans_is_the_hierarchical_option(spark, shop_profiles):
    from segments import spark_clustering

    profiles, personas = shop_profiles
    result = spark_clustering.cluster_profiles(_spark_frame(spark, profiles), method="agglomerative", k=PERSONAS_K)
    try:
        labels = _labels(result, len(profiles))
    finally:
        spark_clustering.release(result)
    ward = clustering.cluster_profiles(profiles, method="agglomerative", k=PERSONAS_K)
    assert result.rule == "pinned by operator" and result.method == "agglomerative"
    assert sorted(result.sizes.values()) == sorted(np.bincount(labels)) and len(result.sizes) == PERSONAS_K
    # Divisive bisection cannot undo an early split, so it is a weaker fit than Ward here: on the
    # 2,000-customer seed-1 demo it scores ARI 0.70 against the personas where Ward scores 0.94.
    assert adjusted_rand_score(personas, labels) >= 0.65
    assert adjusted_rand_score(ward.labels, labels) >= 0.65


# ---------------------------------------------------------------- the step on PostgreSQL, over JDBC


@pytest.fixture
def stored_shop(transactional_db, shop_profiles):
    """The shop's customers and profiles committed to the test database (Spark reads them over its own
    JDBC connection), removed afterwards."""
    if connection.vendor != "postgresql":
        pytest.skip("the Spark backend reads and writes PostgreSQL over JDBC; the database in use is SQLite")
    profiles, personas = shop_profiles
    Customer.objects.bulk_create([Customer(external_id=x) for x in profiles.index], batch_size=2000)
    ids = dict(Customer.objects.values_list("external_id", "pk"))
    from segments.services import PROFILE_COLUMNS

    columns = PROFILE_COLUMNS[1:]
    rows = profiles[columns].astype(object).where(profiles[columns].notna(), None)
    Profile.objects.bulk_create(
        [
            Profile(customer_id=ids[ext], computed_at=NOW, **dict(zip(columns, values, strict=True)))
            for ext, values in zip(rows.index, rows.itertuples(index=False), strict=True)
        ],
        batch_size=2000,
    )
    yield profiles, personas.rename(index=ids)


def _memberships() -> pd.DataFrame:
    return pd.DataFrame.from_records(
        Membership.objects.filter(segment__kind="cluster").values("segment_id", "customer_id", "since")
    ).sort_values(["customer_id", "segment_id"], ignore_index=True)


def _staging_tables() -> list[str]:
    return [t for t in connection.introspection.table_names() if t.startswith("segments_staging_run_")]


@override_settings(SEGMENT_K=PERSONAS_K)
def test_the_spark_backend_switches_segments_like_the_local_one(spark, stored_shop):
    from pipeline import services as pipeline

    _, personas = stored_shop
    local = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["segments"]))
    assert local.status == "succeeded", local.error
    before = _memberships()
    segments_before = dict(Segment.objects.filter(kind="cluster").values_list("pk", "name"))

    with override_settings(PIPELINE_BACKEND="spark"):
        run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["segments"]))
    assert run.status == "succeeded", run.error
    step = run.step_runs.get()
    assert step.backend == "spark"
    clustered = step.counts["clustering"]
    assert clustered["customers"] == N_CUSTOMERS and clustered["chosen_k"] == PERSONAS_K
    # The same segments kept their identities and names across the backends (matched by centroid).
    assert clustered["matched_segments"] == PERSONAS_K and clustered["new_segments"] == 0
    assert dict(Segment.objects.filter(kind="cluster", active=True).values_list("pk", "name")) == segments_before

    after = _memberships()
    assert len(after) == N_CUSTOMERS and after["customer_id"].is_unique  # each customer in one segment
    sizes = after["segment_id"].value_counts()
    for seg in Segment.objects.filter(kind="cluster", active=True):
        assert seg.size == sizes[seg.pk] and seg.size_history.count() == 2
    joined = before.merge(after, on="customer_id", suffixes=("_local", "_spark"))
    assert adjusted_rand_score(joined["segment_id_local"], joined["segment_id_spark"]) >= 0.9
    assert adjusted_rand_score(personas.loc[after["customer_id"]], after["segment_id"]) >= 0.85
    # Customers who stayed in their segment kept their "since"; the staging table is gone.
    stayed = joined[joined["segment_id_local"] == joined["segment_id_spark"]]
    assert len(stayed) >= 0.9 * N_CUSTOMERS and (stayed["since_local"] == stayed["since_spark"]).all()
    spark_run = ClusteringRun.objects.get(step=step)
    assert spark_run.status == "succeeded" and spark_run.n_customers == N_CUSTOMERS
    assert _staging_tables() == []


@override_settings(SEGMENT_K=PERSONAS_K)
def test_a_killed_spark_job_leaves_the_previous_segments_in_service(spark, stored_shop, monkeypatch):
    from pyspark.sql import functions as F

    import common.spark
    from segments import services

    services.segments_cluster(now=NOW.to_pydatetime())  # the segments in service (local backend)
    before = _memberships()
    segments_before = list(Segment.objects.filter(kind="cluster").values("pk", "name", "size", "members_version"))

    # Spark's write of the labels is slowed (5 ms per row in the JVM, eight partitions, each committed
    # to the staging table on its own) and killed once the first partitions are in: what readers are
    # served meanwhile is recorded on another connection, then every running Spark job is cancelled
    # (what the Spark UI's "kill" does).
    real_write = common.spark.jdbc_write
    pause = F.expr("reflect('java.lang.Thread', 'sleep', cast(5 as bigint))")
    seen: dict[str, object] = {}

    def write_then_kill(df, table, **kwargs):
        failure: list[BaseException] = []

        def write():
            try:
                real_write(df.repartition(8).where(pause.isNotNull()), table, **kwargs)
            except BaseException as exc:
                failure.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        reader = threading.Thread(target=read_while_writing, args=(table, writer))
        reader.start()
        reader.join()
        spark.sparkContext.cancelAllJobs()
        writer.join()
        if failure:
            raise failure[0]

    def read_while_writing(table, writer):
        try:
            while writer.is_alive():
                with connection.cursor() as cur:
                    cur.execute(f'SELECT count(*) FROM "{table}"')
                    staged = cur.fetchone()[0]
                if staged:
                    seen["staged"], seen["served"] = staged, _memberships()
                    return
                time.sleep(0.02)
        finally:
            connections.close_all()

    monkeypatch.setattr(common.spark, "jdbc_write", write_then_kill)
    with pytest.raises(Exception) as killed:
        services.segments_cluster_spark(now=pd.Timestamp.now(tz="UTC").to_pydatetime())

    # The job was killed while the staging table held part of the labels ...
    assert 0 < seen["staged"] < N_CUSTOMERS, seen.get("staged")
    assert "cancel" in str(killed.value).lower() or "interrupt" in str(killed.value).lower(), killed.value
    # ... readers were served the previous memberships meanwhile, and still are afterwards.
    pd.testing.assert_frame_equal(seen["served"], before)
    pd.testing.assert_frame_equal(_memberships(), before)
    assert list(Segment.objects.filter(kind="cluster").values("pk", "name", "size", "members_version")) == (
        segments_before
    )
    failed = ClusteringRun.objects.order_by("-pk").first()
    assert failed.status == "failed" and failed.error
    assert _staging_tables() == []  # the half-written staging table was dropped
