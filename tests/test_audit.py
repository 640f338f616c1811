"""The audit log: each operator action shows up with who, what and when, whichever way it was done."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEntry
from campaigns.models import Campaign
from profiles import services
from profiles.models import Customer
from segments.models import Segment
from tests.factories import MARKETING_OPERATOR, ApiKeyFactory, CustomerRow, EventRow, OperatorFactory, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def shoppers(db):
    now = timezone.now()
    ingest(
        customers=[CustomerRow(external_id=f"a{i}", name=f"Ann {i}", email=f"ann{i}@example.com") for i in range(12)],
        source="import",
    )
    ingest(
        events=[
            EventRow(
                external_id=f"ae{i}",
                customer=f"a{i % 12}",
                item=f"sku{i % 5}",
                view=True,
                occurred_at=now - timedelta(hours=i),
            )
            for i in range(60)
        ]
    )
    AuditEntry.objects.all().delete()  # the setup's own consent entry is not what these tests look at


def entries(action: str):
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_a_segment_created_changed_and_deleted_in_the_admin_is_logged_with_its_changes(boss_client, shoppers):
    resp = boss_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Browsers",
            "description": "",
            "kind": "rule",
            "rule": '{"event": {"type": "view", "min_count": 2}}',
            "active": "on",
        },
    )
    assert resp.status_code == 302
    segment = Segment.objects.get(name="Browsers")
    resp = boss_client.post(
        f"/admin/segments/segment/{segment.pk}/change/",
        {
            "name": "Keen browsers",
            "description": "",
            "rule": '{"event": {"type": "view", "min_count": 5}}',
            "active": "on",
        },
    )
    assert resp.status_code == 302
    boss_client.post(f"/admin/segments/segment/{segment.pk}/delete/", {"post": "yes"})
    assert not Segment.objects.filter(pk=segment.pk).exists()

    (created,) = entries("segment.created")
    assert (created.actor.username, created.actor_label, created.source, created.target_id) == (
        "boss",
        "boss",
        "admin",
        str(segment.pk),
    )
    assert created.changes["rule"] == {"event": {"type": "view", "min_count": 2}} and created.ip == "127.0.0.1"
    (changed,) = entries("segment.changed")
    assert changed.changes == {"name": "Keen browsers", "rule": {"event": {"type": "view", "min_count": 5}}}
    (deleted,) = entries("segment.deleted")
    assert deleted.target_label == "Keen browsers" and deleted.target_id == str(segment.pk)


def _segment():
    from segments.rules import refresh_rule_memberships

    segment = Segment.objects.create(name="Everyone", kind="rule", rule={"event": {"type": "view", "min_count": 1}})
    refresh_rule_memberships(segment)
    return segment


def test_campaign_launch_pause_and_cancel_are_logged_from_the_admin_and_the_shell(boss_client, shoppers):
    campaign = Campaign.objects.create(
        name="Spring", title_template="Hi", body_template="News", control_percent=0, window_start=None, window_end=None
    )
    campaign.segments.set([_segment()])
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert boss_client.post(f"/admin/campaigns/campaign/{campaign.pk}/do/launch/").status_code == 302
    assert boss_client.post(f"/admin/campaigns/campaign/{campaign.pk}/do/pause/").status_code == 302
    call_command("campaign", "cancel", str(campaign.pk), stdout=StringIO())

    log = [
        (e.action, e.actor_label, e.source, e.changes["from"], e.changes["to"])
        for e in AuditEntry.objects.filter(target_type="campaigns.campaign", target_id=str(campaign.pk)).order_by("id")
    ]
    assert log[0] == ("campaign.launched", "boss", "admin", "draft", "running")
    assert log[1] == ("campaign.paused", "boss", "admin", "running", "paused")
    assert log[2][0] == "campaign.cancelled" and log[2][1].startswith("shell") and log[2][2] == "shell"
    assert len(log) == 3


def test_forgetting_a_customer_is_logged_under_the_pseudonym_not_the_person(shoppers, boss):
    call_command("forget_customer", "a1", stdout=StringIO())
    issued = ApiKeyFactory(scopes=["manage_customers"])
    key = issued.secret
    assert issued.client().delete("/api/customers/a2/").status_code == 200

    shell, by_key = entries("customer.forgotten")
    forgotten = Customer.objects.get(pk=shell.target_id)
    assert shell.source == "shell" and shell.actor_label.startswith("shell")
    assert shell.target_label == forgotten.external_id and shell.target_label.startswith("forgotten-")
    assert shell.changes["removed"]["events"] == 5
    assert by_key.source == "api" and by_key.actor_label == f"api-key:{key.split('.')[0]}" and by_key.actor is None
    text = str(list(AuditEntry.objects.values()))
    assert "Ann 1" not in text and "ann1@example.com" not in text and '"a1"' not in text


def test_consent_changes_are_logged_once_per_batch_with_counts_per_channel(shoppers, operator):
    api = APIClient()
    api.force_authenticate(operator)
    rows = [{"external_id": f"a{i}", "consent_email": True} for i in range(4)] + [
        {"external_id": "a5", "consent_in_app": False}
    ]
    assert api.post("/api/customers/", rows, format="json").status_code == 201
    (entry,) = entries("consent.changed")
    assert entry.actor == operator and entry.source == "api" and entry.target_label == "5 customers"
    assert entry.changes == {
        "channels": {"email": {"granted": 4, "withdrawn": 0}, "in_app": {"granted": 0, "withdrawn": 1}}
    }

    customer = Customer.objects.get(external_id="a7")
    services.customer_consent_set(customer=customer, source="admin", user=operator, consent_push=True)
    last = entries("consent.changed")[-1]
    assert (last.target_id, last.target_label, last.changes) == (
        str(customer.pk),
        "a7",
        {"channels": {"push": {"granted": 1, "withdrawn": 0}}},
    )


def test_api_keys_and_recomputations_started_in_the_admin_are_logged(boss_client, shoppers):
    resp = boss_client.post("/admin/accounts/apikey/add/", {"name": "shop backend", "scopes": ["ingest_events"]})
    assert resp.status_code == 302
    key = ApiKey.objects.get(name="shop backend")
    boss_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    with TestCase.captureOnCommitCallbacks(execute=True):
        boss_client.post("/admin/pipeline/pipelinerun/start/", {"steps": ["profiles"]})

    (created,) = entries("api_key.created")
    assert (
        created.changes == {"scopes": ["ingest_events"]}
        and created.target_id == str(key.pk)
        and created.actor_label == "boss"
    )
    assert entries("api_key.revoked")[0].target_id == str(key.pk)
    (started,) = entries("pipeline.started")
    assert started.changes == {"steps": ["profiles"], "incremental": False}


def test_the_audit_log_page_lists_entries_for_administrators_only_and_cannot_be_edited(boss_client, shoppers, client):
    call_command("forget_customer", "a3", stdout=StringIO())
    entry = AuditEntry.objects.get(action="customer.forgotten")
    html = boss_client.get("/admin/accounts/auditentry/?action=customer.forgotten").content.decode()
    assert "Customer forgotten" in html and entry.target_label in html
    assert boss_client.get(f"/admin/accounts/auditentry/{entry.pk}/change/").status_code == 200  # read-only view
    assert boss_client.post(f"/admin/accounts/auditentry/{entry.pk}/change/", {"action": "x"}).status_code == 403
    assert boss_client.post(f"/admin/accounts/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk, action="customer.forgotten").exists()

    client.force_login(OperatorFactory(username="mia", role=MARKETING_OPERATOR))
    assert client.get("/admin/accounts/auditentry/").status_code == 403
    admin_group = Group.objects.get(name="Administrator")
    assert admin_group.permissions.filter(codename="view_auditentry").exists()
    assert not Permission.objects.filter(group__name="Analyst", codename="view_auditentry").exists()


def test_sign_ins_and_refused_sign_ins_are_logged(client):
    OperatorFactory(username="ops", password="right-pw-123")
    client.post("/admin/login/?next=/admin/", {"username": "ops", "password": "wrong"})
    client.post("/admin/login/?next=/admin/", {"username": "ops", "password": "right-pw-123"})
    (failed,) = entries("auth.login_failed")
    (ok,) = entries("auth.login")
    assert failed.actor_label == "ops" and failed.source == "admin" and failed.actor is None
    assert ok.actor.username == "ops" and ok.ip == "127.0.0.1"


def _form_as_a_browser_posts_it(html: str) -> dict:
    """The change form's fields as a browser submits them: inputs, ticked boxes, textareas, selects."""
    from html.parser import HTMLParser

    class Form(HTMLParser):
        def __init__(self):
            super().__init__()
            self.data, self.textarea, self.select = {}, None, None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button", "file"):
                if a.get("type") in ("checkbox", "radio"):
                    if "checked" in a:
                        self.data[a["name"]] = a.get("value", "on")
                else:
                    self.data[a["name"]] = a.get("value", "")
            elif tag == "textarea" and a.get("name"):
                self.textarea = a["name"]
                self.data[self.textarea] = ""
            elif tag == "select" and a.get("name"):
                self.select = a["name"]
            elif tag == "option" and self.select and "selected" in a:
                self.data[self.select] = a.get("value", "")

        def handle_endtag(self, tag):
            if tag == "textarea":
                self.textarea = None
            elif tag == "select":
                self.select = None

        def handle_data(self, text):
            if self.textarea:
                self.data[self.textarea] += text

    parser = Form()
    parser.feed(html)
    return parser.data


