"""The recommendations step on the Spark backend, on a small demo shop in PostgreSQL: it fills the
suggestions the API serves, and a Spark job that dies leaves the previous run in service."""

import pandas as pd
import pytest
from django.db import connection

from pipeline import services as pipeline
from pipeline.models import PipelineStep, RunStatus
from profiles.models import Customer, Event
from recommendations import services_spark
from recommendations.models import (
    PopularItem,
    Recommendation,
    RecommenderConfig,
    RecommenderRun,
    SimilarItem,
)
from tests.factories import OperatorFactory, client_for, demo_shop_commit, demo_shop_empty

QUIET_ID = "c-quiet-001"


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A small demo shop committed to the test database (Spark reads it over its own connections),
    with profiles, segments and a local recommendations run in service."""
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.skip("the Spark backend reads and writes PostgreSQL (DATABASE_URL)")
        demo = demo_shop_commit(
            seed=5, customers=150, events=6_000, products=60, posts=20, quiet_id=QUIET_ID, chunk_size=10_000
        )
        run = pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"])
        pipeline.pipeline_execute(run=run)
        assert run.status == "succeeded", run.error
    yield demo
    with django_db_blocker.unblock():
        demo_shop_empty()
        RecommenderConfig.objects.filter(name="neighbours").delete()


def test_a_configuration_spark_cannot_compute_is_refused_by_name(db):
    RecommenderConfig.objects.create(name="next-item model", algorithm="sasrec", params={}, is_default=False)
    with pytest.raises(services_spark.SparkAlgorithmUnavailable, match=r"'next-item model'.*'sasrec'"):
        services_spark.recommendations_compute_spark(config="next-item model")
    assert not RecommenderRun.objects.filter(algorithm="sasrec").exists()


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.django_db
def test_the_spark_backend_fills_what_the_api_serves(shop, spark, settings):
    before = RecommenderRun.objects.get(is_active=True)
    settings.PIPELINE_BACKEND = "spark"
    run = pipeline.pipeline_create(steps=["recommendations"])
    pipeline.pipeline_execute(run=run)
    assert run.status == "succeeded", run.error
    assert PipelineStep.objects.get(pipeline=run, name="recommendations").backend == "spark"

    served = RecommenderRun.objects.get(is_active=True)
    assert served.pk != before.pk and served.params["backend"] == "spark"
    assert served.params["spark"]["algorithm"] == "pure_svd" and "als" in served.params["spark"]
    rows = pd.DataFrame.from_records(
        Recommendation.objects.filter(run=served).values("customer_id", "item_id", "kind", "rank", "reason")
    )
    # every customer gets a full list of every kind, ranks 1..n, never an item twice
    per = rows.groupby(["customer_id", "kind"])["rank"].agg(["count", "min", "max"])
    assert len(per) == Customer.objects.count() * 3
    assert (per["min"] == 1).all() and (per["count"] == per["max"]).all()
    assert not rows.duplicated(["customer_id", "item_id"]).any()
    # nothing a customer bought comes back as a product suggestion
    bought = set(Event.objects.filter(type="purchase", item__kind="product").values_list("customer_id", "item_id"))
    assert not bought & set(zip(rows.customer_id, rows.item_id, strict=True))
    assert (rows.reason == "item").mean() > 0.5  # most suggestions say which item of theirs led to them
    assert SimilarItem.objects.filter(run=served).exists() and PopularItem.objects.filter(run=served).exists()

    reader = client_for(OperatorFactory(username="reader", permissions=["recommendations.view_recommendation"]))
    # a customer whose first five products include one explained by their own history
    explained = rows[(rows.kind == "product") & (rows["rank"] <= 5) & (rows.reason == "item")]
    customer = Customer.objects.get(pk=int(explained.customer_id.min()))
    answer = reader.get(f"/api/customers/{customer.external_id}/recommendations/", {"kind": "product", "limit": 5})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["run"] == served.pk and [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    assert any(r["reason_text"].startswith("because you ") for r in body["results"]), body["results"]
    quiet = reader.get(f"/api/customers/{QUIET_ID}/recommendations/", {"kind": "post", "limit": 3}).json()
    assert {r["reason"] for r in quiet["results"]} <= {"popular", "segment_popular"} and quiet["results"]


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.django_db
def test_a_spark_job_that_dies_leaves_the_previous_run_in_service(shop, spark, monkeypatch):
    RecommenderConfig.objects.create(name="neighbours", algorithm="user_knn", params={"k": 30}, is_default=False)
    before = RecommenderRun.objects.get(is_active=True)
    served_before = list(Recommendation.objects.filter(run=before).values_list("customer_id", "item_id", "rank"))
    real_write = services_spark.jdbc_write

    def dies_at_the_popular_lists(df, table, **kwargs):
        if table == PopularItem._meta.db_table:  # the suggestions are written by now
            raise RuntimeError("Job aborted: executor lost (the Spark job was killed)")
        return real_write(df, table, **kwargs)

    monkeypatch.setattr(services_spark, "jdbc_write", dies_at_the_popular_lists)
    with pytest.raises(RuntimeError, match="executor lost"):
        services_spark.recommendations_compute_spark(config="neighbours")
    failed = RecommenderRun.objects.exclude(pk=before.pk).latest("pk")
    assert failed.status == RunStatus.FAILED and "executor lost" in failed.error
    assert failed.params["spark"]["algorithm"] == "user_knn"
    assert not Recommendation.objects.filter(run=failed).exists()  # its rows are discarded
    assert RecommenderRun.objects.get(is_active=True).pk == before.pk
    assert (
        list(Recommendation.objects.filter(run=before).values_list("customer_id", "item_id", "rank")) == served_before
    )
