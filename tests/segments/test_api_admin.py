"""Segments and profiles through the API and the admin, as operators use them."""

from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from pipeline import services as pipeline
from profiles import services
from profiles.models import Profile
from segments.models import Membership, Segment
from tests.factories import OperatorFactory, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_shop(db):
    """Twelve customers: four bought Books recently (two of them three times), the rest only browsed."""
    now = timezone.now()
    rows = []
    for c in range(12):
        for i in range(3 if c < 2 else 1):
            kind = "purchase" if c < 4 else "view"
            rows.append(
                {
                    "external_id": f"s{c}-{i}",
                    "customer": f"cust{c:02d}",
                    "item": f"book{c % 3}",
                    "type": kind,
                    "value": 1 if kind == "purchase" else None,
                    "amount": 20.0 if kind == "purchase" else None,
                    "occurred_at": now - timedelta(days=2 + c + i),
                    "context": {"order_id": f"o{c}-{i}"} if kind == "purchase" else {},
                }
            )
    services.events_ingest(rows=pd.DataFrame(rows))
    services.items_upsert(
        rows=pd.DataFrame([{"external_id": f"book{i}", "category": "Books", "price": 20.0} for i in range(3)])
    )
    services.customers_upsert(
        rows=pd.DataFrame(
            [{"external_id": f"cust{c:02d}", "name": f"Reader {c}", "consent_email": c % 2 == 0} for c in range(12)]
        )
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles"]))
    return now


def _client(*perms):
    return client_for(OperatorFactory(username="op", permissions=perms))


def test_profile_endpoint_shows_rfm_and_interests(small_shop):
    client = _client("profiles.view_profile")
    body = client.get("/api/customers/cust00/profile/").json()
    assert body["customer"] == "cust00"
    assert body["frequency"] == 3 and body["monetary"] == pytest.approx(60.0)
    assert body["lifecycle"] == "active" and body["interests"] == {"Books": 1.0}
    assert body["top_categories"] == ["Books"]
    assert client.get("/api/customers/cust05/profile/").json()["lifecycle"] == "never-bought"
    resp = client.get("/api/customers/nobody/profile/")
    assert resp.status_code == 404 and "nobody" in resp.json()["detail"]


def test_profile_endpoint_needs_the_permission(small_shop):
    client = _client()
    assert client.get("/api/customers/cust00/profile/").status_code == 403
    assert APIClient().get("/api/customers/cust00/profile/").status_code in (401, 403)


def test_rule_preview_then_save_then_members_and_customer_segments(small_shop):
    client = _client("segments.view_segment", "profiles.view_customer")
    rule = {
        "all": [
            {"event": {"type": "purchase", "min_count": 2, "within_days": 30, "category": "Books"}},
            {"consent": "email"},
        ]
    }
    preview = client.post("/api/segments/preview/", {"rule": rule}, format="json").json()
    assert preview == {"size": 1, "description": preview["description"]}  # cust00 (cust01 has no email consent)
    assert "purchased" in preview["description"]

    bad = client.post(
        "/api/segments/preview/",
        {"rule": {"all": [{"field": "lifecycle", "op": "=", "value": "zombie"}]}},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["path"].startswith("all[0]")

    seg = Segment.objects.create(name="Book lovers", kind="rule", rule=rule)
    from segments.rules import refresh_rule_memberships

    refresh_rule_memberships(seg)
    listed = client.get("/api/segments/?kind=rule").json()
    assert [s["name"] for s in listed["results"]] == ["Book lovers"] and listed["results"][0]["size"] == 1
    members = client.get(f"/api/segments/{seg.pk}/members/").json()
    assert [m["customer"] for m in members["results"]] == ["cust00"]
    assert client.get("/api/customers/cust00/segments/").json()[0]["name"] == "Book lovers"
    assert client.get("/api/customers/cust03/segments/").json() == []
    assert client.get("/api/segments/999/members/").status_code == 404


def test_admin_rule_segment_with_an_error_names_the_bad_part_and_a_good_one_gets_members(small_shop, admin_client):
    resp = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Broken",
            "description": "",
            "kind": "rule",
            "active": "on",
            "rule": '{"any": [{"consent": "email"}, {"event": {"type": "purchase", "within_days": -3}}]}',
        },
    )
    assert resp.status_code == 200
    assert "any[1].event.within_days" in resp.content.decode()
    assert not Segment.objects.filter(name="Broken").exists()
    resp = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Emailable",
            "description": "",
            "kind": "rule",
            "active": "on",
            "rule": '{"consent": "email"}',
        },
    )
    assert resp.status_code == 302
    seg = Segment.objects.get(name="Emailable")
    assert seg.size == 6 and Membership.objects.filter(segment=seg).count() == 6


def test_admin_starts_a_recomputation_that_runs_and_is_recorded(
    small_shop, admin_client, django_capture_on_commit_callbacks
):
    page = admin_client.get("/admin/pipeline/pipelinerun/start/")
    assert "segments" in page.content.decode()
    # one "incremental" box, in the words of both steps that take it
    assert page.content.decode().count('name="incremental"') == 1
    assert "Profiles: only customers with new events" in page.content.decode()
    assert "Segments: only customers whose profiles changed" in page.content.decode()
    # the task is enqueued on commit, so a worker never sees the run before it exists
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        resp = admin_client.post("/admin/pipeline/pipelinerun/start/", {"steps": ["profiles", "segments"]})
    assert resp.status_code == 302 and len(callbacks) == 1
    from pipeline.models import PipelineRun

    run = PipelineRun.objects.order_by("-pk").first()
    assert run.trigger == "admin" and run.requested_by.username == "admin"
    # eager Celery: the run happened on commit; its steps are recorded with counts and durations
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert [s.name for s in run.step_runs.order_by("id")] == ["profiles", "segments"]
    page = admin_client.get(f"/admin/pipeline/pipelinerun/{run.pk}/change/").content.decode()
    assert "profiles_written" in page


def test_starting_a_recomputation_needs_the_permission(small_shop, client):
    client.force_login(OperatorFactory(username="viewer", permissions=["pipeline.view_pipelinerun"]))
    assert client.get("/admin/pipeline/pipelinerun/").status_code == 200
    assert "Start a recomputation" not in client.get("/admin/pipeline/pipelinerun/").content.decode()
    assert client.get("/admin/pipeline/pipelinerun/start/").status_code == 403


def test_customer_page_shows_profile_and_segments(small_shop, admin_client):
    Segment.objects.create(name="Everyone", kind="rule", rule={"not": {"consent": "push"}})
    from segments.rules import refresh_rule_memberships

    refresh_rule_memberships(Segment.objects.get(name="Everyone"))
    profile = Profile.objects.select_related("customer").get(customer__external_id="cust00")
    html = admin_client.get(f"/admin/profiles/customer/{profile.customer_id}/change/").content.decode()
    # the customer page's header card: the lifecycle, the RFM scores in words, the segments as chips
    assert profile.get_lifecycle_display() in html and "RFM" in html
    assert 'class="c360-chip"' in html and "Everyone" in html
