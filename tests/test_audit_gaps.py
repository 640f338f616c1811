"""Issue #12 finding 8: widening an API key's scopes and deleting a sent delivery left no trace;
deleting deliveries in the admin changed past reports and let a recurring campaign send again.

Now every change to a key is audited with before and after, a key is revoked (never deleted) in
the admin, and no delivery can be deleted there — not one by one, not in bulk, not through the
customer's page, not by deleting the campaign they belong to.
"""

import pytest
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from campaigns.models import Campaign, Delivery
from tests.factories import ADMINISTRATOR, ApiKeyFactory, CampaignFactory, CustomerFactory, OperatorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_role(client):
    """An Administrator (the role, not a superuser): holds every product permission incl. delete_delivery."""
    client.force_login(OperatorFactory(username="ada", role=ADMINISTRATOR))
    return client


def test_widening_an_api_keys_scopes_or_renaming_it_is_audited_with_before_and_after(boss_client):
    key = ApiKeyFactory(name="shop backend", scopes=["ingest_events"]).key
    resp = boss_client.post(
        f"/admin/accounts/apikey/{key.pk}/change/",
        {"name": "shop backend (prod)", "scopes": ["ingest_events", "manage_customers"]},
    )
    assert resp.status_code == 302
    key.refresh_from_db()
    assert key.scopes == ["ingest_events", "manage_customers"]
    (entry,) = AuditEntry.objects.filter(action="api_key.changed")
    assert entry.target_id == str(key.pk) and entry.actor.username == "boss"
    assert entry.changes == {
        "name": {"from": "shop backend", "to": "shop backend (prod)"},
        "scopes": {"from": ["ingest_events"], "to": ["ingest_events", "manage_customers"]},
    }
    # saving without a change writes nothing
    boss_client.post(f"/admin/accounts/apikey/{key.pk}/change/", {"name": "shop backend (prod)", "scopes": key.scopes})
    assert AuditEntry.objects.filter(action="api_key.changed").count() == 1


def test_an_api_key_is_revoked_not_deleted_in_the_admin(boss_client):
    key = ApiKeyFactory(name="old", scopes=["ingest_events"]).key
    assert boss_client.post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    boss_client.post(
        "/admin/accounts/apikey/", {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"}
    )
    assert ApiKey.objects.filter(pk=key.pk).exists()


@pytest.fixture
def sent_campaign(db):
    customers = [CustomerFactory(external_id=f"k{i}") for i in range(3)]
    campaign = CampaignFactory(
        name="Weekly news",
        schedule="weekly",
        title_template="Hi",
        body_template="News",
        status="running",
        launched_at=timezone.now(),
    )
    now = timezone.now()
    deliveries = [
        Delivery.objects.create(campaign=campaign, customer=c, status="sent", sent_at=now, provider_key=f"p{c.pk}")
        for c in customers
    ]
    return campaign, deliveries


@pytest.mark.parametrize("who", ["boss_client", "admin_client_role"])
def test_no_delivery_can_be_deleted_in_the_admin(request, sent_campaign, who):
    client = request.getfixturevalue(who)
    campaign, deliveries = sent_campaign
    d = deliveries[0]
    assert client.post(f"/admin/campaigns/delivery/{d.pk}/delete/", {"post": "yes"}).status_code == 403
    page = client.get("/admin/campaigns/delivery/").content.decode()
    assert "delete_selected" not in page
    client.post(
        "/admin/campaigns/delivery/",
        {"action": "delete_selected", "_selected_action": [x.pk for x in deliveries], "post": "yes"},
    )
    # nor through the campaign: a campaign that has sent is history (cancel it instead)
    assert client.post(f"/admin/campaigns/campaign/{campaign.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(
        "/admin/campaigns/campaign/", {"action": "delete_selected", "_selected_action": [campaign.pk], "post": "yes"}
    )
    # nor through the customer's page (the messages inline)
    page = client.get(f"/admin/profiles/customer/{d.customer_id}/change/").content.decode()
    assert "deliveries-0-DELETE" not in page and "delivery_set-0-DELETE" not in page
    assert Delivery.objects.filter(campaign=campaign).count() == 3 and Campaign.objects.filter(pk=campaign.pk).exists()


def test_a_draft_campaign_without_deliveries_can_still_be_deleted_and_is_audited(boss_client):
    draft = Campaign.objects.create(
        name="Idea", title_template="Hi", body_template="News", window_start=None, window_end=None
    )
    assert boss_client.post(f"/admin/campaigns/campaign/{draft.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Campaign.objects.filter(pk=draft.pk).exists()
    assert AuditEntry.objects.filter(action="campaign.deleted", target_id=str(draft.pk)).exists()
