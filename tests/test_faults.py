"""Faults: transient errors retried with backoff, a worker killed mid-step, Redis restarted during ingestion.

The first tests run tasks eagerly on any database. The others need PostgreSQL (worker and server
processes share the test database) and a broker; they are skipped with a reason without them, and
fail instead under REQUIRE_CELERY_WORKER=1. See docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from pipeline import services as pipeline
from pipeline.models import Lease, PipelineRun, PipelineStep
from pipeline.steps import Step, available_steps
from profiles.models import Event, Profile
from tests.celery_worker import REPO, real_worker

live = [pytest.mark.celery_worker, pytest.mark.slow, pytest.mark.faults]


def _skip_or_fail(reason: str):
    if os.environ.get("REQUIRE_CELERY_WORKER") == "1":
        pytest.fail(reason + "; REQUIRE_CELERY_WORKER=1 demands it")
    pytest.skip(reason)


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor != "postgresql":
        _skip_or_fail(
            "fault tests share the test database with worker and server processes: they need PostgreSQL (DATABASE_URL)"
        )
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def _wait(predicate, timeout: float, what: str, *, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------- retries (eager)


_fake: dict[str, dict] = {"calls": {}, "plan": {}}


def _fake_step(name: str) -> Step:
    def compute(*, step, progress):
        _fake["calls"][name] += 1
        progress(0.5, "half way")
        if _fake["plan"][name]:
            raise _fake["plan"][name].pop(0)
        return {"ran": _fake["calls"][name]}

    return Step(name=name, description=f"a fake step {name}", backends={"local": compute})


fake_a, fake_b, fake_c = (_fake_step(n) for n in "abc")


@pytest.fixture
def fake_steps(settings):
    """Three listed steps a, b, c; `calls` counts each one's runs and `plan[name]` lists what to raise, in turn."""
    calls = {"a": 0, "b": 0, "c": 0}
    plan: dict[str, list[BaseException]] = {"a": [], "b": [], "c": []}
    _fake.update(calls=calls, plan=plan)
    settings.PIPELINE_STEPS = [f"{__name__}.fake_{n}" for n in "abc"]
    return calls, plan


def _steps_of(run):
    return list(run.step_runs.order_by("id").values_list("name", "status"))


@pytest.mark.faults
@pytest.mark.django_db
def test_a_transient_error_in_a_step_is_recorded_and_the_retry_resumes_from_that_step(fake_steps):
    from pipeline.tasks import pipeline_execute_task

    calls, plan = fake_steps
    plan["b"] = [
        OperationalError("server closed the connection unexpectedly"),
        OperationalError("could not connect to server"),
    ]
    run = pipeline.pipeline_create(steps=["a", "b", "c"])

    result = pipeline_execute_task.apply(args=[run.pk]).get()

    run.refresh_from_db()
    assert result["status"] == run.status == "succeeded"
    assert calls == {"a": 1, "b": 3, "c": 1}  # what succeeded is not recomputed
    assert _steps_of(run) == [
        ("a", "succeeded"),
        ("b", "failed"),
        ("b", "failed"),
        ("b", "succeeded"),
        ("c", "succeeded"),
    ]
    failed = run.step_runs.filter(status="failed").order_by("id")
    assert failed[0].error.startswith("OperationalError: server closed the connection unexpectedly")
    assert failed[1].error.startswith("OperationalError: could not connect to server")
    # every attempt stays visible on the run
    assert "step b failed: OperationalError: server closed" in run.error
    assert "retry 1 of 5" in run.error and "retry 2 of 5" in run.error
    assert Lease.objects.count() == 0


@pytest.mark.faults
@pytest.mark.django_db
def test_retries_are_bounded_and_the_run_then_stays_failed_with_its_error(fake_steps):
    from pipeline.tasks import pipeline_execute_task

    calls, plan = fake_steps
    plan["b"] = [OperationalError("the database is down") for _ in range(10)]
    run = pipeline.pipeline_create(steps=["a", "b", "c"])

    result = pipeline_execute_task.apply(args=[run.pk]).get()

    run.refresh_from_db()
    assert result["status"] == run.status == "failed"
    assert calls == {"a": 1, "b": 6, "c": 0}  # the first attempt and 5 retries
    assert run.error.count("is transient: retry") == 5
    assert run.error.splitlines()[-1].startswith("step b failed: OperationalError: the database is down")
    assert run.finished_at is not None


