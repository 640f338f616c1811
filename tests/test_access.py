"""Every endpoint against every kind of caller: allowed where it should be, 401/403 where not,
and a customer token never reaches another customer's data."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import access
from accounts.models import ApiKey
from pipeline import services as pipeline
from profiles.models import Event
from tests.factories import (
    ADMINISTRATOR,
    ANALYST,
    MARKETING_OPERATOR,
    ApiKeyFactory,
    EventRow,
    OperatorFactory,
    client_for,
    customer_client,
    ingest,
    key_client,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now()
EVENT = [{"external_id": "acc-x", "customer": "alice", "item": "sku1", "type": "view", "occurred_at": NOW.isoformat()}]


@pytest.fixture
def shop(db):
    ingest(
        events=[
            EventRow(
                external_id=f"a{i}",
                customer=c,
                item=f"sku{i}",
                purchase=True,
                amount=10.0,
                occurred_at=NOW - timedelta(days=i + 1),
                context={"order_id": f"{c}{i}"},
            )
            for i, c in enumerate(["alice", "bob", "alice", "bob", "carol"])
        ]
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "recommendations"]))


# (method, url, body, who may: set of roles)
ENDPOINTS = [
    ("post", "/api/events/", EVENT, {"admin", "key:ingest_events"}),
    ("post", "/api/customers/", [{"external_id": "dave"}], {"admin", "key:manage_customers"}),
    ("post", "/api/items/", [{"external_id": "sku9"}], {"admin", "key:manage_customers"}),
    ("get", "/api/customers/alice/profile/", None, {"admin", "operator", "analyst", "key:manage_customers"}),
    ("get", "/api/customers/alice/segments/", None, {"admin", "operator", "analyst", "key:manage_customers"}),
    ("get", "/api/segments/", None, {"admin", "operator", "analyst"}),
    ("post", "/api/segments/preview/", {"rule": {"consent": "email"}}, {"admin", "operator", "analyst"}),
    (
        "get",
        "/api/customers/alice/recommendations/",
        None,
        {"admin", "operator", "analyst", "key:read_recommendations", "customer:alice"},
    ),
    (
        "get",
        "/api/items/sku1/similar/",
        None,
        {"admin", "operator", "analyst", "key:read_recommendations", "customer:alice"},
    ),
    (
        "get",
        "/api/customers/alice/inbox/",
        None,
        {"admin", "operator", "analyst", "key:read_recommendations", "customer:alice"},
    ),
    (
        "post",
        "/api/customers/alice/inbox/{alice_message}/delivered/",
        {},
        {"key:read_recommendations", "customer:alice"},
    ),
    (
        "get",
        "/api/customers/alice/activities/",
        None,
        {"admin", "operator", "analyst", "key:read_recommendations", "customer:alice"},
    ),
    ("get", "/api/segments/{segment}/members/", None, {"admin", "operator", "analyst"}),
    ("post", "/api/campaigns/audience-preview/", {"segments": []}, {"admin", "operator", "analyst"}),
    ("get", "/api/campaigns/{campaign}/report/", None, {"admin", "operator", "analyst"}),
]
ROLES = [
    "anonymous",
    "staff-no-perms",
    "analyst",
    "operator",
    "admin",
    "key:ingest_events",
    "key:manage_customers",
    "key:read_recommendations",
    "customer:alice",
]


def _client_for(role):
    if role == "anonymous":
        return APIClient()
    if role == "staff-no-perms":
        return client_for(OperatorFactory(username="nobody"))
    if role in ("analyst", "operator", "admin"):
        group = {"analyst": ANALYST, "operator": MARKETING_OPERATOR, "admin": ADMINISTRATOR}[role]
        return client_for(OperatorFactory(username=role, role=group))
    if role.startswith("key:"):
        return key_client(role[4:])
    return customer_client(role.split(":")[1])


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,url,body,allowed", ENDPOINTS, ids=[f"{m} {u}" for m, u, _, _ in ENDPOINTS])
def test_endpoint_access_by_role(shop, role, method, url, body, allowed):
    if "{" in url:
        from campaigns.models import Campaign
        from segments.models import Segment

        segment = Segment.objects.create(name="All", kind="rule", rule={"not": {"consent": "push"}})
        campaign = Campaign.objects.create(name="C", title_template="Hi", body_template="Hello")
        campaign.segments.add(segment)
        alice_message = 0
        if "{alice_message}" in url:
            from campaigns.models import Delivery
            from profiles.models import Customer

            campaign.channel = "in_app"
            campaign.save()
            alice_message = Delivery.objects.create(
                campaign=campaign,
                customer=Customer.objects.get(external_id="alice"),
                status="sent",
                sent_at=timezone.now(),
                title="Hi",
                body="Hello",
            ).pk
        url = url.format(segment=segment.pk, campaign=campaign.pk, alice_message=alice_message)
    client = _client_for(role)
    resp = getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)
    if role in allowed:
        assert resp.status_code in (200, 201), (role, url, resp.json())
    elif role == "anonymous":
        assert resp.status_code == 401, (role, url, resp.status_code)
        assert resp.json()["detail"]
    else:
        assert resp.status_code == 403, (role, url, resp.status_code, resp.content[:200])
        assert resp.json()["detail"]


def test_operator_group_may_not_ingest_but_admin_group_may(shop):
    assert _client_for("operator").post("/api/events/", EVENT, format="json").status_code == 403
    assert _client_for("admin").post("/api/events/", EVENT, format="json").status_code == 201


def test_api_key_is_stored_hashed_and_a_revoked_key_is_refused(shop):
    issued = ApiKeyFactory(scopes=["ingest_events"])
    client, key, full = issued.client(), issued.key, issued.secret
    assert full.split(".", 1)[1] not in key.hashed_secret and len(key.hashed_secret) == 64
    assert client.post("/api/events/", EVENT, format="json").status_code == 201
    access.api_key_revoke(key=key)
    resp = client.post("/api/events/", EVENT, format="json")
    assert resp.status_code == 401 and "revoked" in resp.json()["detail"]
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION=f"Api-Key {key.prefix}.not-the-secret")
    assert wrong.post("/api/events/", EVENT, format="json").status_code == 401
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_customer_token_opens_only_its_own_customer_and_expires(shop):
    issued = ApiKeyFactory(scopes=["read_recommendations"])
    backend, key = issued.client(), issued.key
    resp = backend.post("/api/customer-tokens/", {"customer": "alice", "ttl": 120}, format="json")
    assert resp.status_code == 201 and resp.json()["expires_in"] == 120
    assert backend.post("/api/customer-tokens/", {"customer": "nobody"}, format="json").status_code == 404
    token = resp.json()["token"]
    alice = APIClient()
    alice.credentials(HTTP_AUTHORIZATION=f"Customer {token}")
    # a customer token cannot mint tokens or ingest
    assert alice.post("/api/customer-tokens/", {"customer": "bob"}, format="json").status_code == 403
    assert alice.post("/api/events/", EVENT, format="json").status_code == 403
    # tampered or expired tokens are refused
    tampered = APIClient()
    tampered.credentials(HTTP_AUTHORIZATION=f"Customer {token[:-2]}xx")
    assert tampered.get("/api/customers/alice/profile/").status_code == 401
    with override_settings(CUSTOMER_TOKEN_MAX_TTL_SECONDS=0, CUSTOMER_TOKEN_TTL_SECONDS=0):
        resp = alice.get("/api/customers/alice/segments/")
    assert resp.status_code == 401
    # revoking the issuing key revokes its customer tokens
    access.api_key_revoke(key=key)
    assert alice.get("/api/customers/alice/segments/").status_code == 401


def test_a_customer_token_never_reads_another_customers_suggestions(shop):
    alice = customer_client("alice")
    assert alice.get("/api/customers/alice/recommendations/").status_code == 200
    resp = alice.get("/api/customers/bob/recommendations/")
    assert resp.status_code == 403 and "own customer only" in resp.json()["detail"]
    assert "bob" not in resp.content.decode().replace("/bob/", "")


def test_a_customer_token_never_touches_another_customers_inbox(shop):
    alice, bob = customer_client("alice"), customer_client("bob")
    assert alice.get("/api/customers/alice/inbox/").status_code == 200
    assert alice.get("/api/customers/bob/inbox/").status_code == 403
    assert alice.post("/api/customers/bob/inbox/1/opened/", {}, format="json").status_code == 403
    assert bob.get("/api/customers/alice/activities/").status_code == 403


def test_staff_key_scopes_are_the_only_way_for_keys(shop):
    client = key_client("manage_customers")
    resp = client.post("/api/events/", EVENT, format="json")
    assert resp.status_code == 403 and "ingest_events" in resp.json()["detail"]
    assert Event.objects.filter(external_id="acc-x").count() == 0


def test_error_format_is_the_same_everywhere(shop):
    admin = _client_for("admin")
    for resp in (
        admin.get("/api/customers/nobody/profile/"),
        admin.post("/api/segments/preview/", {}, format="json"),
        admin.post("/api/events/", {"not": "a list"}, format="json"),
        APIClient().get("/api/segments/"),
    ):
        body = resp.json()
        assert set(body) == {"detail", "errors"}, body
        assert isinstance(body["detail"], str) and isinstance(body["errors"], list)
    body = admin.post("/api/segments/preview/", {}, format="json").json()
    assert body["errors"] == [{"field": "rule", "reason": "This field is required."}]


def test_roles_have_their_permissions_after_migrate(db):
    operator = Group.objects.get(name="Marketing operator").permissions.values_list(
        "content_type__app_label", "codename"
    )
    analyst = set(Group.objects.get(name="Analyst").permissions.values_list("codename", flat=True))
    assert ("segments", "add_segment") in set(operator) and ("pipeline", "run_pipeline") in set(operator)
    assert ("profiles", "add_event") not in set(operator)
    assert all(code.startswith("view_") for code in analyst) and "view_apikey" not in analyst
    assert "view_segment" in analyst and "view_profile" in analyst


def test_customer_facing_endpoints_are_throttled_per_caller(shop, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(
        ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "customer": "3/min"}
    )
    alice, bob = customer_client("alice"), customer_client("bob")
    codes = [alice.get("/api/customers/alice/recommendations/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert alice.get("/api/customers/alice/recommendations/").json()["detail"].startswith("Request was throttled")
    assert bob.get("/api/customers/bob/recommendations/").status_code == 200  # another caller has its own budget


def test_api_throttles_count_per_process_unless_shared(settings):
    """API_THROTTLE_SHARED=0 (the default) keeps the API's counters in the process; 1 in the shared cache."""
    from django.conf import settings as live
    from django.core.cache import caches

    from common.cache import cache_is_shared

    assert live.CACHES["throttle"]["BACKEND"].endswith("LocMemCache") and not cache_is_shared("throttle")
    settings.CACHES = {
        **live.CACHES,
        "throttle": {"BACKEND": "common.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"},
    }
    assert cache_is_shared("throttle") and type(caches["throttle"]).__name__ == "RedisCache"
