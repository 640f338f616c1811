"""The batch endpoints' work runs in low-priority bulk-write threads and answers exactly as inline."""

import os
import sys
import threading

import pytest

from common import lanes
from profiles import services
from profiles.models import Customer, Event
from tests.factories import key_client

from .test_ingest_api import _events

# The lane's threads have connections of their own: the data must be committed for them to see it.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lane_on(settings):
    settings.BULK_WRITE_NICE = 10
    yield
    lanes.shutdown()  # its threads' connections closed, or the test database could not be dropped
    settings.BULK_WRITE_NICE = 0


@pytest.fixture
def backend():
    return key_client("ingest_events", "manage_customers", name="shop backend")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_a_batch_is_written_by_a_low_priority_thread_and_answered_as_usual(lane_on, backend, monkeypatch):
    seen = {}

    def spying(real):
        def spy(**kwargs):
            seen["thread"] = threading.current_thread().name
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return real(**kwargs)

        return spy

    # a small clean batch goes the plain path on PostgreSQL, the frame path elsewhere: both run in the lane
    monkeypatch.setattr(services, "events_ingest", spying(services.events_ingest))
    monkeypatch.setattr(services, "events_ingest_plain", spying(services.events_ingest_plain))
    own_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    resp = backend.post("/api/events/", _events(30), format="json")
    assert resp.status_code == 201, resp.json()
    assert resp.json() == {
        "received": 30,
        "created": 30,
        "duplicates": 0,
        "invalid": 0,
        "customers_created": 7,
        "items_created": 13,
    }
    assert Event.objects.count() == 30 and Customer.objects.count() == 7
    assert seen["thread"].startswith("bulk-write") and seen["nice"] >= 10
    assert lanes.lane_priority() >= 10
    # the request's own thread kept its priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own_nice


def test_a_refused_batch_from_the_lane_lists_every_bad_row_and_writes_nothing(lane_on, backend):
    rows = _events(5)
    rows[1]["type"] = "teleport"
    rows[3]["occurred_at"] = "yesterday"
    resp = backend.post("/api/events/", rows, format="json")
    assert resp.status_code == 400
    body = resp.json()
    assert body["detail"] == "2 invalid row(s); nothing was written."
    assert {(e["row"], e["field"]) for e in body["errors"]} == {(1, "type"), (3, "occurred_at")}
    assert not Event.objects.exists() and not Customer.objects.exists()

    resp = backend.post(
        "/api/events/", [{"external_id": "x"}, 7], format="json"
    )  # not an object: refused before any row is read
    assert resp.status_code == 400 and resp.json()["errors"] == [
        {"row": 1, "field": "(row)", "reason": "expected a JSON object"}
    ]


def test_customers_are_upserted_through_the_lane_too(lane_on, backend):
    resp = backend.post(
        "/api/customers/", [{"external_id": "c-1", "email": "ada@example.com", "consent_email": True}], format="json"
    )
    assert resp.status_code == 201, resp.json()
    assert Customer.objects.get(external_id="c-1").email == "ada@example.com"
