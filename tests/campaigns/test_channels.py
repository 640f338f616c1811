"""Email to a real SMTP server on loopback, push to a real HTTP receiver that checks the signature,
the in-app inbox and its tracking, unsubscribe, and the template sandbox."""

import pytest
from django.test import override_settings

from campaigns import services
from campaigns.models import Delivery
from campaigns.rendering import TemplateError, render
from profiles.models import Customer, Event
from segments.models import Segment
from tests.factories import OperatorFactory, client_for

from .conftest import make_campaign
from .loopback import push_receiver, smtp_server

pytestmark = pytest.mark.django_db


def everyone():
    return Segment.objects.get(name="Everyone who looked")


@pytest.fixture
def staff_api(db):
    from django.contrib.auth.models import Permission

    campaigns_perms = Permission.objects.filter(content_type__app_label="campaigns")
    return client_for(
        OperatorFactory(
            username="frontend", email="fe@example.com", permissions=[*campaigns_perms, "segments.view_segment"]
        )
    )


def test_an_email_with_the_customers_own_suggestions_arrives_and_its_link_unsubscribes(committed, shop, client):
    from recommendations.selectors import recommendations_for

    with (
        smtp_server() as (port, inbox),
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_USE_TLS=False,
            DEFAULT_FROM_EMAIL="shop@example.com",
        ),
    ):
        campaign = make_campaign(
            segments=[everyone()],
            channel="email",
            kind="products",
            recommendation_count=3,
            title_template="{{ customer.first_name }}, picked for you",
            body_template="Hi {{ customer.name }},\n{% for i in items %}- {{ i.title }}: {{ i.price }} {{ i.url "
            "}}\n{% endfor %}",
        )
        committed(services.campaign_launch, campaign=campaign)
        sent = list(Delivery.objects.filter(campaign=campaign, status="sent").select_related("customer"))
        assert sent and len(inbox.messages) == len(sent)
    by_to = {m["To"]: m for m in inbox.messages}
    d = next(x for x in sent if x.items)
    msg = by_to[d.customer.email]
    text = msg.get_body(("plain",)).get_content()
    for rec in recommendations_for(d.customer, kind="product", limit=3):
        assert rec.item.title in text
    assert msg["Subject"].startswith(d.customer.name.split()[0])
    assert msg["Message-ID"] == f"<campaign-{campaign.pk}-delivery-{d.pk}@example.com>"
    # only consenting customers were mailed
    assert all(Customer.objects.get(email=m["To"]).consent_email for m in inbox.messages)

    # the unsubscribe link records the opt-out; the next email campaign never reaches them
    link = msg["List-Unsubscribe"].strip("<>")
    path = link.split("8000", 1)[1]
    assert client.get(path).status_code == 200
    assert Customer.objects.get(pk=d.customer_id).consent_email is True  # a GET (a link preview) changes nothing
    assert client.post(path).status_code == 200
    assert Customer.objects.get(pk=d.customer_id).consent_email is False
    with (
        smtp_server() as (port, inbox2),
        override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1", EMAIL_PORT=port
        ),
    ):
        again = make_campaign(segments=[everyone()], channel="email", frequency_cap_count=100)
        committed(services.campaign_launch, campaign=again)
    assert d.customer.email not in {m["To"] for m in inbox2.messages}
    assert Delivery.objects.get(campaign=again, customer_id=d.customer_id).reason == "no_consent"


def test_push_is_signed_retried_on_5xx_and_timeouts_and_carries_an_idempotency_key(committed, shop):
    secret = "s3cret-for-tests"
    with (
        push_receiver(secret, fail_first=2) as (url, receiver),
        override_settings(CAMPAIGN_PUSH_URL=url, CAMPAIGN_PUSH_SECRET=secret, CAMPAIGN_PUSH_BACKOFF_SECONDS=0.01),
    ):
        campaign = make_campaign(segments=[everyone()], channel="push")
        committed(services.campaign_launch, campaign=campaign)
    sent = Delivery.objects.filter(campaign=campaign, status="sent")
    assert sent.count() > 0 and receiver.bad_signatures == 0
    assert set(receiver.accepted) == set(sent.values_list("provider_key", flat=True))
    assert all(n == 3 for n in receiver.requests.values())  # two 503s, then accepted
    # the wait before each retry doubles (checked on the waits asked for, not on a clock)
    waits = []
    with push_receiver(secret, fail_first=3) as (url, _):
        from campaigns.channels import Message, PushChannel

        channel = PushChannel(url, secret, backoff=0.01, max_attempts=5, concurrency=1, sleep=waits.append)
        outcome = channel.send_one(Message(**{**_message_fields(), "provider_key": "backoff-check"}))
    assert outcome.ok and outcome.attempts == 4 and waits == [0.01, 0.02, 0.04]
    assert not Delivery.objects.filter(campaign=campaign, customer__consent_push=False, status="sent").exists()

    # a timeout is retried; a wrong secret is refused by the receiver and the delivery fails
    with push_receiver(secret, slow_first=0.6) as (url, receiver):
        ch = PushChannel(url=url, secret=secret, timeout=0.3, backoff=0.01, max_attempts=3, concurrency=1)
        out = ch.send(
            [
                Message(
                    delivery_id=1,
                    provider_key="k1",
                    customer_external_id="c1",
                    email="",
                    title="t",
                    body="b",
                    campaign_id=1,
                )
            ]
        )
        assert out[0].ok and out[0].attempts == 2 and len(receiver.accepted) == 1
        bad = PushChannel(url=url, secret="wrong", backoff=0.01, concurrency=1)
        out = bad.send(
            [
                Message(
                    delivery_id=2,
                    provider_key="k2",
                    customer_external_id="c1",
                    email="",
                    title="t",
                    body="b",
                    campaign_id=1,
                )
            ]
        )
        assert not out[0].ok and out[0].attempts == 1 and receiver.bad_signatures == 1


