"""Reading an inbox changes nothing; the customer's own client records a message delivered with an explicit POST."""

import pytest
from django.apps import apps

from campaigns import selectors as campaign_selectors
from campaigns import services as campaign_services
from campaigns.models import Delivery
from profiles.models import Event
from tests.factories import CampaignFactory, CustomerRow, SegmentFactory, customer_client, ingest, key_client, purchases

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(db, committed):
    """An in-app campaign sent to twelve customers who bought something."""
    readers = [f"ib{c}" for c in range(12)]
    ingest(
        customers=[CustomerRow(external_id=c, name=f"Reader {c[2:]}") for c in readers],
        events=purchases(readers, 36, prefix="ibe", items=5, amount=12.5, days=9),
    )
    readers_segment = SegmentFactory(name="Readers", rule={"consent": "in_app"})
    campaign = CampaignFactory(name="News", body_template="New arrivals", control_percent=0, segments=[readers_segment])
    committed(campaign_services.campaign_launch, campaign=campaign)
    return campaign


def _snapshot(campaign):
    """Every table's row count, every delivery's tracking times, and the campaign's report."""
    counts = {m._meta.label: m.objects.count() for m in apps.get_models() if m._meta.managed}
    tracking = list(Delivery.objects.order_by("pk").values_list("pk", "delivered_at", "opened_at", "clicked_at"))
    report = campaign_selectors.campaign_report(campaign)
    return counts, tracking, report


def test_an_analyst_reading_an_inbox_changes_nothing(sent, analyst):
    mine = Delivery.objects.filter(campaign=sent, customer__external_id="ib3", status="sent").get()
    before = _snapshot(sent)
    resp = analyst.get("/api/customers/ib3/inbox/")
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["results"]] == [mine.pk]
    # reading as the shop's backend or as the customer changes nothing either
    assert key_client("read_recommendations").get("/api/customers/ib3/inbox/").status_code == 200
    after = _snapshot(sent)
    assert after[0] | {"accounts.ApiKey": before[0]["accounts.ApiKey"]} == before[0]  # only the new key's row
    assert after[1] == before[1]
    assert after[2]["delivered"] == before[2]["delivered"] == 0
    assert after[2] == before[2]
    assert not Event.objects.filter(type="message_delivered").exists()


def test_the_customer_records_delivery_once_with_a_post(sent):
    mine = Delivery.objects.get(campaign=sent, customer__external_id="ib3")
    ib3 = customer_client("ib3")
    assert ib3.get("/api/customers/ib3/inbox/").status_code == 200
    assert Delivery.objects.get(pk=mine.pk).delivered_at is None
    first = ib3.post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/")
    assert first.status_code == 200, first.content
    delivered_at = Delivery.objects.get(pk=mine.pk).delivered_at
    assert delivered_at is not None and first.json()["delivered_at"] is not None
    again = ib3.post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/")
    assert again.status_code == 200 and Delivery.objects.get(pk=mine.pk).delivered_at == delivered_at
    events = Event.objects.filter(type="message_delivered", customer__external_id="ib3", context__delivery=mine.pk)
    assert events.count() == 1
    assert campaign_selectors.campaign_report(sent)["delivered"] == 1
    # the shop's backend may record it for its customer too
    other = Delivery.objects.get(campaign=sent, customer__external_id="ib4")
    assert key_client("read_recommendations").post(f"/api/customers/ib4/inbox/{other.pk}/delivered/").status_code == 200
    assert campaign_selectors.campaign_report(sent)["delivered"] == 2


def test_an_analyst_or_another_customer_cannot_record_delivery(sent, analyst):
    mine = Delivery.objects.get(campaign=sent, customer__external_id="ib3")
    assert analyst.post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/").status_code == 403
    assert customer_client("ib4").post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/").status_code == 403
    assert key_client("ingest_events").post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/").status_code == 403
    # a message of another customer is not found through this customer's inbox
    other = Delivery.objects.get(campaign=sent, customer__external_id="ib4")
    assert customer_client("ib3").post(f"/api/customers/ib3/inbox/{other.pk}/delivered/").status_code == 404
    assert Delivery.objects.filter(delivered_at__isnull=False).count() == 0
    assert campaign_selectors.campaign_report(sent)["delivered"] == 0


def test_a_message_that_cannot_be_delivered_or_opened_is_refused_in_the_api_error_shape(sent):
    """Every 400 of the API carries `detail` and `errors` (common/api_errors.py)."""
    suppressed = Delivery.objects.filter(campaign=sent).exclude(status="sent").first()
    if suppressed is None:
        suppressed = Delivery.objects.filter(campaign=sent).first()
        Delivery.objects.filter(pk=suppressed.pk).update(status="suppressed")
    customer = suppressed.customer.external_id
    client = customer_client(customer)
    for what in ("delivered", "opened"):
        resp = client.post(f"/api/customers/{customer}/inbox/{suppressed.pk}/{what}/", {}, format="json")
        assert resp.status_code == 400, resp.content
        body = resp.json()
        assert body == {"detail": body["detail"], "errors": []} and body["detail"].startswith("Only a sent")