@pytest.mark.faults
@pytest.mark.django_db
def test_a_bug_is_not_retried_and_a_time_limit_is_recorded_as_the_steps_error(fake_steps):
    from celery.exceptions import SoftTimeLimitExceeded

    from pipeline.tasks import pipeline_execute_task

    calls, plan = fake_steps
    plan["a"] = [ValueError("bad parameter")]
    run = pipeline.pipeline_create(steps=["a", "b"])
    assert pipeline_execute_task.apply(args=[run.pk]).get()["status"] == "failed"
    assert calls["a"] == 1 and _steps_of(run) == [("a", "failed")]

    plan["b"] = [SoftTimeLimitExceeded()]
    run = pipeline.pipeline_create(steps=["a", "b", "c"])
    assert pipeline_execute_task.apply(args=[run.pk]).get()["status"] == "failed"
    step = run.step_runs.get(name="b")
    assert step.status == "failed" and step.error.startswith("SoftTimeLimitExceeded: the task's time limit was reached")
    assert calls["b"] == 1 and calls["c"] == 0


@pytest.mark.faults
@pytest.mark.django_db
def test_a_redelivered_run_whose_worker_died_is_recorded_as_abandoned_and_not_run_again(fake_steps):
    from pipeline.tasks import pipeline_execute_task, pipeline_recover_task

    calls, _ = fake_steps
    run = pipeline.pipeline_create(steps=["a", "b"])
    PipelineRun.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now())
    PipelineStep.objects.create(pipeline=run, name="a", status="succeeded", started_at=timezone.now())
    PipelineStep.objects.create(pipeline=run, name="b", status="running", started_at=timezone.now())

    # its worker still holds the lease: it may be alive (a visibility-timeout redelivery), leave it
    lease = pipeline.acquire_lease(run_id=run.pk)
    assert pipeline_execute_task.apply(args=[run.pk]).get()["note"] == "already handled"
    assert pipeline_recover_task.apply().get() == {"abandoned": 0}
    run.refresh_from_db()
    assert run.status == "running"

    # the lease lapsed: the worker is gone
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = pipeline_execute_task.apply(args=[run.pk]).get()
    run.refresh_from_db()
    assert result == {"pipeline": run.pk, "status": "failed", "note": "already handled"}
    assert run.error.startswith("Abandoned during step b: the worker running it stopped")
    assert _steps_of(run) == [("a", "succeeded"), ("b", "failed")]
    assert run.step_runs.get(name="b").error.startswith("Abandoned during step b")
    assert calls == {"a": 0, "b": 0, "c": 0}  # nothing ran a second time


@pytest.mark.faults
@pytest.mark.django_db
def test_plain_tasks_retry_a_transient_error_with_backoff_and_give_up_after_a_bound(monkeypatch):
    from config.celery import app

    # Celery re-applies an eager retry without passing `throw` on, so a retry chain only runs
    # eagerly with propagation off (a worker retries through the broker instead).
    # (Configured through Django settings with the CELERY_ namespace, so the override uses that key.)
    propagates = app.conf.task_eager_propagates
    app.conf.update(CELERY_TASK_EAGER_PROPAGATES=False)
    try:
        _plain_tasks_retry(monkeypatch)
    finally:
        app.conf.update(CELERY_TASK_EAGER_PROPAGATES=propagates)