def test_an_operator_editing_a_customer_is_logged_without_copying_personal_data(boss_client, shoppers):
    customer = Customer.objects.get(external_id="a4")
    html = boss_client.get(f"/admin/profiles/customer/{customer.pk}/change/").content.decode()
    data = _form_as_a_browser_posts_it(html)
    data.update({"name": "Ann Renamed", "email": "renamed@example.com", "consent_email": "on"})
    assert boss_client.post(f"/admin/profiles/customer/{customer.pk}/change/", data).status_code == 302

    (changed,) = entries("customer.changed")
    assert (changed.actor_label, changed.target_id, changed.target_label) == ("boss", str(customer.pk), "a4")
    assert changed.changes == {"name": "(changed)", "email": "(changed)"}
    (consent,) = entries("consent.changed")
    assert consent.changes == {"channels": {"email": {"granted": 1, "withdrawn": 0}}}
    text = str(list(AuditEntry.objects.values()))
    assert "Renamed" not in text and "renamed@example.com" not in text and "Ann 4" not in text
    # saving the page unchanged logs nothing
    html = boss_client.get(f"/admin/profiles/customer/{customer.pk}/change/").content.decode()
    assert (
        boss_client.post(
            f"/admin/profiles/customer/{customer.pk}/change/", _form_as_a_browser_posts_it(html)
        ).status_code
        == 302
    )
    assert len(entries("customer.changed")) == 1


@pytest.mark.django_db
def test_behind_trusted_proxies_the_audit_log_records_the_clients_address_not_the_proxys(client, settings):
    """Behind nginx every request comes from the proxy: the entry must name the address the proxy forwarded."""
    from django.contrib.auth.models import User

    from accounts.models import AuditEntry

    settings.TRUSTED_PROXY_COUNT = 1
    User.objects.create_user("eve", password="not-the-password")
    client.post(
        "/admin/login/?next=/admin/",
        {"username": "eve", "password": "wrong"},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="10.9.8.7, 203.0.113.5",
    )
    entry = AuditEntry.objects.get(action="auth.login_failed")
    assert entry.ip == "203.0.113.5"
