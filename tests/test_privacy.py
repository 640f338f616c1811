"""A customer's data: exported whole on request, and forgotten everywhere on request."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns import selectors as campaign_selectors
from campaigns import services as campaign_services
from campaigns.models import Delivery
from pipeline import services as pipeline
from profiles.models import ConsentChange, Customer, Event, Profile
from recommendations.models import Recommendation
from segments.models import Membership
from tests.factories import (
    CampaignFactory,
    CustomerRow,
    EventRow,
    OperatorFactory,
    SegmentFactory,
    client_for,
    ingest,
    key_client,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db, committed):
    """Thirty customers who looked and bought, everything computed, and an in-app campaign sent to them."""
    now = timezone.now()
    people = [CustomerRow(external_id=f"p{c}", name=f"Person {c}") for c in range(30)]
    ingest(
        customers=people,
        events=[
            EventRow(
                external_id=f"pe{i}",
                customer=f"p{i % 30}",
                item=f"sku{(i * 7) % 20}",
                type=["view", "purchase"][(i // 30) % 2],
                amount=20.0 if (i // 30) % 2 else None,
                occurred_at=now - timedelta(days=i % 50),
                context={"order_id": f"o{i}"} if (i // 30) % 2 else {},
            )
            for i in range(240)
        ],
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"]))
    in_app = SegmentFactory(name="In-app", rule={"consent": "in_app"})
    campaign = CampaignFactory(name="Hello", control_percent=0, segments=[in_app])
    committed(campaign_services.campaign_launch, campaign=campaign)
    return campaign


def test_export_holds_everything_about_the_customer(shop):
    body = key_client("manage_customers").get("/api/customers/p3/export/").json()
    assert body["customer"]["external_id"] == "p3" and body["customer"]["email"] == "p3@example.com"
    assert len(body["events"]) == Event.objects.filter(customer__external_id="p3").count() == 8
    assert body["profile"]["frequency"] == Profile.objects.get(customer__external_id="p3").frequency
    memberships = Membership.objects.filter(customer__external_id="p3")
    assert sorted(m.segment.kind for m in memberships) == ["cluster", "rule"]  # "In-app" and the customer's cluster
    assert sorted((s["segment"], parse_datetime(s["since"])) for s in body["segments"]) == sorted(
        (m.segment.name, m.since) for m in memberships
    )
    assert body["messages"][0]["title"] == "Hi Person 3"
    assert (
        len(body["recommendations"])
        == Recommendation.objects.filter(customer__external_id="p3", run__is_active=True).count()
        > 0
    )
    assert body["consent_history"][0]["channel"] == "in_app"
    json.dumps(body)  # plain JSON


def test_forgetting_removes_the_customer_everywhere_but_keeps_campaign_counts(shop):
    customer = Customer.objects.get(external_id="p3")
    report_before = campaign_selectors.campaign_report(shop)
    resp = key_client("manage_customers").delete("/api/customers/p3/")
    assert resp.status_code == 200 and resp.json()["removed"]["events"] == 8
    customer.refresh_from_db()
    assert customer.external_id.startswith("forgotten-") and customer.name == "" and customer.email == ""
    assert not customer.consent_in_app and not customer.consent_email
    assert not Event.objects.filter(customer=customer).exists()
    assert not Profile.objects.filter(customer=customer).exists()
    assert not Membership.objects.filter(customer=customer).exists()
    assert not Recommendation.objects.filter(customer=customer).exists()
    assert not ConsentChange.objects.filter(customer=customer).exists()
    delivery = Delivery.objects.get(campaign=shop, customer=customer)
    assert delivery.title == "" and delivery.body == ""
    assert campaign_selectors.campaign_report(shop)["sent"] == report_before["sent"]  # still counted
    # nothing answers for the old id any more; the others are untouched
    assert key_client("manage_customers").get("/api/customers/p3/export/").status_code == 404
    assert Event.objects.filter(customer__external_id="p4").count() == 8
    # the next pipeline run has nothing of them to learn from, and suggests nothing to them
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "recommendations"]))
    assert not Recommendation.objects.filter(customer=customer, reason="because_you").exists()


def test_forget_customer_command(shop):
    out = StringIO()
    call_command("forget_customer", "p5", stdout=out)
    assert "forgotten" in out.getvalue()
    assert not Customer.objects.filter(external_id="p5").exists()


def test_forgetting_needs_the_right_to(shop):
    client = client_for(OperatorFactory(username="viewer"))
    assert client.delete("/api/customers/p2/").status_code == 403
    reader = key_client("read_recommendations", name="reader")
    assert reader.delete("/api/customers/p2/").status_code == 403
    assert reader.get("/api/customers/p2/export/").status_code == 403
    assert Customer.objects.filter(external_id="p2").exists()
