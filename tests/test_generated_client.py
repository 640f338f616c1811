"""A client generated from the schema by a public generator parses every answer of the documented calls.

datamodel-code-generator (PyPI) turns the served OpenAPI schema into pydantic models once per session;
each real answer, taken from a realistic shop (customers, purchases, a pipeline run, a rule segment,
an in-app campaign sent and read), is then parsed with the model its operation declares for its status
code, strictly: a field the schema does not name, a missing required field, a null where none is
allowed, a string where a number is declared, or an answer with no declared schema, fails the test.
"""

import pytest
from django.contrib.auth.models import Permission

from campaigns import services as campaign_services
from campaigns.models import Delivery
from pipeline import services as pipeline
from tests.factories import (
    CampaignFactory,
    CustomerRow,
    OperatorFactory,
    SegmentFactory,
    client_for,
    customer_client,
    ingest,
    key_client,
    purchases,
)
from tests.generated_client import generate, parse_body

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def api(tmp_path_factory, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return generate(tmp_path_factory.mktemp("client"))


def parse(api, method: str, path: str, resp):
    """The answer parsed by the generated model its operation declares for its status code."""
    return parse_body(api, method, path, resp.status_code, resp.content)


@pytest.fixture
def shop(db, committed):
    """Twelve readers who bought things, a pipeline run, a rule segment and an in-app campaign sent to them."""
    readers = [f"gc{c}" for c in range(12)]
    ingest(
        customers=[CustomerRow(external_id=c, name=f"Reader {c[2:]}") for c in readers],
        events=purchases(readers, 48, prefix="gce", items=6, amount=12.5, days=20, order_ids=True),
    )
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"]))
    assert run.status == "succeeded", run.error
    segment = SegmentFactory(name="Readers", rule={"consent": "in_app"})
    campaign = CampaignFactory(name="News", body_template="New arrivals", control_percent=20, segments=[segment])
    committed(campaign_services.campaign_launch, campaign=campaign)
    admin = client_for(OperatorFactory(username="gc-admin", superuser=True))
    return {"campaign": campaign, "segment": segment, "admin": admin}


def test_ingestion_answers_parse_including_refused_batches(api, shop):
    backend = key_client("ingest_events", "manage_customers", "read_recommendations")
    event = {"customer": "gc1", "item": "sku1", "type": "view", "occurred_at": "2026-11-01T10:00:00+01:00"}
    ok = parse(api, "post", "/api/events/", backend.post("/api/events/", [event], format="json"))
    assert (ok.received, ok.created, ok.invalid) == (1, 1, 0)

    bad = backend.post("/api/events/", [event, {**event, "type": "teleport"}], format="json")
    assert bad.status_code == 400
    refused = parse(api, "post", "/api/events/", bad)
    assert [(e.row, e.field) for e in refused.errors] == [(1, "type")]
    not_array = parse(api, "post", "/api/events/", backend.post("/api/events/", {"a": 1}, format="json"))
    assert not_array.errors == [] and "JSON array" in not_array.detail

    customers = parse(
        api, "post", "/api/customers/", backend.post("/api/customers/", [{"external_id": "gc-new"}], format="json")
    )
    assert customers.created == 1
    items = parse(api, "post", "/api/items/", backend.post("/api/items/", [{"external_id": "sku-new"}], format="json"))
    assert items.created == 1

    token = parse(
        api,
        "post",
        "/api/customer-tokens/",
        backend.post("/api/customer-tokens/", {"customer": "gc1", "ttl": 900}, format="json"),
    )
    assert token.customer == "gc1" and token.expires_in == 900
    short = parse(
        api,
        "post",
        "/api/customer-tokens/",
        backend.post("/api/customer-tokens/", {"customer": "gc1", "ttl": 5}, format="json"),
    )
    assert [e.field for e in short.errors] == ["ttl"]


def test_profile_segments_and_rule_preview_answers_parse(api, shop):
    admin = shop["admin"]
    profile = parse(api, "get", "/api/customers/{external_id}/profile/", admin.get("/api/customers/gc1/profile/"))
    assert profile.customer == "gc1" and profile.orders_total == 4
    missing = parse(api, "get", "/api/customers/{external_id}/profile/", admin.get("/api/customers/nobody/profile/"))
    assert "nobody" in missing.detail and missing.errors == []

    segments = parse(api, "get", "/api/segments/", admin.get("/api/segments/"))
    assert "Readers" in [s.name for s in segments.results] and segments.count == len(segments.results)
    members = parse(
        api, "get", "/api/segments/{id}/members/", admin.get(f"/api/segments/{shop['segment'].pk}/members/?limit=5")
    )
    assert members.count == 12 and len(members.results) == 5
    mine = parse(api, "get", "/api/customers/{external_id}/segments/", admin.get("/api/customers/gc1/segments/"))
    assert "Readers" in [s.name for s in mine]

    preview = parse(
        api,
        "post",
        "/api/segments/preview/",
        admin.post("/api/segments/preview/", {"rule": {"consent": "in_app"}}, format="json"),
    )
    assert preview.size == 12
    wrong = admin.post(
        "/api/segments/preview/", {"rule": {"all": [{"field": "nope", "op": "=", "value": 1}]}}, format="json"
    )
    assert wrong.status_code == 400
    assert parse(api, "post", "/api/segments/preview/", wrong).errors[0].path == "all[0].field"


def test_recommendation_answers_parse_for_known_new_and_bad_requests(api, shop):
    gc1 = customer_client("gc1")
    recs = parse(
        api,
        "get",
        "/api/customers/{external_id}/recommendations/",
        gc1.get("/api/customers/gc1/recommendations/?limit=3"),
    )
    assert recs.customer == "gc1" and 1 <= len(recs.results) <= 3
    assert recs.results[0].rank == 1 and recs.results[0].item.external_id.startswith("sku")
    # a customer the active run does not know gets the fallback (the serializer's path, not the hot one)
    ingest(customers=[CustomerRow(external_id="gc-late")])
    late = parse(
        api,
        "get",
        "/api/customers/{external_id}/recommendations/",
        shop["admin"].get("/api/customers/gc-late/recommendations/"),
    )
    assert late.results and {r.reason.value for r in late.results} <= {"segment_popular", "popular"}
    too_many = parse(
        api,
        "get",
        "/api/customers/{external_id}/recommendations/",
        gc1.get("/api/customers/gc1/recommendations/?limit=999"),
    )
    assert [e.field for e in too_many.errors] == ["limit"]
    similar = parse(api, "get", "/api/items/{external_id}/similar/", gc1.get("/api/items/sku1/similar/"))
    assert similar.item == "sku1"
    other = parse(
        api,
        "get",
        "/api/customers/{external_id}/recommendations/",
        gc1.get("/api/customers/gc2/recommendations/"),
    )
    assert "own customer" in other.detail


def test_inbox_tracking_and_campaign_answers_parse(api, shop):
    campaign = shop["campaign"]
    mine = Delivery.objects.filter(campaign=campaign, customer__external_id="gc3", status="sent").first()
    if mine is None:  # gc3 was held out: take a treated reader
        mine = Delivery.objects.filter(campaign=campaign, status="sent").select_related("customer").first()
    who = mine.customer.external_id
    client = customer_client(who)
    base = "/api/customers/{external_id}/inbox/"
    inbox = parse(api, "get", base, client.get(f"/api/customers/{who}/inbox/"))
    assert [m.id for m in inbox.results] == [mine.pk]
    delivered = parse(
        api, "post", base + "{id}/delivered/", client.post(f"/api/customers/{who}/inbox/{mine.pk}/delivered/")
    )
    assert delivered.id == mine.pk
    opened = parse(api, "post", base + "{id}/opened/", client.post(f"/api/customers/{who}/inbox/{mine.pk}/opened/"))
    assert opened.opened_at is not None and opened.clicked_at is None
    clicked = parse(
        api,
        "post",
        base + "{id}/clicked/",
        client.post(f"/api/customers/{who}/inbox/{mine.pk}/clicked/", {"item": "sku1"}, format="json"),
    )
    assert clicked.clicked_at is not None and clicked.opened_at == opened.opened_at
    nothing = parse(api, "post", base + "{id}/opened/", client.post(f"/api/customers/{who}/inbox/999999/opened/"))
    assert "999999" in nothing.detail
    activities = parse(
        api, "get", "/api/customers/{external_id}/activities/", client.get(f"/api/customers/{who}/activities/")
    )
    assert activities.customer == who

    admin = shop["admin"]
    report = parse(api, "get", "/api/campaigns/{id}/report/", admin.get(f"/api/campaigns/{campaign.pk}/report/"))
    assert report.audience == 12 and report.sent + report.control == 12
    assert report.opened == report.clicked == 1
    assert report.conversion.treated_n == report.sent and report.goal.attribution_days == 7
    preview = parse(
        api,
        "post",
        "/api/campaigns/audience-preview/",
        admin.post(
            "/api/campaigns/audience-preview/",
            {"segments": [shop["segment"].pk], "channel": "in_app", "control_percent": 10},
            format="json",
        ),
    )
    assert preview.members == 12


def test_export_and_erasure_answers_parse(api, shop):
    backend = key_client("manage_customers")
    export = parse(api, "get", "/api/customers/{external_id}/export/", backend.get("/api/customers/gc5/export/"))
    assert export.customer.external_id == "gc5" and len(export.events) == 4
    assert export.profile is not None and export.recommendations and export.segments
    assert len(export.messages) == 1
    forgotten = parse(api, "delete", "/api/customers/{external_id}/", backend.delete("/api/customers/gc5/"))
    assert forgotten.forgotten is True and forgotten.removed["events"] == 4
    again = parse(api, "delete", "/api/customers/{external_id}/", backend.delete("/api/customers/gc5/"))
    assert "gc5" in again.detail


def test_refusals_parse_as_the_one_error_shape(api, shop):
    anonymous = parse(api, "get", "/api/segments/", client_for(None).get("/api/segments/"))
    assert anonymous.errors == []
    nobody = OperatorFactory(username="gc-nobody")
    nobody.user_permissions.set(Permission.objects.none())
    forbidden = parse(api, "get", "/api/segments/", client_for(nobody).get("/api/segments/"))
    assert forbidden.detail and forbidden.errors == []


def test_an_unknown_api_url_answers_json_in_the_error_shape(api, shop):
    """A path parameter of the wrong type matches no route: still a JSON 404, as the schema says, not a page."""
    resp = shop["admin"].get("/api/campaigns/abc/report/")
    assert resp.status_code == 404 and resp["Content-Type"] == "application/json"
    assert (
        parse(api, "get", "/api/campaigns/{id}/report/", resp).detail == "No such endpoint: /api/campaigns/abc/report/"
    )
    page = shop["admin"].get("/no-such-page/")  # outside the API, Django's own page
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