def _plain_tasks_retry(monkeypatch):
    from campaigns import services as campaign_services
    from campaigns.tasks import campaigns_attribute, campaigns_tick

    attempts = []

    def attribute():
        attempts.append(1)
        if len(attempts) <= 2:
            raise OperationalError("could not connect to server: Connection refused")
        return {7: 4}

    monkeypatch.setattr(campaign_services, "campaigns_attribute", attribute)
    assert campaigns_attribute.apply(throw=False).get() == {"7": 4}
    assert len(attempts) == 3  # two transient failures, then the answer
    assert (
        campaigns_attribute.retry_backoff and campaigns_attribute.retry_jitter and campaigns_attribute.max_retries == 5
    )

    ticks = []

    def tick():
        ticks.append(1)
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(campaign_services, "campaigns_tick", tick)
    with pytest.raises(OperationalError, match="deadlock"):
        campaigns_tick.apply(throw=False).get()
    assert len(ticks) == 3  # the first try and 2 retries: the next tick comes within a minute anyway
    assert campaigns_tick.soft_time_limit < campaigns_tick.time_limit <= 60


# --------------------------------------------------------------------------- Redis restarted during ingestion


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body=None, *, headers: dict | None = None, timeout: float = 10) -> tuple:
    """(status code, start of the body), or (exception name, message) when nothing was answered."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(300).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode(errors="replace")
    except OSError as exc:  # refused, reset, timed out
        return type(exc).__name__, str(exc)[:300]


class PrivateRedis:
    """A redis-server of this test's own on a free port (the shared one is never touched)."""

    def __init__(self):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            _skip_or_fail("redis-server is not installed (a private Redis is started for this test)")
        self.port = _free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(self.ping, 10, "the private redis-server to answer")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def _events(batch: int, size: int, base) -> list[dict]:
    return [
        {
            "external_id": f"rr-{batch}-{j}",
            "customer": f"rr-c{(batch * size + j) % 37}",
            "item": f"rr-p{j % 11}",
            "type": ["view", "add_to_cart", "purchase"][j % 3],
            "amount": "19.90" if j % 3 == 2 else None,
            "occurred_at": (base + timedelta(seconds=batch * size + j)).isoformat(),
            "context": {"channel": "web"},
        }
        for j in range(size)
    ]


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.django_db(transaction=True)
def test_no_accepted_event_is_lost_when_redis_restarts_during_ingestion(tmp_path):
    from tests.factories import ApiKeyFactory

    db_url = _database_url()
    redis = PrivateRedis()
    redis.start()
    key = ApiKeyFactory(name="shop backend", scopes=["ingest_events"]).secret
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "fault-test-secret",
        "DEBUG": "",
        "HTTPS_ONLY": "0",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis.port}/0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "THROTTLE_INGEST": "100000/min",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "0",
        "CACHE_URL": "",
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "60"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/events/"
    headers = {"Authorization": f"Api-Key {key}"}
    n_batches, size = 40, 40
    base = timezone.now() - timedelta(hours=2)
    answers: dict[int, list] = {i: [] for i in range(n_batches)}  # every answer (status or exception) per batch
    outage: dict[str, float] = {}
    try:

        def up():
            status, _ = _http("GET", f"http://127.0.0.1:{port}/api/schema/", timeout=2)
            return (isinstance(status, int) and status < 500) or server.poll() is not None

        _wait(up, 60, "the server to answer", every=0.3)
        assert server.poll() is None, (tmp_path / "server.log").read_text()

        def post(i):
            status, text = _http("POST", url, _events(i, size, base), headers=headers, timeout=30)
            answers[i].append((time.monotonic(), status, text))

        def client_loop():
            for i in range(n_batches):
                post(i)
                time.sleep(0.05)

        client = threading.Thread(target=client_loop)
        client.start()
        _wait(lambda: sum(bool(a) for a in answers.values()) >= n_batches // 4, 60, "a quarter of the batches")
        outage["start"] = time.monotonic()
        redis.kill()
        time.sleep(2.0)  # batches keep arriving while Redis is down
        outage["end"] = time.monotonic()
        redis.start()
        client.join(timeout=120)
        assert not client.is_alive()
        # a batch that got no 201 is simply sent again (its events' ids make that harmless)
        for i, got in answers.items():
            if not any(a[1] == 201 for a in got):
                post(i)
    finally:
        redis.kill()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        log.close()

    flat = [(i, *a) for i, got in answers.items() for a in got]
    server_errors = [(i, status, text) for i, _, status, text in flat if not isinstance(status, int) or status >= 500]
    assert not server_errors, (server_errors[:5], (tmp_path / "server.log").read_text()[-3000:])
    during = [(i, status) for i, at, status, _ in flat if outage["start"] <= at <= outage["end"] + 0.5]
    assert during, "no batch was answered while Redis was down; the outage did not overlap ingestion"
    assert all(status == 201 for _, status in during), during
    stored = dict(
        Event.objects.filter(external_id__startswith="rr-").values_list("external_id", "customer__external_id")
    )
    for i, got in answers.items():
        ids = {e["external_id"] for e in _events(i, size, base)}
        present = ids & set(stored)
        if any(status == 201 for _, status, _ in got):
            assert present == ids, f"batch {i} was accepted but {len(ids - present)} of its events are missing"
        else:
            assert not present, f"batch {i} was refused but {len(present)} of its events were stored"
    # exactly once: the unique external id makes a resend a no-op
    assert Event.objects.filter(external_id__startswith="rr-").count() == n_batches * size


# A deployment that shares Redis as the cache too (CACHE_URL, API_THROTTLE_SHARED=1) keeps DRF's throttle counters
# there;
# when the cache is unreachable the throttle fails open (accounts/access.py), so batches are still stored.
@pytest.mark.faults
@pytest.mark.django_db
def test_ingestion_is_answered_while_a_redis_cache_is_down():
    from django.test import override_settings

    from tests.factories import key_client

    client = key_client("ingest_events", name="shop backend")
    client.raise_request_exception = False
    dead = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    redis_cache = {"BACKEND": "common.cache.RedisCache", "LOCATION": dead}
    with override_settings(CACHES={"default": redis_cache, "throttle": redis_cache}):  # API_THROTTLE_SHARED=1
        resp = client.post("/api/events/", _events(0, 5, timezone.now() - timedelta(hours=1)), format="json")
    assert resp.status_code == 201, resp.status_code
    assert Event.objects.filter(external_id__startswith="rr-0-").count() == 5


# --------------------------------------------------------------------------- a worker killed mid-step

# Where each step's worker is killed (tests/celery_worker.py): inside the profiles step's one write
# transaction (old profiles deleted, new ones inserted, not committed); inside the segments step's
# transaction (segments updated, memberships swapped, not committed); in the recommendations step
# after every row of the new run is committed, just before the switch to it.
KILL_POINTS = {
    "profiles": "insert:profiles.Profile",
    "segments": "insert:segments.Membership",
    "recommendations": "progress:recommendations:0.97",
    # inside the running experiment's first variant, its rows written, before its switch
    "experiments": "progress:experiments:0.4",
}
LEASE = 3  # seconds; the workers' heartbeat renews it every second


@pytest.fixture
def shop(db_url, settings):
    """A small demo shop with every step computed once (an experiment running, half the customers held out of
    it), committed (the test is transactional) for workers to see."""
    from profiles import services

    settings.EXPERIMENTS_HOLDOUT_PERCENT = float(HOLDOUT)
    from profiles.demo import generate_shop

    demo = generate_shop(seed=5, n_customers=200, n_events=12_000, n_products=80, n_posts=30, chunk_size=12_000)
    services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
    services.items_upsert(rows=demo.items)
    for chunk in demo.iter_events():
        services.events_ingest(rows=chunk, create_unknown=False)
    _running_experiment()
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=available_steps()))
    assert run.status == "succeeded", run.error
    return demo


