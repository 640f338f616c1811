"""Operator queries run under a statement timeout (issue #12, finding 5).

Previews, member lists, refreshes an operator starts, campaign reports, audience counts and the
dashboard's reports run with `SET LOCAL statement_timeout = OPERATOR_QUERY_TIMEOUT_MS` on
PostgreSQL: one expensive preview cannot hold the database for the customers' requests. A query
the timeout cancels answers 503 with the error format of the API (a message in the admin), and
the connection goes on working. SQLite has no statement timeout (the context is a no-op there).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common.operator_queries import OperatorQueryTimeout, operator_query_timeout
from profiles import services
from profiles.demo import generate_shop
from profiles.models import Customer
from segments.models import Membership, Segment
from segments.rules import refresh_rule_memberships, rule_audience_size

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="statement timeouts are PostgreSQL's (SQLite has none; CI runs PostgreSQL)",
)
pytestmark = pytest.mark.django_db

# Ten event conditions, each counting a customer's events: within the limits, and a scan of the
# events table each (the shape of the reported attack, cut to what the rule limits let through).
HEAVY_RULE = {
    "any": [
        {"event": {"type": t, "min_count": 2 + i, "within_days": 20 + 15 * i}}
        for i, t in enumerate(["view", "click", "add_to_cart", "purchase", "favorite"] * 2)
    ]
}


@pytest.fixture(scope="module")
def busy_shop(django_db_setup, django_db_blocker):
    """The demo shop's customers, items and events (no recomputation needed for rules on events)."""
    with django_db_blocker.unblock():
        demo = generate_shop(seed=5, n_customers=1500, n_events=45_000, n_products=150, n_posts=30, chunk_size=50_000)
        services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
        services.items_upsert(rows=demo.items)
        for chunk in demo.iter_events():
            services.events_ingest(rows=chunk, create_unknown=False)
        everyone = Segment.objects.create(name="Everyone who looked", kind="rule", rule={"event": {"type": "view"}})
        refresh_rule_memberships(everyone)
    yield demo
    with django_db_blocker.unblock():
        from profiles.models import Event, Item

        for model in (Membership, Segment, Event, Item, Customer):
            model.objects.all().delete()


def _statement_timeout() -> str:
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        return cur.fetchone()[0]


def _timeouts_set(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "statement_timeout" in q["sql"]]


@postgres_only
def test_a_preview_over_the_timeout_answers_503_and_the_connection_goes_on(busy_shop, analyst, settings):
    settings.OPERATOR_QUERY_TIMEOUT_MS = 2
    resp = analyst.post("/api/segments/preview/", {"rule": HEAVY_RULE}, format="json")
    assert resp.status_code == 503, resp.content
    body = resp.json()
    assert body["errors"] == []
    assert "took longer than 0.002 s" in body["detail"] and "narrow the rule" in body["detail"]
    # The connection is usable at once, and the timeout did not outlive the request.
    assert _statement_timeout() == "0"
    assert Customer.objects.count() == 1500
    settings.OPERATOR_QUERY_TIMEOUT_MS = 60_000
    resp = analyst.post("/api/segments/preview/", {"rule": HEAVY_RULE}, format="json")
    assert resp.status_code == 200
    assert resp.json()["size"] == rule_audience_size(HEAVY_RULE) > 0


@postgres_only
def test_the_timeout_is_local_to_its_block_and_restored_after_success_or_cancel(busy_shop, settings):
    from django.db import transaction

    settings.OPERATOR_QUERY_TIMEOUT_MS = 4000
    with transaction.atomic():
        with operator_query_timeout():
            assert _statement_timeout() == "4s"
        assert _statement_timeout() == "0"  # the outer transaction keeps no timeout
        with pytest.raises(OperatorQueryTimeout) as caught:
            with operator_query_timeout(ms=2, hint="narrow the rule"):
                rule_audience_size(HEAVY_RULE)
        assert "took longer than 0.002 s" in str(caught.value)
        assert _statement_timeout() == "0"
        assert Customer.objects.count() == 1500  # the transaction goes on


