"""The profiles step on the Spark backend (docs/spark.md): the same profiles as the local backend
for every customer of a demo shop, recorded as computed by Spark, and a killed Spark job leaves the
previous profiles in service.

Spark reads and writes over JDBC, its own connections: the demo shop is committed once for the module
(outside any test transaction); the kill test, which needs Spark to see its writes, is transactional
and runs last (it empties the database after itself). PostgreSQL only; skipped where Java is missing.
"""

import threading
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.test import override_settings

from common.spark import spark_jobs_cancel
from pipeline import services as pipeline
from pipeline.models import PipelineRun
from profiles.models import Customer, Profile
from profiles.selectors import profile_for
from profiles.services import compute_spark
from tests.factories import OperatorFactory, client_for, demo_shop_commit

pytestmark = [pytest.mark.spark, pytest.mark.slow]

N_CUSTOMERS = 300
N_EVENTS = 15_000
QUIET_ID = "c-quiet-spark"  # a customer with no events at all
AS_OF = datetime.now(UTC).replace(microsecond=0).isoformat()

NUMERIC = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "median_price",
    "active_days",
    "events_30d",
    "n_events",
    "community_posts",
    "community_comments",
    "community_likes",
    "orders_total",
    "p_alive",
    "predicted_orders",
    "predicted_value",
    "churn_risk",
    "prediction_horizon_days",
]
MOMENTS = ["first_seen", "last_seen", "first_purchase_at", "last_purchase_at", "next_order_at"]
EXACT = ["rfm_code", "r_score", "f_score", "m_score", "lifecycle", "price_band", "top_category", "prediction_basis"]


def _profiles() -> pd.DataFrame:
    rows = list(Profile.objects.values())
    return pd.DataFrame(rows).set_index("customer_id").sort_index()


def _run(backend: str) -> PipelineRun:
    """A profiles run on `backend`, as of AS_OF (both backends see the same moment)."""
    with override_settings(PIPELINE_BACKEND=backend):
        run = pipeline.pipeline_start(trigger="shell", steps=["profiles"], options={"as_of": AS_OF})
        return pipeline.pipeline_execute(run=run, step_params=run.step_params)


def _counts(run: PipelineRun) -> dict:
    step = run.step_runs.get()
    return {"run": run.backend, "step": step.backend, **step.counts}


@pytest.fixture(scope="module")
def pg_spark(request):
    """The Spark session, on PostgreSQL only (skipped on SQLite before a JVM starts)."""
    if connection.vendor != "postgresql":
        pytest.skip("the Spark backend reads and writes PostgreSQL over JDBC (set DATABASE_URL)")
    return request.getfixturevalue("spark")


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker, pg_spark):
    """The demo shop's profiles from each backend, and their runs' records (kept in memory)."""
    with django_db_blocker.unblock():
        assert connection.settings_dict["NAME"].startswith("test_"), "not on the test database"
        demo_shop_commit(seed=5, customers=N_CUSTOMERS, events=N_EVENTS, quiet_id=QUIET_ID)
        local_run = _run("local")
        assert local_run.status == "succeeded", local_run.error
        local = _profiles()
        spark_run = _run("spark")
        assert spark_run.status == "succeeded", spark_run.error
        yield {
            "local": local,
            "spark": _profiles(),
            "customers": sorted(Customer.objects.values_list("id", flat=True)),
            "quiet": Customer.objects.get(external_id=QUIET_ID).pk,
            "local_counts": _counts(local_run),
            "spark_counts": _counts(spark_run),
        }