def test_the_inbox_lists_in_app_messages_and_records_opens_and_clicks(committed, shop, staff_api):
    campaign = make_campaign(
        segments=[everyone()], kind="products", recommendation_count=2, control_percent=0, frequency_cap_count=100
    )
    committed(services.campaign_launch, campaign=campaign)
    d = Delivery.objects.filter(campaign=campaign, status="sent").exclude(items=[]).select_related("customer").first()
    ext = d.customer.external_id
    res = staff_api.get(f"/api/customers/{ext}/inbox/")
    assert res.status_code == 200
    mine = [m for m in res.json()["results"] if m["id"] == d.pk]
    assert mine and mine[0]["title"] == d.title
    assert Delivery.objects.get(pk=d.pk).delivered_at is None  # reading changes nothing (tests/campaigns/test_inbox.py)
    assert staff_api.post(f"/api/customers/{ext}/inbox/{d.pk}/opened/").status_code == 200
    from profiles.models import Item

    item = Item.objects.get(pk=d.items[0])
    res = staff_api.post(
        f"/api/customers/{ext}/inbox/{d.pk}/clicked/", {"item": item.external_id, "item_kind": item.kind}, format="json"
    )
    assert res.status_code == 200
    d.refresh_from_db()
    assert d.opened_at and d.clicked_at
    # the click is a behaviour event, once, and feeds profiles, segments and suggestions
    clicks = Event.objects.filter(customer=d.customer, type="message_clicked", context__campaign=campaign.pk)
    assert Event.objects.filter(customer=d.customer, type="message_opened", context__campaign=campaign.pk).count() == 1
    assert clicks.count() == 1 and clicks.get().item_id == item.pk
    staff_api.post(f"/api/customers/{ext}/inbox/{d.pk}/clicked/", {}, format="json")
    assert clicks.count() == 1
    assert staff_api.get("/api/customers/nobody/inbox/").status_code == 404


def test_the_api_needs_the_campaign_permissions(shop, client):
    OperatorFactory(username="plain", password="pw")
    client.login(username="plain", password="pw")
    ext = Customer.objects.first().external_id
    assert client.get(f"/api/customers/{ext}/inbox/").status_code == 403
    assert client.get(f"/api/customers/{ext}/activities/").status_code == 403


def test_the_audience_preview_counts_members_consent_and_control(shop, staff_api):
    seg = everyone()
    res = staff_api.post("/api/campaigns/audience-preview/", {"segments": [seg.pk], "channel": "email"}, format="json")
    assert res.status_code == 200
    body = res.json()
    assert body["members"] == seg.memberships.count()
    assert body["consenting"] == seg.memberships.filter(customer__consent_email=True).count()


@pytest.mark.parametrize(
    "source",
    [
        "{{ settings.SECRET_KEY }}",
        "{% load static %}{% static 'x' %}",
        "{% include 'admin/base.html' %}",
        "{% debug %}",
        "{% url 'admin:index' %}",
        "{{ customer.clear }}{{ items.pop }}{{ customer.name }}",
        "{{ campaign.__class__ }}{{ customer.items }}",
    ],
)
def test_templates_cannot_reach_settings_the_database_or_side_effects(source):
    from django.conf import settings

    context = {
        "customer": {"name": "Ada", "email": "ada@example.com"},
        "items": [{"title": "Tea"}],
        "campaign": {"name": "x"},
    }
    try:
        out = render(source, context)
    except TemplateError:
        return
    assert settings.SECRET_KEY not in out and "admin" not in out and "sys.modules" not in out and "<class" not in out
    assert "Tea" not in out.replace("Ada", "")  # no dict/list method was called to reveal or change data
    assert context["customer"] == {"name": "Ada", "email": "ada@example.com"} and context["items"] == [{"title": "Tea"}]


def _message_fields() -> dict:
    return {
        "delivery_id": 0,
        "provider_key": "",
        "customer_external_id": "c-backoff",
        "email": "c@example.com",
        "title": "Hello",
        "body": "A message",
        "campaign_id": 0,
    }