def _running_experiment():
    """An experiment between two configurations, running: the experiments step computes its variants."""
    from experiments.models import Experiment, Variant
    from experiments.routing import forget_running
    from recommendations.models import RecommenderConfig

    # (a transactional test's flush took the preset configurations along)
    default = RecommenderConfig.objects.filter(is_default=True).first() or RecommenderConfig.objects.create(
        name="Faults default", algorithm="pure_svd", is_default=True
    )
    other = RecommenderConfig.objects.create(name="Faults item-based", algorithm="item_knn")
    experiment = Experiment.objects.create(
        name="Faults", status="running", started_at=timezone.now(), baseline=0.3, plan={"mde": 0.03}
    )
    Variant.objects.create(experiment=experiment, position=0, config=default, share=50)
    Variant.objects.create(experiment=experiment, position=1, config=other, share=50)
    forget_running()


@pytest.fixture
def db_url():
    if not os.environ.get("CELERY_BROKER_URL"):
        _skip_or_fail("CELERY_BROKER_URL is not set (a real worker needs a broker, e.g. redis://127.0.0.1:6379/0)")
    return _database_url()


# What each step puts in service, as `_snapshot` keys and `_served` answers.
PARTS = {
    "profiles": (("profiles",), ("profile",)),
    "segments": (("segments", "memberships"), ("segments",)),
    "recommendations": (("active_run", "recommendations", "similar", "popular"), ("recommendations",)),
    "experiments": (("variant_runs", "assignments"), ()),
}
# Customers held out of every experiment are served the shop's own suggestions: the ones `_served` asks for.
HOLDOUT = "50"