@postgres_only
def test_an_admin_save_whose_refresh_times_out_shows_an_error_not_a_500(busy_shop, admin_client, settings):
    import json

    settings.OPERATOR_QUERY_TIMEOUT_MS = 2
    resp = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Busy browsers",
            "description": "",
            "kind": "rule",
            "active": "on",
            "rule": json.dumps(HEAVY_RULE),
        },
        follow=True,
    )
    assert resp.status_code == 200
    shown = [str(m) for m in resp.context["messages"]]
    assert any("took longer than 0.002 s" in m and "next recomputation" in m for m in shown), shown
    seg = Segment.objects.get(name="Busy browsers")  # saved; its members come with the next refresh
    assert seg.refreshed_at is None and not Membership.objects.filter(segment=seg).exists()
    assert _statement_timeout() == "0"


def _running_campaign(segment):
    from campaigns.models import Campaign

    campaign = Campaign.objects.create(
        name="Spring", title_template="Hi", body_template="Hello", status="running", window_start=None, window_end=None
    )
    campaign.segments.set([segment])
    return campaign


@postgres_only
def test_every_operator_read_runs_under_the_timeout(busy_shop, analyst, admin_client, settings):
    settings.OPERATOR_QUERY_TIMEOUT_MS = 3000
    seg = Segment.objects.get(name="Everyone who looked")
    campaign = _running_campaign(seg)
    calls = {
        "rule preview": lambda: analyst.post("/api/segments/preview/", {"rule": {"consent": "email"}}, format="json"),
        "members": lambda: analyst.get(f"/api/segments/{seg.pk}/members/?search=a"),
        "campaign report": lambda: analyst.get(f"/api/campaigns/{campaign.pk}/report/"),
        "audience preview": lambda: analyst.post(
            "/api/campaigns/audience-preview/", {"segments": [seg.pk]}, format="json"
        ),
        "campaign page": lambda: admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/"),
        "dashboard": lambda: admin_client.get("/admin/dashboard/"),
    }
    for name, call in calls.items():
        with CaptureQueriesContext(connection) as queries:
            resp = call()
        assert resp.status_code == 200, (name, resp.content[:500])
        assert any("3000" in sql for sql in _timeouts_set(queries)), name
    # Pipeline work keeps no timeout: a recomputation's refresh of the same segment sets none.
    from segments.services import rule_segments_refresh

    with CaptureQueriesContext(connection) as queries:
        rule_segments_refresh()
    assert not _timeouts_set(queries)


@postgres_only
def test_a_campaign_report_over_the_timeout_is_503_in_the_api_and_a_message_in_the_admin(
    busy_shop, analyst, admin_client, settings, monkeypatch
):
    from campaigns import selectors
    from campaigns.models import Campaign

    campaign = _running_campaign(Segment.objects.get(name="Everyone who looked"))
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=campaign.created_at)
    real_report = selectors.campaign_report

    def report_of_a_huge_campaign(c):  # pg_sleep stands in for the aggregate over millions of deliveries
        with connection.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.5)")
        return real_report(c)

    monkeypatch.setattr(selectors, "campaign_report", report_of_a_huge_campaign)
    settings.OPERATOR_QUERY_TIMEOUT_MS = 50
    resp = analyst.get(f"/api/campaigns/{campaign.pk}/report/")
    assert resp.status_code == 503
    assert "took longer than 0.05 s" in resp.json()["detail"] and resp.json()["errors"] == []
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.status_code == 200
    assert any("took longer than 0.05 s" in str(m) for m in page.context["messages"])
    dashboard = admin_client.get("/admin/dashboard/")
    assert dashboard.status_code == 200
    assert _statement_timeout() == "0" and Customer.objects.count() == 1500


def test_on_sqlite_the_timeout_is_a_no_op(db, settings):
    if connection.vendor != "sqlite":
        pytest.skip("the no-op is SQLite's")
    settings.OPERATOR_QUERY_TIMEOUT_MS = 1
    with CaptureQueriesContext(connection) as queries, operator_query_timeout():
        assert Customer.objects.count() == 0
    assert not _timeouts_set(queries)
