"""Spark Connect (``SPARK_REMOTE``): a worker with no JVM runs the pipeline's steps on a Connect server.

The server is started the way docs/spark.md tells an operator to (``deploy/spark-connect-server``,
the app's code and venv for its Python workers); the recomputation runs as ops run it,
``manage.py recompute`` in its own process, with ``SPARK_REMOTE`` set and no Java on its ``PATH``.
What it computed must be what the local backend computes and what the admin's API serves.

PostgreSQL only (Spark reads and writes over JDBC); skipped where Java is missing, failed then under
REQUIRE_SPARK=1.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from django.db import connection

from common.spark import java_missing_reason
from pipeline import services as pipeline
from pipeline.models import PipelineRun
from profiles.models import Customer, Profile
from recommendations.models import Recommendation, RecommenderRun
from segments.models import ClusteringRun, Membership
from tests.factories import OperatorFactory, client_for, demo_shop_commit, demo_shop_empty

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime.now(UTC).replace(microsecond=0).isoformat()
STEPS = ["profiles", "segments", "recommendations"]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_SPARK") == "1":
        pytest.fail(f"{reason}; REQUIRE_SPARK=1 demands it")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    """A Spark Connect server on local[2], started by deploy/spark-connect-server; its address."""
    if connection.vendor != "postgresql":
        pytest.skip("the Spark backend reads and writes PostgreSQL over JDBC (set DATABASE_URL)")
    reason = java_missing_reason()
    if reason:
        _skip_or_fail(f"a Spark Connect server cannot start here: {reason}")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("spark-connect") / "server.log"
    env = {
        **os.environ,
        "SPARK_CONNECT_PORT": str(port),
        "SPARK_MASTER": "local[2]",
        "SPARK_DRIVER_MEMORY": "1g",
        "PYSPARK_PYTHON": sys.executable,
    }
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(REPO / "deploy" / "spark-connect-server")],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the JVM and its Python workers, stopped together
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"the Connect server exited ({server.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the Connect server did not listen within 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker, connect_server):
    """A demo shop committed to the test database, with the local backend's results as of AS_OF
    (kept in memory), and the recomputation's output on the Connect server."""
    with django_db_blocker.unblock():
        demo_shop_commit(seed=11, customers=200, events=8_000, products=80, posts=20)
        run = pipeline.pipeline_start(trigger="shell", steps=STEPS, options={"as_of": AS_OF})
        run = pipeline.pipeline_execute(run=run, step_params=run.step_params)
        assert run.status == "succeeded", run.error
        local = pd.DataFrame(Profile.objects.values("customer_id", "rfm_code", "lifecycle")).set_index("customer_id")
        no_java = Path(os.environ.get("TMPDIR", "/tmp")) / "no-java-here"
        no_java.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _database_url(),
            "PIPELINE_BACKEND": "spark",
            "SPARK_REMOTE": connect_server,
            "PATH": str(no_java),  # nothing to start a JVM with: the worker is a Connect client only
            "JAVA_HOME": str(no_java),
            "SECRET_KEY": "connect-test-secret",
            "DEBUG": "0",
            "HTTPS_ONLY": "0",
            "CELERY_BROKER_URL": "",
            "LOG_LEVEL": "WARNING",
        }
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "manage.py", "recompute", "--steps", ",".join(STEPS), "--as-of", AS_OF, "--no-progress"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        seconds = time.monotonic() - started
        yield {"local": local, "proc": proc, "seconds": seconds}
        demo_shop_empty()


@pytest.mark.django_db
def test_recompute_through_spark_connect_fills_what_the_api_serves(shop):
    proc = shop["proc"]
    assert proc.returncode == 0, f"recompute through Spark Connect failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    print(f"recompute through Spark Connect: {shop['seconds']:.0f} s")
    run = PipelineRun.objects.order_by("-id").first()
    assert run.status == "succeeded" and run.backend == "spark"
    # every heavy step ran on the Connect server's Spark, none fell back to the worker
    assert {s.name: s.backend for s in run.step_runs.all()} == dict.fromkeys(STEPS, "spark")
    assert f"pipeline #{run.pk} succeeded." in proc.stdout

    # profiles: the local backend's RFM code and lifecycle for every customer
    local = shop["local"]
    remote = pd.DataFrame(Profile.objects.values("customer_id", "rfm_code", "lifecycle")).set_index("customer_id")
    assert len(remote) == Customer.objects.count() == len(local) == 200
    pd.testing.assert_frame_equal(remote.sort_index(), local.sort_index())

    # segments: the Connect run's clustering is the one in service, every profiled customer in it once
    clustering = ClusteringRun.objects.filter(status="succeeded").latest("id")
    assert clustering.step.pipeline_id == run.pk and clustering.step.backend == "spark"
    members = Membership.objects.filter(segment__clustering_run=clustering, segment__active=True)
    assert members.count() == members.values("customer").distinct().count() == 200
    assert clustering.chosen_k and len(clustering.sizes) == clustering.chosen_k

    # recommendations: the Connect run is active and the API serves its lists with their reasons
    rec_run = RecommenderRun.objects.get(is_active=True)
    assert rec_run.params["backend"] == "spark"
    explained = Recommendation.objects.filter(run=rec_run, kind="product", rank__lte=5, reason="item")
    external_id = explained.order_by("customer_id").values_list("customer__external_id", flat=True).first()
    assert external_id, "no list explained by the customer's own items"
    reader = client_for(OperatorFactory(username="reader", permissions=["recommendations.view_recommendation"]))
    answer = reader.get(f"/api/customers/{external_id}/recommendations/", {"kind": "product", "limit": 5})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    stored = Recommendation.objects.filter(run=rec_run, customer__external_id=external_id, kind="product", rank__lte=5)
    assert body["run"] == rec_run.pk
    assert [r["rank"] for r in body["results"]] == sorted(stored.values_list("rank", flat=True)) == [1, 2, 3, 4, 5]
    assert any(r["reason_text"].startswith("because you ") for r in body["results"]), body["results"]
