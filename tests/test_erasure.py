"""Erasure holds: a forgotten customer is not brought back by old links, tokens or event streams, leaves no
copy of their identity behind, and the admin's Delete button forgets instead of wiping campaign history."""

import hashlib
import time
from unittest import mock

import pandas as pd
import pytest
from django.contrib.admin.models import LogEntry
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import access
from accounts.models import AuditEntry
from campaigns import selectors as campaign_selectors
from campaigns import services as campaign_services
from campaigns.models import Delivery
from profiles import services
from profiles.models import ConsentChange, Customer, Event
from profiles.privacy import customer_forget
from tests.factories import (
    ApiKeyFactory,
    CampaignFactory,
    CustomerRow,
    SegmentFactory,
    customer_client,
    ingest,
    key_client,
    purchases,
)

pytestmark = pytest.mark.django_db

EXT, NAME, EMAIL = "shop-cust-7781zq", "Jürgen Quistorp-Ölmann", "j.quistorp@buecher.example"


@pytest.fixture
def shop(db, committed):
    """Ten customers (one of them ours) who bought something, and an email campaign sent to them all."""
    people = [CustomerRow(external_id=EXT, name=NAME, email=EMAIL, consent_email=True)] + [
        CustomerRow(external_id=f"other{i}", name=f"Other {i}", consent_email=True) for i in range(9)
    ]
    ingest(
        customers=people,
        events=purchases(
            [p["external_id"] for p in people], 40, prefix="er", items=4, amount=30.0, days=20, order_ids=True
        ),
    )
    mailable = SegmentFactory(name="Mailable", rule={"consent": "email"})
    campaign = CampaignFactory(name="Spring mail", channel="email", control_percent=0, segments=[mailable])
    committed(campaign_services.campaign_launch, campaign=campaign)
    return campaign


def _unsubscribe_path(campaign):
    customer = Customer.objects.get(external_id=EXT)
    token = campaign_services.unsubscribe_token(
        customer_external_id=EXT, campaign_id=campaign.pk, customer_id=customer.pk
    )
    return f"/api/campaigns/unsubscribe/{token}/"


# --- (a) forgotten customers stay forgotten ----------------------------------------------------


def test_an_old_unsubscribe_link_after_erasure_writes_nothing(shop, client):
    link = _unsubscribe_path(shop)
    assert key_client("manage_customers").delete(f"/api/customers/{EXT}/").status_code == 200
    customers, consents, audit = Customer.objects.count(), ConsentChange.objects.count(), AuditEntry.objects.count()
    shown = client.get(link)
    done = client.post(link)
    assert shown.status_code == 200 and done.status_code == 200
    assert "unsubscribed" in done.content.decode().lower()
    assert EXT not in shown.content.decode() + done.content.decode()
    assert not Customer.objects.filter(external_id=EXT).exists()
    assert (Customer.objects.count(), ConsentChange.objects.count(), AuditEntry.objects.count()) == (
        customers,
        consents,
        audit,
    )


def test_an_unsubscribe_link_still_unsubscribes_a_known_customer(shop, client):
    assert client.post(_unsubscribe_path(shop)).status_code == 200
    customer = Customer.objects.get(external_id=EXT)
    assert not customer.consent_email and customer.consent_in_app
    assert (
        ConsentChange.objects.filter(customer=customer, channel="email", granted=False, source="unsubscribe").count()
        == 1
    )


def test_an_unsubscribe_link_expires(shop, client):
    customer = Customer.objects.get(external_id=EXT)
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 200 * 86400):
        old = campaign_services.unsubscribe_token(
            customer_external_id=EXT, campaign_id=shop.pk, customer_id=customer.pk
        )
    resp = client.post(f"/api/campaigns/unsubscribe/{old}/")
    assert resp.status_code == 400 and "expired" in resp.content.decode()
    assert Customer.objects.get(pk=customer.pk).consent_email
    with override_settings(UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS=365):
        assert client.post(f"/api/campaigns/unsubscribe/{old}/").status_code == 200
    assert not Customer.objects.get(pk=customer.pk).consent_email


