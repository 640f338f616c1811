"""The customer page (the "360") in a real browser: the header card, the interests chart drawn, the
page within two screens, the timeline's older pages, the folded edit form still saving."""

from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone

from campaigns.models import Campaign
from pipeline import services as pipeline
from profiles import services
from profiles.models import Customer, Event, Item
from recommendations.models import Recommendation, RecommenderRun
from tests.browser.conftest import shot, sign_in
from tests.factories import SegmentFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

CATEGORIES = ["Home", "Garden", "Books", "Kitchen"]


@pytest.fixture
def busy_customer(db):
    """A customer with 45 events over three months (purchases and views in four categories), a few
    neighbours so the RFM scores mean something, a segment, suggestions and an opened email."""
    now = timezone.now()
    services.items_upsert(
        rows=pd.DataFrame(
            [
                {"external_id": f"sku{i}", "title": f"Lamp model {i}", "category": CATEGORIES[i % 4], "price": 15 + i}
                for i in range(12)
            ]
        )
    )
    rows = [
        {
            "external_id": f"e{i}",
            "customer": "ada",
            "item": f"sku{(i * 7) % 12 if i % 5 else 0}",
            "type": "purchase" if i % 4 == 0 else "view",
            "amount": 45.0 if i % 4 == 0 else None,
            "occurred_at": now - timedelta(days=2 * i, hours=3),
            "context": {"order_id": f"o{i}"} if i % 4 == 0 else {},
        }
        for i in range(45)
    ]
    rows += [
        {
            "external_id": f"n{c}-{i}",
            "customer": f"n{c}",
            "item": f"sku{(c + i) % 12}",
            "type": "purchase",
            "amount": 10.0 * (1 + c),
            "occurred_at": now - timedelta(days=c * 9 + i),
            "context": {"order_id": f"no{c}-{i}"},
        }
        for c in range(8)
        for i in range(1 + c % 3)
    ]
    services.events_ingest(rows=pd.DataFrame(rows))
    services.customers_upsert(
        rows=pd.DataFrame(
            [{"external_id": "ada", "name": "Ada Lovelace", "email": "ada@example.com", "consent_email": True}]
        )
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles"]))
    ada = Customer.objects.get(external_id="ada")
    SegmentFactory(name="Email fans", rule={"consent": "email"})
    run = RecommenderRun.objects.create(status="succeeded", is_active=True)
    Recommendation.objects.bulk_create(
        [
            Recommendation(
                run=run,
                customer=ada,
                item=Item.objects.get(external_id=f"sku{i + 3}"),
                kind="product",
                rank=i + 1,
                score=0.5 - i / 10,
                reason="item",
                reason_item=Item.objects.get(external_id="sku0"),
                reason_text="because you bought Lamp model 0",
            )
            for i in range(3)
        ]
    )
    campaign = Campaign.objects.create(
        name="Spring sale",
        channel="email",
        title_template="Hi",
        body_template="Sale",
        window_start=None,
        window_end=None,
    )
    Event.objects.create(
        customer=ada,
        type="message_opened",
        occurred_at=now - timedelta(hours=1),
        context={"campaign": campaign.pk, "delivery": 1, "channel": "email", "interaction": "opened"},
    )
    return ada


def test_customer_page_header_chart_and_timeline(page, live_server, busy_customer, operator_login):
    page.set_viewport_size({"width": 1300, "height": 900})
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/profiles/customer/{busy_customer.pk}/change/")

    # the header card, visible without scrolling, in words and formatted numbers
    card = page.locator("#customer-card")
    assert card.is_visible() and card.bounding_box()["y"] < 300
    text = card.inner_text()
    assert "Ada Lovelace" in text and busy_customer.profile.get_lifecycle_display() in text
    assert "Spend (12 months)" in text and "€" in text and "Email: yes" in text and "Email fans" in text

    # the interests chart is drawn (its canvas is not blank), its figures also in a table
    page.wait_for_selector("#interests-chart[data-drawn]")
    painted = page.evaluate("""() => { const c = document.getElementById('interests-chart');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert painted > 500
    assert page.locator("#interests-table tr").count() == 1 + len(CATEGORIES)

    # the timeline in words, newest first: the opened email, then what the customer did
    first = page.locator(".c360-event").first.inner_text()
    assert first.startswith("Opened email “Spring sale”") and "hour ago" in first
    assert page.locator(".c360-event").count() == 20
    assert "#1\nLamp model 3\nProduct · Kitchen · €18.00" in page.inner_text("#section-suggestions")
    assert "Because you bought Lamp model 0" in page.inner_text("#section-suggestions")

    # at most two screens tall at 1300×900
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= 2 * 900, height
    shot(page, "customer-page")

    # older events, a page at a time
    with page.expect_navigation():
        page.click("#timeline-pager a[rel=next]")
    assert "page=2" in page.url
    assert page.locator(".c360-event").count() == 20
    assert "Opened email" not in page.inner_text("#section-timeline")
    assert page.console_errors == []


def test_the_folded_edit_form_still_saves(page, live_server, busy_customer, operator_login):
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/profiles/customer/{busy_customer.pk}/change/")
    assert not page.locator("#id_name").is_visible()  # folded
    page.click("text=Edit name, email and consent")
    page.fill("#id_name", "Ada King")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")
    assert "Ada King" in page.inner_text("#customer-card")
    busy_customer.refresh_from_db()
    assert busy_customer.name == "Ada King"
    assert page.console_errors == []