@pytest.mark.django_db
def test_spark_gives_every_customer_the_local_profile(shop):
    local, spark = shop["local"], shop["spark"]
    assert list(spark.index) == list(local.index) == shop["customers"]
    assert len(local) == N_CUSTOMERS + 1
    # the shop is varied enough for the comparison to mean something
    assert local["lifecycle"].nunique() >= 4 and local["rfm_code"].nunique() >= 20
    for col in EXACT:
        differ = local.index[local[col].to_numpy() != spark[col].to_numpy()]
        shown = differ[:5]
        assert differ.empty, (
            f"{col} differs for customers {list(shown)}: {local.loc[shown, col].tolist()} (local)"
            f" vs {spark.loc[shown, col].tolist()} (spark)"
        )
    for col in NUMERIC:
        a, b = local[col].astype(float).to_numpy(), spark[col].astype(float).to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), f"{col}: null in one backend only"
        ok = np.isnan(a) | np.isclose(a, b, rtol=1e-6, atol=1e-6)
        assert ok.all(), f"{col} differs for customers {list(local.index[~ok][:5])}"
    for col in MOMENTS:
        a, b = pd.to_datetime(local[col], utc=True), pd.to_datetime(spark[col], utc=True)
        assert (a.isna() == b.isna()).all(), f"{col}: null in one backend only"
        gap = (a - b).abs().dropna()
        assert (gap <= pd.Timedelta(milliseconds=1)).all(), f"{col} differs by up to {gap.max()}"
    for cid in local.index:
        mine, theirs = local.at[cid, "interests"], spark.at[cid, "interests"]
        assert set(mine) == set(theirs), cid
        assert all(abs(mine[k] - theirs[k]) <= 1e-6 for k in mine), cid
        assert local.at[cid, "top_categories"] == spark.at[cid, "top_categories"], cid
    quiet = shop["quiet"]
    assert spark.at[quiet, "lifecycle"] == "never-bought" and spark.at[quiet, "rfm_code"] == "000"


@pytest.mark.django_db
def test_the_run_records_spark_and_the_local_counts(shop):
    counts, local_counts = shop["spark_counts"], shop["local_counts"]
    assert counts["run"] == counts["step"] == counts["backend"] == "spark"
    assert local_counts["run"] == local_counts["step"] == "local"
    for key in ("customers", "profiles_written", "events_read", "lifecycle", "events_30d", "customers_active_30d"):
        assert counts[key] == local_counts[key], key
    assert counts["predictions"]["basis"] == local_counts["predictions"]["basis"]
    assert counts["predictions"]["fit"] == local_counts["predictions"]["fit"]
    assert counts["predictions"]["bgnbd"] == local_counts["predictions"]["bgnbd"]
    # each customer keeps the affinity a local full run fitted
    assert counts["affinity"]["model"] == "kept"
    local, spark = shop["local"], shop["spark"]
    assert (local["affinity"] == spark["affinity"]).all()


def _stages() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'profiles_stage_%%'")
        return [r[0] for r in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_a_killed_spark_job_leaves_the_previous_profiles_served(shop, pg_spark, monkeypatch):
    """The Spark job is interrupted from another thread once part of its rows are in the staging
    table: the step fails, every customer's previous profile is still what the selector and the API
    serve, and the staging table is gone."""
    spark = pg_spark
    before = _profiles()  # the module's Spark run's
    assert len(before) == N_CUSTOMERS + 1
    real_write = compute_spark.jdbc_write
    staged: list[int] = []

    def slow(batches):  # a slow executor, so the job is caught mid-write
        for batch in batches:
            time.sleep(1.5)
            yield batch

    def write_then_kill(df, table, **kw):
        (tag,) = [t for t in spark.sparkContext.getJobTags() if t.startswith("profiles-step-")]  # the step's

        def kill():
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not staged:
                    time.sleep(0.2)
                    with connection.cursor() as cursor:  # this thread's own connection
                        cursor.execute(f"SELECT count(*) FROM {table}")
                        rows = cursor.fetchone()[0]
                    if rows:
                        staged.append(rows)
                spark_jobs_cancel(spark, tag)
            finally:
                connection.close()

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        try:
            real_write(df.repartition(8).mapInPandas(slow, schema=df.schema), table, batch_size=10, **kw)
        finally:
            killer.join()

    monkeypatch.setattr(compute_spark, "jdbc_write", write_then_kill)
    run = _run("spark")
    assert staged and 0 < staged[0] < len(before), "the job was not caught mid-write"
    assert run.status == "failed"
    step = run.step_runs.get()
    assert step.status == "failed" and step.backend == "spark"
    after = _profiles()
    pd.testing.assert_frame_equal(after, before)
    assert _stages() == []
    reader = client_for(OperatorFactory(username="spark-reader", permissions=["profiles.view_profile"]))
    for customer in Customer.objects.order_by("id"):
        assert profile_for(customer).rfm_code == before.at[customer.pk, "rfm_code"]
    for customer in Customer.objects.order_by("id")[:20]:
        served = reader.get(f"/api/customers/{customer.external_id}/profile/")
        assert served.status_code == 200, served.content
        assert served.json()["rfm_code"] == before.at[customer.pk, "rfm_code"]
        assert served.json()["lifecycle"] == before.at[customer.pk, "lifecycle"]