def test_a_customer_token_from_before_erasure_never_works_again(shop):
    old = customer_client(EXT)
    assert old.get(f"/api/customers/{EXT}/recommendations/").status_code == 200
    assert key_client("manage_customers").delete(f"/api/customers/{EXT}/").status_code == 200
    assert old.get(f"/api/customers/{EXT}/recommendations/").status_code == 401
    # the same person signs up again: the shop creates them explicitly; the old token stays dead
    resp = key_client("manage_customers").post("/api/customers/", [{"external_id": EXT, "email": EMAIL}], format="json")
    assert resp.status_code == 201 and resp.json()["created"] == 1
    assert old.get(f"/api/customers/{EXT}/recommendations/").status_code == 401
    assert old.get(f"/api/customers/{EXT}/inbox/").status_code == 401
    assert customer_client(EXT).get(f"/api/customers/{EXT}/recommendations/").status_code == 200


def test_an_old_unsubscribe_link_does_not_touch_a_recreated_customer(shop, client):
    link = _unsubscribe_path(shop)
    key_client("manage_customers").delete(f"/api/customers/{EXT}/")
    key_client("manage_customers").post("/api/customers/", [{"external_id": EXT, "consent_email": True}], format="json")
    assert client.post(link).status_code == 200
    assert Customer.objects.get(external_id=EXT).consent_email


def test_events_never_recreate_a_forgotten_customer(shop):
    key_client("manage_customers").delete(f"/api/customers/{EXT}/")
    event = [
        {
            "external_id": "late-1",
            "customer": EXT,
            "item": "sku1",
            "type": "view",
            "occurred_at": timezone.now().isoformat(),
        },
        {
            "external_id": "late-2",
            "customer": "brand-new",
            "item": "sku1",
            "type": "view",
            "occurred_at": timezone.now().isoformat(),
        },
    ]
    resp = key_client("ingest_events").post("/api/events/?create_unknown=true", event, format="json")
    assert resp.status_code == 400
    assert resp.json()["errors"] == [{"row": 0, "field": "customer", "reason": resp.json()["errors"][0]["reason"]}]
    assert "forgotten" in resp.json()["errors"][0]["reason"] and "/api/customers/" in resp.json()["errors"][0]["reason"]
    assert not Customer.objects.filter(external_id__in=[EXT, "brand-new"]).exists()
    # without all or nothing (campaign tracking, file imports) the other rows go through
    result = services.events_ingest(rows=pd.DataFrame(event), all_or_nothing=False, create_unknown=True)
    assert result.created == 1 and [e.row for e in result.errors] == [0]
    assert not Customer.objects.filter(external_id=EXT).exists()
    # a customers file import (no explicit re-creation) skips them too
    up = services.customers_upsert(
        rows=pd.DataFrame([{"external_id": EXT}]),
        update_existing=False,
        all_or_nothing=False,
        source="import",
        recreate_forgotten=False,
    )
    assert up.created == 0 and "forgotten" in up.errors[0].reason
    # once the shop re-creates them, their events are stored again
    key_client("manage_customers").post("/api/customers/", [{"external_id": EXT}], format="json")
    assert key_client("ingest_events").post("/api/events/", event[:1], format="json").status_code == 201
    assert Event.objects.filter(customer__external_id=EXT).count() == 1


# --- (b) no trace left -------------------------------------------------------------------------


