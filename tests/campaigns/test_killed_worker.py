"""Exactly once across a killed worker: a real Celery worker is SIGKILLed mid-chunk, a new one finishes the job."""

import os
import signal
import time

import pandas as pd
import pytest
from django.db import connection
from django.test import override_settings

from campaigns import services
from campaigns.models import Delivery
from profiles.models import Customer
from profiles.services import customers_upsert
from segments.models import Membership, Segment
from tests.celery_worker import real_worker

from .conftest import make_campaign

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

N = 300


def _skip_or_fail(reason: str):
    if os.environ.get("REQUIRE_CELERY_WORKER") == "1":
        pytest.fail(reason + "; REQUIRE_CELERY_WORKER=1 demands it")
    pytest.skip(reason)


@pytest.fixture
def broker():
    if not os.environ.get("CELERY_BROKER_URL"):
        _skip_or_fail("CELERY_BROKER_URL is not set (a real worker needs a broker, e.g. redis://127.0.0.1:6379/0)")


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
        return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"
    name = str(s["NAME"])
    if connection.vendor == "sqlite" and "memory" not in name and name:
        return f"sqlite:///{name}"
    _skip_or_fail(
        "the test database is in-memory SQLite, which a worker process cannot open (use PostgreSQL via DATABASE_URL)"
    )


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_each_eligible_customer_gets_exactly_one_message_across_a_killed_worker(broker):
    customers_upsert(
        rows=pd.DataFrame(
            {
                "external_id": [f"kw{i:04d}" for i in range(N)],
                "name": [f"Kim {i}" for i in range(N)],
                "consent_in_app": [i % 7 != 0 for i in range(N)],
            }
        )
    )
    seg = Segment.objects.create(name="kw", kind="cluster")
    Membership.objects.bulk_create(
        [Membership(segment=seg, customer_id=c) for c in Customer.objects.values_list("id", flat=True)]
    )
    campaign = make_campaign(segments=[seg], frequency_cap_count=100)
    env = {
        "DATABASE_URL": _database_url(),
        "CAMPAIGN_SEND_DELAY_SECONDS": "0.03",
        "CAMPAIGN_SEND_BATCH": "1",
        "CAMPAIGN_CHUNK_SIZE": "100",
        "CAMPAIGN_CLAIM_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }
    sent = Delivery.objects.filter(campaign=campaign, status="sent")

    with real_worker(env_overrides=env) as (queue, proc):
        services.campaign_launch(campaign=campaign, queue=queue)  # autocommit: the chunks are queued at once
        _wait(lambda: sent.count() >= 20, 60, "the first worker to send some messages")
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: the main process and its pool child
        proc.wait(timeout=10)
    before = sent.count()
    eligible = Delivery.objects.filter(campaign=campaign, is_control=False).exclude(reason="no_consent").count()
    assert 0 < before < eligible, "the worker should die mid-campaign"

    time.sleep(2.5)  # the dead worker's claims lapse (CAMPAIGN_CLAIM_TIMEOUT_SECONDS=2)
    with override_settings(CAMPAIGN_CLAIM_TIMEOUT_SECONDS=2), real_worker(env_overrides=env) as (queue, proc):
        services.campaigns_tick(queue=queue)  # what beat does every minute: stranded chunks go out again
        _wait(
            lambda: not Delivery.objects.filter(campaign=campaign, status__in=services.OPEN).exists(),
            120,
            "the second worker to finish",
        )

    rows = pd.DataFrame.from_records(
        Delivery.objects.filter(campaign=campaign).values(
            "customer_id", "status", "is_control", "reason", "provider_key"
        )
    )
    consent = dict(Customer.objects.values_list("id", "consent_in_app"))
    got = rows[rows["status"] == "sent"]
    assert got["customer_id"].is_unique and got["provider_key"].is_unique
    assert len(got) == eligible
    assert got["customer_id"].map(consent).all() and not got["is_control"].any()
    assert set(rows.loc[rows["status"] != "sent", "reason"]) <= {"control", "no_consent"}
