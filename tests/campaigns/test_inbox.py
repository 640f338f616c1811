"""Reading an inbox changes nothing; the customer's own client records a message delivered with an explicit POST."""
from datetime import timedelta

import pandas as pd
import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import access
from campaigns import selectors as campaign_selectors
from campaigns import services as campaign_services
from campaigns.models import Campaign, Delivery
from profiles import services
from profiles.models import Event
from segments.models import Segment
from segments.rules import refresh_rule_memberships

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(db, django_capture_on_commit_callbacks):
    """An in-app campaign sent to twelve customers who bought something."""
    now = timezone.now()
    services.customers_upsert(rows=pd.DataFrame([
        {"external_id": f"ib{c}", "name": f"Reader {c}", "email": f"ib{c}@example.com", "consent_in_app": True} for c in range(12)]))
    services.events_ingest(rows=pd.DataFrame([
        {"external_id": f"ibe{i}", "customer": f"ib{i % 12}", "item": f"sku{i % 5}", "type": "purchase", "amount": 12.5,
         "occurred_at": now - timedelta(days=i % 9)} for i in range(36)]))
    segment = Segment.objects.create(name="Readers", kind="rule", rule={"consent": "in_app"})
    refresh_rule_memberships(segment)
    campaign = Campaign.objects.create(name="News", title_template="Hi {{ customer.name }}", body_template="New arrivals",
                                       control_percent=0, window_start=None, window_end=None)
    campaign.segments.set([segment])
    with django_capture_on_commit_callbacks(execute=True):
        campaign_services.campaign_launch(campaign=campaign)
    return campaign


def _analyst(django_user_model):
    user = django_user_model.objects.create_user("ann", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Analyst"))
    client = APIClient()
    client.force_authenticate(user)
    return client


def _key(*scopes):
    _, full = access.api_key_create(name="backend", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {full}")
    return client


def _customer(external_id):
    token = _key("read_recommendations").post("/api/customer-tokens/", {"customer": external_id}, format="json").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Customer {token}")
    return client


def _snapshot(campaign):
    """Every table's row count, every delivery's tracking times, and the campaign's report."""
    counts = {m._meta.label: m.objects.count() for m in apps.get_models() if m._meta.managed}
    tracking = list(Delivery.objects.order_by("pk").values_list("pk", "delivered_at", "opened_at", "clicked_at"))
    report = campaign_selectors.campaign_report(campaign)
    return counts, tracking, report


def test_an_analyst_reading_an_inbox_changes_nothing(sent, django_user_model):
    analyst = _analyst(django_user_model)
    mine = Delivery.objects.filter(campaign=sent, customer__external_id="ib3", status="sent").get()
    before = _snapshot(sent)
    resp = analyst.get("/api/customers/ib3/inbox/")
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["results"]] == [mine.pk]
    # reading as the shop's backend or as the customer changes nothing either
    assert _key("read_recommendations").get("/api/customers/ib3/inbox/").status_code == 200
    after = _snapshot(sent)
    assert after[0] | {"accounts.ApiKey": before[0]["accounts.ApiKey"]} == before[0]  # only the new key's row
    assert after[1] == before[1]
    assert after[2]["delivered"] == before[2]["delivered"] == 0
    assert after[2] == before[2]
    assert not Event.objects.filter(type="message_delivered").exists()


def test_the_customer_records_delivery_once_with_a_post(sent, django_user_model):
    mine = Delivery.objects.get(campaign=sent, customer__external_id="ib3")
    ib3 = _customer("ib3")
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
    assert _key("read_recommendations").post(f"/api/customers/ib4/inbox/{other.pk}/delivered/").status_code == 200
    assert campaign_selectors.campaign_report(sent)["delivered"] == 2


def test_an_analyst_or_another_customer_cannot_record_delivery(sent, django_user_model):
    mine = Delivery.objects.get(campaign=sent, customer__external_id="ib3")
    assert _analyst(django_user_model).post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/").status_code == 403
    assert _customer("ib4").post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/").status_code == 403
    assert _key("ingest_events").post(f"/api/customers/ib3/inbox/{mine.pk}/delivered/").status_code == 403
    # a message of another customer is not found through this customer's inbox
    other = Delivery.objects.get(campaign=sent, customer__external_id="ib4")
    assert _customer("ib3").post(f"/api/customers/ib3/inbox/{other.pk}/delivered/").status_code == 404
    assert Delivery.objects.filter(delivered_at__isnull=False).count() == 0
    assert campaign_selectors.campaign_report(sent)["delivered"] == 0


def test_a_message_that_cannot_be_delivered_or_opened_is_refused_in_the_api_error_shape(sent):
    """Every 400 of the API carries `detail` and `errors` (common/api_errors.py)."""
    suppressed = Delivery.objects.filter(campaign=sent).exclude(status="sent").first()
    if suppressed is None:
        suppressed = Delivery.objects.filter(campaign=sent).first()
        Delivery.objects.filter(pk=suppressed.pk).update(status="suppressed")
    customer = suppressed.customer.external_id
    client = _customer(customer)
    for what in ("delivered", "opened"):
        resp = client.post(f"/api/customers/{customer}/inbox/{suppressed.pk}/{what}/", {}, format="json")
        assert resp.status_code == 400, resp.content
        body = resp.json()
        assert body == {"detail": body["detail"], "errors": []} and body["detail"].startswith("Only a sent")