def test_erasure_scrubs_every_copy_and_the_pseudonym_is_keyed(shop, rf, admin_user):
    from django.contrib import admin

    customer = Customer.objects.get(external_id=EXT)
    delivery = Delivery.objects.get(campaign=shop, customer=customer)
    # what a refusing mail server leaves in the delivery
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed", error=f"SMTP 550 <{EMAIL}> mailbox unavailable ({NAME})"
    )
    request = rf.post("/admin/")
    request.user = admin_user
    admin.site._registry[Customer].log_change(request, customer, [{"changed": {"fields": ["Name"]}}])
    services.customer_consent_set(customer=customer, source="admin", user=admin_user, consent_push=True)
    assert AuditEntry.objects.filter(target_label__contains=EXT).exists()
    report = campaign_selectors.campaign_report(shop)

    customer_forget(customer=customer, source="api")

    customer.refresh_from_db()
    assert (
        EMAIL not in Delivery.objects.get(pk=delivery.pk).error
        and NAME not in Delivery.objects.get(pk=delivery.pk).error
    )
    for entry in LogEntry.objects.filter(object_id=str(customer.pk)):
        assert (
            EXT not in entry.object_repr + entry.change_message and NAME not in entry.object_repr + entry.change_message
        )
    for entry in AuditEntry.objects.all():
        assert EXT not in f"{entry.target_label} {entry.actor_label} {entry.changes}"
    old_style = hashlib.sha256(f"{customer.pk}:{EXT}".encode()).hexdigest()[:16]
    assert old_style not in customer.external_id
    with override_settings(SECRET_KEY="another-secret-key-for-this-test-only-0123456789"):
        from profiles.privacy import pseudonym

        assert pseudonym(customer_id=customer.pk, external_id=EXT) != customer.external_id
    assert campaign_selectors.campaign_report(shop) == report


# --- (c) the admin's Delete forgets ----------------------------------------------------------


def test_the_admin_delete_button_forgets_and_keeps_the_report(shop, admin_client):
    customer = Customer.objects.get(external_id=EXT)
    report = campaign_selectors.campaign_report(shop)
    url = f"/admin/profiles/customer/{customer.pk}/delete/"
    page = admin_client.get(url)
    assert page.status_code == 200 and "forget" in page.content.decode().lower()
    resp = admin_client.post(url, {"post": "yes"})
    assert resp.status_code == 302
    customer.refresh_from_db()
    assert customer.external_id.startswith("forgotten-") and customer.email == "" and customer.name == ""
    assert Delivery.objects.filter(campaign=shop, customer=customer).count() == 1
    assert campaign_selectors.campaign_report(shop) == report
    assert AuditEntry.objects.filter(action="customer.forgotten", source="admin").count() == 1
    assert not AuditEntry.objects.filter(action="customer.deleted").exists()
    history = LogEntry.objects.filter(object_id=str(customer.pk), content_type__model="customer")
    assert history.count() == 1 and all(EXT not in e.object_repr and NAME not in e.object_repr for e in history)
    assert (
        key_client("ingest_events")
        .post(
            "/api/events/?create_unknown=true",
            [{"customer": EXT, "type": "search", "occurred_at": timezone.now().isoformat()}],
            format="json",
        )
        .status_code
        == 400
    )


def test_the_admin_bulk_delete_forgets_and_keeps_the_report(shop, admin_client):
    chosen = list(Customer.objects.filter(external_id__in=[EXT, "other1", "other2"]).values_list("pk", flat=True))
    report = campaign_selectors.campaign_report(shop)
    resp = admin_client.post(
        "/admin/profiles/customer/", {"action": "delete_selected", "_selected_action": chosen, "post": "yes"}
    )
    assert resp.status_code == 302
    assert Customer.objects.filter(pk__in=chosen, external_id__startswith="forgotten-", email="").count() == 3
    assert Delivery.objects.filter(campaign=shop, customer_id__in=chosen).count() == 3
    assert campaign_selectors.campaign_report(shop) == report
    assert AuditEntry.objects.filter(action="customer.forgotten", source="admin").count() == 3
    assert Customer.objects.get(external_id="other3").email == "other3@example.com"
    assert not LogEntry.objects.filter(object_repr__contains=EXT).exists()
    assert not LogEntry.objects.filter(object_repr__contains="Other 1").exists()


def test_a_customer_token_without_the_customer_row_is_refused(shop):
    """Tokens from before they named the customer row would open whoever holds the external id now."""
    from django.core import signing

    key = ApiKeyFactory(scopes=["read_recommendations"]).key
    legacy = signing.dumps({"c": EXT, "k": key.prefix, "t": 600}, salt=access.TOKEN_SALT, compress=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Customer {legacy}")
    resp = client.get(f"/api/customers/{EXT}/recommendations/")
    assert resp.status_code == 401 and "new one" in resp.json()["detail"]
