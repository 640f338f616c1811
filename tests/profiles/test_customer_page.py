"""The customer page (the "360"): a header card in words and formatted numbers, the timeline in words
and pages, suggestions as cards with their reason, escaped names, the sections each permission allows,
and a query count that does not grow with the customer's history."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common import display
from profiles import services
from profiles.models import Customer, Event, Item
from recommendations.models import Recommendation, RecommenderRun
from tests.factories import CampaignFactory, CustomerRow, EventRow, OperatorFactory, SegmentFactory, ingest
from tests.test_security_xss import assert_page_is_inert

pytestmark = pytest.mark.django_db


def _text(resp) -> str:
    """The page as an operator reads it: tags gone, entities decoded, spaces collapsed."""
    import html as htmllib

    body = resp.content.decode()
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", body)))


def _signed_in(*permissions):
    client = Client()
    client.force_login(OperatorFactory(permissions=list(permissions)))
    return client


def _url(customer, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/admin/profiles/customer/{customer.pk}/change/" + (f"?{q}" if q else "")


@pytest.fixture
def ada(db):
    """A buyer: three orders over two months, a view yesterday, consent given for email only."""
    now = timezone.now()
    ingest(customers=[CustomerRow(external_id="ada", name="Ada Lovelace", email="ada@example.com", consent_email=True)])
    services.items_upsert(
        rows=__import__("pandas").DataFrame(
            [
                {"external_id": "lamp3", "title": "Lamp model 3", "category": "Home", "price": 45},
                {"external_id": "rose", "title": "Rose bush", "category": "Garden", "price": 12.5},
            ]
        )
    )
    ingest(
        events=[
            EventRow(
                external_id="a1",
                customer="ada",
                item="rose",
                purchase=True,
                amount=12.5,
                occurred_at=now - timedelta(days=60),
                context={"order_id": "o1"},
            ),
            EventRow(
                external_id="a2",
                customer="ada",
                item="rose",
                purchase=True,
                amount=25.0,
                occurred_at=now - timedelta(days=20),
                context={"order_id": "o2"},
            ),
            EventRow(
                external_id="a3",
                customer="ada",
                item="lamp3",
                purchase=True,
                amount=45.0,
                occurred_at=now - timedelta(days=8, hours=9),
                context={"order_id": "o3"},
            ),
            EventRow(
                external_id="a4", customer="ada", item="lamp3", view=True, occurred_at=now - timedelta(days=1, hours=2)
            ),
        ]
    )
    services.profiles_compute()
    return Customer.objects.get(external_id="ada")


def test_the_header_card_speaks_in_words_and_formatted_numbers(boss_client, ada):
    resp = boss_client.get(_url(ada))
    text = _text(resp)
    assert "Ada Lovelace" in text and "ada@example.com" in text
    assert "Last purchase 8 days ago" in text  # recency in days, not 8.352184472233796
    assert "Orders (12 months) 3" in text and "Orders (all time) 3" in text
    assert "Spend (12 months) €82.50" in text and "Average order €27.50" in text
    assert "Last seen" in text and "1 day ago" in text
    assert re.search(r"RFM R\d · F\d · M\d", text)
    assert ada.profile.get_lifecycle_display() in text
    # consent by channel in words; a channel nobody ever stated is unknown, with what it is treated as
    assert "In-app: yes" in text and "Email: yes" in text and "Push: unknown (treated as no)" in text
    # no raw floats, no Django captions, no internal ids as captions
    assert not re.search(r"\d\.\d{4,}", text)
    assert "object (" not in text and "profile of" not in text and f"by {ada.pk} at" not in text
    # the edit form is still there, folded
    assert '<details class="c360-edit" id="customer-edit">' in resp.content.decode()
    assert 'name="email"' in resp.content.decode()


def test_segments_show_as_chips_linking_to_the_segment(boss_client, ada):
    segment = SegmentFactory(name="Email fans", rule={"consent": "email"})
    html = boss_client.get(_url(ada)).content.decode()
    assert re.search(
        rf'<a class="c360-chip" href="/admin/segments/segment/{segment.pk}/change/"[^>]*>Email fans</a>', html
    )


def test_the_timeline_tells_events_and_messages_in_words_newest_first(boss_client, ada):
    campaign = CampaignFactory(name="Spring sale", channel="email")
    lamp = Item.objects.get(external_id="lamp3")
    Event.objects.create(
        customer=ada,
        item=lamp,
        type="message_opened",
        occurred_at=timezone.now() - timedelta(hours=3),
        context={"campaign": campaign.pk, "delivery": 1, "channel": "email", "interaction": "opened"},
    )
    text = _text(boss_client.get(_url(ada)))
    lines = [
        "Opened email “Spring sale” · 3 hours ago",
        "Viewed Lamp model 3 (Home) · 1 day ago",
        "Bought Lamp model 3 (Home) for €45.00 · 8 days ago",
        "Bought Rose bush (Garden) for €25.00 · 2 weeks ago",
        "Bought Rose bush (Garden) for €12.50 · ",  # about two months ago
    ]
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions)
    assert "purchase by" not in text


def test_the_timeline_pages_twenty_at_a_time(boss_client, ada):
    now = timezone.now()
    ingest(
        events=[
            EventRow(
                external_id=f"p{i}", customer="ada", item="rose", view=True, occurred_at=now - timedelta(minutes=5 + i)
            )
            for i in range(41)
        ]
    )
    first = boss_client.get(_url(ada))
    assert first.content.decode().count('class="c360-event ') == 20
    assert 'href="?page=2#section-timeline" rel="next">Older →' in first.content.decode()
    assert "Newer" not in _text(first)
    last = boss_client.get(_url(ada, page=3))
    html = last.content.decode()
    # 45 events: 20, 20, then the last 5, the oldest purchase last
    assert html.count('class="c360-event ') == 5 and "Older →" not in html
    assert 'href="?page=2#section-timeline" rel="prev">← Newer' in html
    assert _text(last).rstrip().count("Bought Rose bush (Garden) for €12.50") == 1
    assert "Nothing older." in _text(boss_client.get(_url(ada, page=9)))
    assert boss_client.get(_url(ada, page="x")).status_code == 200  # a bad page number is the first page


def test_suggestions_are_cards_with_their_reason_and_no_scores(boss_client, ada):
    run = RecommenderRun.objects.create(status="succeeded", is_active=True)
    lamp, rose = Item.objects.get(external_id="lamp3"), Item.objects.get(external_id="rose")
    Recommendation.objects.bulk_create(
        [
            Recommendation(
                run=run,
                customer=ada,
                item=lamp,
                kind="product",
                rank=1,
                score=-0.123456,
                reason="item",
                reason_item=rose,
                reason_text="because you bought Rose bush",
            ),
            Recommendation(
                run=run,
                customer=ada,
                item=rose,
                kind="product",
                rank=2,
                score=-0.654321,
                reason="segment_popular",
                reason_text="popular in your segment",
            ),
        ]
    )
    resp = boss_client.get(_url(ada))
    text = _text(resp)
    cards = text[text.index("Suggestions") :]
    assert "#1 Lamp model 3 Product · Home · €45.00 Because you bought Rose bush" in cards
    assert "#2 Rose bush Product · Garden · €12.50 Popular in your segment" in cards
    assert "0.123456" not in text and "-0.65" not in text


def test_names_and_titles_are_escaped(boss_client):
    payload = "<script>window.__pwned=1</script>"
    ingest(customers=[CustomerRow(external_id="evil", name=payload)])
    services.items_upsert(
        rows=__import__("pandas").DataFrame([{"external_id": "x", "title": payload, "category": payload, "price": 1}])
    )
    ingest(events=[EventRow(external_id="e1", customer="evil", item="x", purchase=True, amount=1.0)])
    services.profiles_compute()
    customer = Customer.objects.get(external_id="evil")
    resp = boss_client.get(_url(customer))
    html = assert_page_is_inert(resp)
    assert payload not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    # the interests reach the chart through a JSON island, escaped, and read back intact
    assert '<script id="interests-data" type="application/json">' in html
    assert "\\u003Cscript\\u003Ewindow.__pwned=1" in html


def test_each_section_needs_the_permission_its_old_inline_needed(ada):
    run = RecommenderRun.objects.create(status="succeeded", is_active=True)
    Recommendation.objects.create(
        run=run,
        customer=ada,
        item=Item.objects.get(external_id="lamp3"),
        kind="product",
        rank=1,
        score=1.0,
        reason="popular",
        reason_text="popular right now",
    )
    SegmentFactory(name="Email fans", rule={"consent": "email"})
    url = _url(ada)

    nobody = _signed_in("view_event")
    assert nobody.get(url).status_code == 403  # the page itself needs the customer's permission

    reader = _signed_in("view_customer")
    text = _text(reader.get(url))
    assert "Ada Lovelace" in text and "Email: yes" in text
    assert "Timeline" not in text and "Bought" not in text
    assert "Suggestions" not in text and "Email fans" not in text and "Interests" not in text
    assert "Last purchase" not in text  # the profile's figures need view_profile

    full = _signed_in(
        "view_customer",
        "view_event",
        "view_profile",
        "view_recommendation",
        "view_membership",
    )
    text = _text(full.get(url))
    assert "Bought Lamp model 3" in text and "Popular right now" in text and "Email fans" in text
    assert "Last purchase 8 days ago" in text
    # without view_segment the chip is a name, not a link
    assert 'class="c360-chip" href=' not in full.get(url).content.decode()


def test_the_page_runs_the_same_queries_for_a_busy_customer(boss_client, ada):
    boss_client.get(_url(ada))  # warms the per-process memories (permissions, the running experiment)
    with CaptureQueriesContext(connection) as few:
        boss_client.get(_url(ada))
    now = timezone.now()
    ingest(
        events=[
            EventRow(
                external_id=f"b{i}", customer="ada", item="rose", view=True, occurred_at=now - timedelta(minutes=i)
            )
            for i in range(300)
        ]
    )
    SegmentFactory(name="More", rule={"consent": "email"})
    with CaptureQueriesContext(connection) as many:
        boss_client.get(_url(ada))
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_pager_keeps_the_way_back_to_the_list(boss_client, ada):
    now = timezone.now()
    ingest(
        events=[
            EventRow(
                external_id=f"k{i}", customer="ada", item="rose", view=True, occurred_at=now - timedelta(minutes=i)
            )
            for i in range(25)
        ]
    )
    html = boss_client.get(_url(ada, _changelist_filters="q%3Dada")).content.decode()
    assert 'href="?_changelist_filters=q%3Dada&amp;page=2#section-timeline" rel="next"' in html


def test_a_customer_with_nothing_yet_and_the_add_page(boss_client):
    ingest(customers=[CustomerRow(external_id="fresh", name="", email="")])
    customer = Customer.objects.get(external_id="fresh")
    text = _text(boss_client.get(_url(customer)))
    assert "fresh" in text and "No profile yet" in text and "No events yet." in text
    assert "No suggestions yet" in text and "in no segment" in text
    add = boss_client.get("/admin/profiles/customer/add/")
    assert add.status_code == 200 and "customer-card" not in add.content.decode()
    assert 'name="external_id"' in add.content.decode()


def test_a_rating_reads_with_its_value():
    from profiles.customer_page import describe_event

    lamp = Item(external_id="sku9", title="Desk lamp", category="Home")
    assert describe_event(Event(type="rating", item=lamp, value=4.0)) == "Rated Desk lamp (Home): 4"
    assert describe_event(Event(type="rating", item=lamp, value=3.5)) == "Rated Desk lamp (Home): 3.5"
    assert describe_event(Event(type="rating", item=lamp, value=None)) == "Rated Desk lamp (Home)"


@pytest.fixture
def crowd(ada):
    """Ada among forty buyers (most of them back several times) and Bea, who never bought: enough to fit."""
    now = timezone.now()
    names = [f"buyer{i}" for i in range(40)]
    ingest(customers=[CustomerRow(external_id=n) for n in names] + [CustomerRow(external_id="bea", name="Bea")])
    ingest(
        events=[
            EventRow(
                external_id=f"p{i}",
                customer=names[i % 40],
                item="rose",
                purchase=True,
                amount=10.0 + i % 7,
                occurred_at=now - timedelta(days=(i * 37) % 300, hours=i % 24),
                context={"order_id": f"p{i}"},
            )
            for i in range(160)
        ]
        + [EventRow(external_id="bea-view", customer="bea", item="lamp3", view=True)]
    )
    services.profiles_compute()
    ada.refresh_from_db()
    return ada, Customer.objects.get(external_id="bea")


def test_predictions_show_over_their_horizon_in_words(boss_client, crowd):
    ada, bea = crowd
    profile = ada.profile
    assert profile.prediction_basis == "model"
    text = _text(boss_client.get(_url(ada)))
    assert "Predictions Over the next 90 days after" in text
    assert f"Chance still a buyer {display.percent(profile.p_alive, 0)}" in text
    assert f"Expected orders in the next 90 days {display.number(profile.predicted_orders, 1)}" in text
    assert f"Expected spend in the next 90 days {display.money(profile.predicted_value)}" in text
    assert f"Churn risk {display.percent(profile.churn_risk, 0)}" in text
    if profile.next_order_at:
        local = timezone.localtime(profile.next_order_at)
        assert f"Next order by {local.day} {local:%b %Y}" in text
    else:
        assert "Next order not expected soon" in text
    assert "from the population" not in text
    assert not re.search(r"\d\.\d{4,}", text)

    # Bea never bought: the population's figures, said so, and no invented chance or date
    text = _text(boss_client.get(_url(bea)))
    assert "from the population (too little history)" in text
    assert "Chance still a buyer not a buyer yet" in text and "Next order none yet" in text
    assert f"Expected orders in the next 90 days {display.number(bea.profile.predicted_orders, 1)}" in text


def test_category_affinity_shows_the_likeliest_categories_first_as_escaped_text(boss_client, ada):
    from profiles.models import Profile

    Profile.objects.filter(pk=ada.pk).update(
        affinity={"Garden": 0.31, "<b>Toys</b>": 0.52, "Grocery": 0.05, "Beauty": 0.2, "Books": 0.1}
    )
    resp = boss_client.get(_url(ada))
    html, text = resp.content.decode(), _text(resp)
    # the four likeliest, in order, as percentages; the operator's category names are text, not markup
    assert "Likely to buy from: <b>Toys</b> 52% · Garden 31% · Beauty 20% · Books 10%" in text
    assert "&lt;b&gt;Toys&lt;/b&gt;" in html and "<b>Toys</b>" not in html and "Grocery 5%" not in text


def test_predictions_say_when_there_are_none_and_need_the_profile_permission(boss_client, ada):
    # Ada alone is too few buyers to fit a model
    assert "No predictions: the last recomputation had too few buyers" in _text(boss_client.get(_url(ada)))
    assert "Predictions" not in _text(_signed_in("view_customer").get(_url(ada)))
