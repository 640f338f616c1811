"""API-key revocation takes effect at once in every server process (issue #12, finding 9).

Each server process remembers the keys it has looked up (accounts/access.py); the processes share the
cache (Redis in production). Two "processes" are simulated here by giving each its own memory of
keys while they share the test's cache; the revocation happens in one and the very next request in
the other is refused. No clock is involved: before the fix the other process kept accepting the key
for API_KEY_CACHE_SECONDS.
"""

from contextlib import contextmanager

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from accounts import access
from accounts.models import ApiKey
from tests.factories import ApiKeyFactory, ingest

pytestmark = pytest.mark.django_db


class Process:
    """One server process's own memory of API keys."""

    def __init__(self):
        self.known_keys = {}
        self.live_customers = {}

    @contextmanager
    def serving(self):
        saved = access._known_keys, access._live_customers
        access._known_keys, access._live_customers = self.known_keys, self.live_customers
        try:
            yield
        finally:
            access._known_keys, access._live_customers = saved


@pytest.fixture
def shared_cache(monkeypatch):
    """The test's cache stands for Redis: one cache seen by both processes."""
    monkeypatch.setattr(access, "cache_is_shared", lambda: True)


@pytest.fixture
def backend():
    """Alice, and the shop's backend with a key that issues customer tokens."""
    ingest(customers=[{"external_id": "alice"}])
    issued = ApiKeyFactory(name="shop backend", scopes=["read_recommendations"])
    return issued.key, issued.client()


def _token(client):
    resp = client.post("/api/customer-tokens/", {"customer": "alice"}, format="json")
    return resp.status_code, (resp.json().get("token") if resp.status_code == 201 else resp.json()["detail"])


@override_settings(API_KEY_CACHE_SECONDS=3600)
def test_a_key_revoked_in_the_admin_is_refused_on_the_next_request_in_another_process(
    shared_cache, backend, admin_client, django_capture_on_commit_callbacks
):
    key, client = backend
    a, b = Process(), Process()
    with b.serving():
        status, token = _token(client)
        assert status == 201  # process B now remembers the key
        alice = APIClient()
        alice.credentials(HTTP_AUTHORIZATION=f"Customer {token}")
        assert alice.get("/api/customers/alice/recommendations/").status_code == 200
    with a.serving(), django_capture_on_commit_callbacks(execute=True):
        assert _token(client)[0] == 201
        resp = admin_client.post(
            "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
        )
        assert "refused from now on" in resp.content.decode()
    with b.serving():
        status, detail = _token(client)
        assert status == 401 and "revoked" in detail
        # and the customer tokens the key issued
        resp = alice.get("/api/customers/alice/recommendations/")
        assert resp.status_code == 401 and "revoked" in resp.json()["detail"]


@override_settings(API_KEY_CACHE_SECONDS=3600)
def test_narrowed_scopes_and_a_deleted_key_reach_the_other_process_at_once(
    shared_cache, backend, django_capture_on_commit_callbacks
):
    key, client = backend
    a, b = Process(), Process()
    with b.serving():
        assert _token(client)[0] == 201
    with a.serving(), django_capture_on_commit_callbacks(execute=True):
        key.scopes = ["ingest_events"]
        key.save()
    with b.serving():
        status, detail = _token(client)
        assert status == 403 and "read_recommendations" in detail
    with a.serving(), django_capture_on_commit_callbacks(execute=True):
        ApiKey.objects.get(pk=key.pk).delete()
    with b.serving():
        assert _token(client)[0] == 401


@override_settings(API_KEY_CACHE_SECONDS=3600)
def test_while_the_cache_is_unreachable_keys_are_checked_in_the_database(
    shared_cache, backend, monkeypatch, django_capture_on_commit_callbacks
):
    key, client = backend
    a, b = Process(), Process()
    with b.serving():
        assert _token(client)[0] == 201

    def unreachable(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "incr", unreachable)  # the revocation's signal is lost ...
    monkeypatch.setattr(cache, "add", unreachable)
    with a.serving(), django_capture_on_commit_callbacks(execute=True):
        access.api_key_revoke(key=key)
    monkeypatch.setattr(cache, "get", unreachable)  # ... and B cannot read it either: it asks the database
    with b.serving():
        assert _token(client)[0] == 401


@override_settings(API_KEY_CACHE_SECONDS=3600)
def test_without_a_shared_cache_every_request_checks_the_key(backend, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(access, "cache_is_shared", lambda: False)
    key, client = backend
    a, b = Process(), Process()
    with b.serving():
        assert _token(client)[0] == 201
    # a per-process cache: B never hears of the revocation
    monkeypatch.setattr(access, "_revocation_signal", lambda: None)
    with a.serving(), django_capture_on_commit_callbacks(execute=True):
        access.api_key_revoke(key=key)
    with b.serving():
        assert _token(client)[0] == 401


@override_settings(API_KEY_CACHE_SECONDS=3600)
def test_an_unchanged_key_costs_no_database_query_per_request(shared_cache, backend, django_assert_num_queries):
    key, client = backend
    with Process().serving():
        alice_token = _token(client)[1]
        alice = APIClient()
        alice.credentials(HTTP_AUTHORIZATION=f"Customer {alice_token}")
        assert alice.get("/api/customers/alice/recommendations/").status_code == 200
        with django_assert_num_queries(0):  # the key is remembered while no key changes: one cache GET, no query
            assert access._key_by_prefix(key.prefix).pk == key.pk


@override_settings(API_KEY_CACHE_SECONDS=3600)
def test_a_customer_forgotten_in_one_process_loses_their_token_on_the_next_request_in_another(
    shared_cache, backend, django_capture_on_commit_callbacks
):
    """Process B remembers alice's row as alive (no query per request); forgetting her in process A
    must still close her token in B at once, not after API_KEY_CACHE_SECONDS."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from profiles.models import Customer
    from profiles.privacy import customer_forget

    key, client = backend
    a, b = Process(), Process()
    status, token = _token(client)
    alice = APIClient()
    alice.credentials(HTTP_AUTHORIZATION=f"Customer {token}")
    with b.serving():
        assert alice.get("/api/customers/alice/recommendations/").status_code == 200
        assert (Customer.objects.get(external_id="alice").pk, "alice") in b.live_customers  # remembered alive
        with CaptureQueriesContext(connection) as queries:  # key and row come from memory, not the database
            assert alice.get("/api/customers/alice/recommendations/").status_code == 200
        assert not [q["sql"] for q in queries if "profiles_apikey" in q["sql"] or q["sql"].startswith("SELECT 1 FROM")]
    with a.serving(), django_capture_on_commit_callbacks(execute=True):
        customer_forget(customer=Customer.objects.get(external_id="alice"))
    with b.serving():
        resp = alice.get("/api/customers/alice/recommendations/")
    assert resp.status_code == 401
    assert "no longer exists" in resp.json()["detail"]