def _snapshot() -> dict:
    """Everything the three steps put in service, exactly."""
    from experiments.models import Assignment
    from recommendations.models import PopularItem, Recommendation, RecommenderRun, SimilarItem
    from segments.models import Membership, Segment

    active = RecommenderRun.objects.get(is_active=True, channel="")
    variant_runs = RecommenderRun.objects.filter(is_active=True).exclude(channel="").order_by("channel")
    profile_fields = [f.attname for f in Profile._meta.concrete_fields]
    return {
        "profiles": list(Profile.objects.order_by("customer_id").values_list(*profile_fields)),
        "segments": list(
            Segment.objects.order_by("id").values_list("id", "name", "active", "size", "members_version", "centroid")
        ),
        "memberships": list(
            Membership.objects.order_by("segment_id", "customer_id").values_list("segment_id", "customer_id", "since")
        ),
        "active_run": active.pk,
        "recommendations": list(
            Recommendation.objects.filter(run=active)
            .order_by("customer_id", "kind", "rank")
            .values_list("customer_id", "kind", "rank", "item_id", "score", "reason", "reason_text")
        ),
        "similar": SimilarItem.objects.filter(run=active).count(),
        "popular": PopularItem.objects.filter(run=active).count(),
        "variant_runs": [
            (run.channel, run.pk, list(Recommendation.objects.filter(run=run).values_list("customer_id", "item_id")))
            for run in variant_runs
        ],
        "assignments": list(Assignment.objects.order_by("customer_id").values_list("customer_id", "variant_id")),
    }


def _served(customers: list[str]) -> dict:
    """What the API answers for a few customers: their profile, segments and product suggestions."""
    from tests.factories import UserFactory, client_for

    client = client_for(UserFactory(username="fault-admin", superuser=True))  # the same account on each call
    out = {}
    for ext in customers:
        for what in ("profile", "segments", "recommendations"):
            resp = client.get(f"/api/customers/{ext}/{what}/")
            assert resp.status_code == 200, (what, resp.status_code, resp.content[:300])
            out[ext, what] = resp.json()
    return out


def _parts(snapshot: dict, served: dict, steps: list[str]) -> tuple[dict, dict]:
    keys = {k for s in steps for k in PARTS[s][0]}
    answers = {a for s in steps for a in PARTS[s][1]}
    return {k: v for k, v in snapshot.items() if k in keys}, {k: v for k, v in served.items() if k[1] in answers}


@pytest.mark.parametrize("step", list(KILL_POINTS))
@pytest.mark.celery_worker
@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_step_leaves_the_previous_results_in_service(step, shop, db_url, tmp_path):
    # (the shop's experiment holds half the customers out: those are the ones whose answers are compared)
    from pipeline.tasks import pipeline_execute_task, pipeline_recover_task
    from recommendations.models import RecommenderRun

    steps = available_steps()
    assert set(KILL_POINTS) == set(steps) == set(PARTS), "every step needs a kill point"
    untouched = steps[steps.index(step) :]  # the killed step and those after it
    env = {
        "DATABASE_URL": db_url,
        "PIPELINE_LEASE_SECONDS": str(LEASE),
        "LOG_LEVEL": "WARNING",
        "RECOMMENDER_N_THREADS": "1",
        "EXPERIMENTS_HOLDOUT_PERCENT": HOLDOUT,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    from experiments.models import Assignment

    assert Assignment.objects.exists()  # the experiment's customers are routed to their variants
    customers = list(
        Profile.objects.exclude(customer_id__in=Assignment.objects.values("customer_id"))
        .order_by("customer_id")
        .values_list("customer__external_id", flat=True)[:3]
    )
    before, served_before = _snapshot(), _served(customers)
    pause_file = tmp_path / "paused"

    with ExitStack() as workers:
        # Given a worker that stops at a known point inside the step, in a run of every step
        queue, proc = workers.enter_context(
            real_worker(env_overrides=env, pause_at=KILL_POINTS[step], pause_file=pause_file)
        )
        run = pipeline.pipeline_create(steps=steps, trigger="shell")
        pipeline_execute_task.apply_async(args=[run.pk], queue=queue)
        _wait(lambda: pause_file.exists() or proc.poll() is not None, 120, f"the worker to reach {KILL_POINTS[step]}")
        assert proc.poll() is None, "".join(proc.output_tail)
        paused_at = time.monotonic()
        run.refresh_from_db()
        assert run.status == "running"
        assert _steps_of(run) == [(s, "succeeded") for s in steps[: steps.index(step)]] + [(step, "running")]
        # (the worker that will take over starts meanwhile)
        next_queue, next_proc = workers.enter_context(real_worker(env_overrides=env))
        # the heartbeat keeps the lease although the step reports no progress
        time.sleep(max(0.0, paused_at + LEASE + 0.5 - time.monotonic()))
        assert Lease.objects.get(name=pipeline.PIPELINE_LEASE).expires_at > timezone.now()
        # while the step is half done, readers see the previous results of it and of the steps after it
        paused, served_paused = _snapshot(), _served(customers)
        assert _parts(paused, served_paused, untouched) == _parts(before, served_before, untouched)

        # When the worker dies with everything it was doing
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

        # Then exactly what was in service stays in service
        assert _snapshot() == paused and _served(customers) == served_paused

        # its lease lapses; the run is recorded as abandoned, with the step it died in
        _wait(
            lambda: not Lease.objects.filter(expires_at__gte=timezone.now()).exists(),
            LEASE + 5,
            "the dead worker's lease to lapse",
        )
        assert pipeline_recover_task.apply_async(queue=next_queue).get(timeout=60) == {"abandoned": 1}
        run.refresh_from_db()
        assert run.status == "failed" and run.finished_at is not None
        assert run.error.startswith(f"Abandoned during step {step}: the worker running it stopped"), run.error
        killed = run.step_runs.get(name=step)
        assert killed.status == "failed" and killed.error.startswith(f"Abandoned during step {step}")
        assert _snapshot() == paused

        # and the next run, on the other worker, completes normally and goes into service
        nxt = pipeline.pipeline_create(steps=steps, trigger="shell")
        result = pipeline_execute_task.apply_async(args=[nxt.pk], queue=next_queue).get(timeout=180)
        nxt.refresh_from_db()
        assert result["status"] == nxt.status == "succeeded", (nxt.error, "".join(next_proc.output_tail)[-3000:])
    assert _steps_of(nxt) == [(s, "succeeded") for s in steps]
    after = _snapshot()
    assert after["active_run"] != before["active_run"]
    assert RecommenderRun.objects.get(pk=after["active_run"]).step.pipeline_id == nxt.pk
    assert {row[1] for row in after["profiles"]} == {nxt.step_runs.get(name="profiles").pk}  # every profile's run
    assert len(after["profiles"]) == len(before["profiles"]) and after["recommendations"] and after["memberships"]
    served_after = _served(customers)
    assert all(served_after[c, "recommendations"]["run"] == after["active_run"] for c in customers)
