"""The message template sandbox: an allow-list, bounded output and work, failures per delivery (issue #12, finding 7).

What the attack found: `{% querystring %}` passed validation, then 500ed the campaign page and the
launch and failed the campaign tick every minute; nested loops over `ljust:"1000"` took 43 s to
preview; `ljust:"50000000"` built 50 MB. Now only listed tags and filters compile, a message
stops at CAMPAIGN_MESSAGE_MAX_CHARS characters and CAMPAIGN_TEMPLATE_MAX_STEPS render steps, and
a message that fails to render fails its own delivery, with the reason, and nothing else.
"""

import pytest
from django.test import TestCase

from campaigns import services
from campaigns.models import Campaign, Delivery
from campaigns.rendering import ALLOWED_FILTERS, ALLOWED_TAGS, TemplateError, render, validate_template
from campaigns.selectors import campaign_report
from profiles.models import Customer
from segments.models import Segment
from tests.factories import OperatorFactory

from .conftest import make_campaign

pytestmark = pytest.mark.django_db

CONTEXT = {
    "customer": {
        "external_id": "c1",
        "name": "Ada Lovelace",
        "first_name": "Ada",
        "email": "ada@example.com",
        "attributes": {"persona": "bookworm", "tags": ["tea", "maths"]},
        "profile": {"lifecycle": "at-risk", "orders_total": 3, "monetary": "125.50", "recency_days": 40.0},
    },
    "items": [
        {"title": f"Book {i}", "price": f"{10 + i}.00", "url": f"https://shop.example/p/{i}", "category": "Books"}
        for i in range(20)
    ],
    "activity": None,
    "campaign": {"id": 1, "name": "Autumn", "goal": "win back"},
}

REALISTIC = """{% comment %}the autumn win-back{% endcomment %}{% spaceless %}
Hi {{ customer.first_name|default:"there"|capfirst }},
{% with n=items|length %}{% if n %}{{ n }} pick{{ n|pluralize }} for you{% else %}Nothing new{% endif %}{% endwith %}:
{% for i in items|slice:":3" %}{{ forloop.counter }}. {{ i.title|truncatechars:40 }} ({{ i.price|floatformat:2 }}) {{ i.url }}
{% empty %}-{% endfor %}
{% firstof customer.attributes.persona "reader" %} · {{ customer.attributes.tags|join:", "|upper }} · {{ customer.profile.lifecycle|title }}
{{ customer.profile.orders_total|yesno:"Welcome back,Welcome" }} · {% now "Y" %}
{% endspaceless %}"""


def everyone():
    return Segment.objects.get(name="Everyone who looked")


# ------------------------------------------------------------------------------------------ the allow-list
def test_querystring_is_refused_at_validation_naming_the_tag():
    with pytest.raises(TemplateError) as caught:
        validate_template("{% querystring page=2 %}")
    message = str(caught.value)
    assert "'querystring'" in message and "not allowed" in message and "if, for" in message


@pytest.mark.parametrize(
    "source, name",
    [
        ('{{ customer.name|ljust:"50000000" }}', "ljust"),
        ('{{ customer.name|rjust:"1000" }}', "rjust"),
        ('{{ customer.name|center:"1000" }}', "center"),
        ('{{ customer.name|stringformat:"50000000s" }}', "stringformat"),
        ("{{ customer.name|safe }}", "safe"),
        ("{{ customer.name|add:customer.name }}", "add"),
        ("{{ customer.name|make_list|join:customer.name }}", "make_list"),
        ("{{ customer.name|urlize }}", "urlize"),
        ("{% autoescape off %}{{ customer.name }}{% endautoescape %}", "autoescape"),
        ("{% widthratio 1 1 100000000000 %}", "widthratio"),
        ("{% cycle 'a' 'b' %}", "cycle"),
        ("{% lorem 10000 w %}", "lorem"),
        ("{% debug %}", "debug"),
        ("{% load static %}", "load"),
    ],
)
def test_anything_not_on_the_list_is_refused_naming_it(source, name):
    with pytest.raises(TemplateError) as caught:
        validate_template(source)
    assert f"'{name}'" in str(caught.value)


def test_the_listed_tags_and_filters_write_a_realistic_message():
    out = render(REALISTIC, CONTEXT)
    assert "Hi Ada," in out and "20 picks for you" in out
    assert "1. Book 0 (10.00) https://shop.example/p/0" in out and "3. Book 2" in out and "Book 3" not in out
    assert "bookworm · TEA, MATHS · At-Risk" in out and "Welcome back" in out
    assert "the autumn" not in out
    assert {"if", "for", "with", "firstof", "comment", "now", "spaceless"} <= ALLOWED_TAGS
    assert not ALLOWED_FILTERS & {"safe", "ljust", "rjust", "center", "stringformat", "add", "make_list"}


def test_the_admin_form_refuses_querystring_next_to_the_field(committed, shop, admin_client):
    res = admin_client.post(
        "/admin/campaigns/campaign/add/",
        {
            "name": "Paged",
            "goal": "",
            "kind": "message",
            "channel": "in_app",
            "segments": [everyone().pk],
            "control_percent": 10,
            "title_template": "Hi",
            "body_template": "{% querystring %}",
            "recommendation_kind": "product",
            "recommendation_count": 3,
            "schedule": "now",
            "goal_event_type": "purchase",
            "attribution_days": 7,
            "status_changes-TOTAL_FORMS": 0,
            "status_changes-INITIAL_FORMS": 0,
            "variants-TOTAL_FORMS": 0,
            "variants-INITIAL_FORMS": 0,
        },
    )
    assert res.status_code == 200
    errors = res.context["adminform"].form.errors["body_template"]
    assert any("querystring" in e and "not allowed" in e for e in errors), errors
    assert not Campaign.objects.filter(name="Paged").exists()


# ------------------------------------------------------------------------------------------ bounded work
def test_ljust_50000000_is_refused_and_a_huge_output_stops_at_the_cap(settings):
    with pytest.raises(TemplateError, match="'ljust'"):
        render('{{ customer.name|ljust:"50000000" }}', CONTEXT)
    # The same size reached with listed pieces: 20 × 20 × 400 characters = 160,000 > 65,536.
    long_note = {**CONTEXT, "customer": {**CONTEXT["customer"], "attributes": {"note": "n" * 400}}}
    source = "{% for a in items %}{% for b in items %}{{ customer.attributes.note }}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError) as caught:
        render(source, long_note)
    assert "longer than 65,536 characters" in str(caught.value) and "CAMPAIGN_MESSAGE_MAX_CHARS" in str(caught.value)
    settings.CAMPAIGN_MESSAGE_MAX_CHARS = 200_000
    assert len(render(source, long_note)) == 160_000


def test_a_value_grown_past_the_cap_inside_an_expression_is_stopped_there(settings):
    settings.CAMPAIGN_MESSAGE_MAX_CHARS = 1000
    big = {**CONTEXT, "customer": {**CONTEXT["customer"], "attributes": {"tags": ["x" * 100] * 20}}}
    with pytest.raises(TemplateError, match="longer than 1,000 characters"):
        render("{% with t=customer.attributes.tags|join:'-' %}{% endwith %}ok", big)


def test_nested_loops_are_stopped_by_the_step_budget():
    source = (
        "{% for a in items %}{% for b in items %}{% for c in items %}{% for d in items %}"
        "{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
    )  # 20^4 = 160,000 iterations, no output
    with pytest.raises(TemplateError) as caught:
        render(source, CONTEXT)
    assert "more than 20,000 render steps" in str(caught.value) and "CAMPAIGN_TEMPLATE_MAX_STEPS" in str(caught.value)
    # The reported attack (nested loops over a padded string) does not even compile.
    with pytest.raises(TemplateError, match="'ljust'"):
        validate_template('{% for a in x|ljust:"1000" %}{% for b in x|ljust:"1000" %}.{% endfor %}{% endfor %}')
    # Two nested loops over the suggestions (400 steps plus their output) are fine.
    assert render("{% for a in items %}{% for b in items %}.{% endfor %}{% endfor %}", CONTEXT) == "." * 400


# ------------------------------------------------------------------------------------------ failures per delivery
def test_a_render_failure_fails_that_delivery_with_its_reason_and_the_others_go_out(committed, shop):
    # `first` of a mapping raises: the shop sent `tags` as an object for a few customers.
    odd = list(
        Customer.objects.filter(memberships__segment=everyone(), consent_in_app=True)
        .order_by("id")
        .values_list("id", flat=True)[:5]
    )
    Customer.objects.filter(id__in=odd).update(attributes={"tags": {"colour": "red"}})
    Customer.objects.exclude(id__in=odd).update(attributes={"tags": ["tea"]})
    campaign = make_campaign(
        segments=[everyone()],
        name="Tags",
        body_template="Your tag: {{ customer.attributes.tags|first }}",
        control_percent=0,
        frequency_cap_count=1000,
    )
    committed(services.campaign_launch, campaign=campaign)
    failed = Delivery.objects.filter(campaign=campaign, status="failed")
    assert set(failed.values_list("customer_id", flat=True)) == set(odd)
    assert all(
        e.startswith("The message could not be rendered: ") and "KeyError" in e
        for e in failed.values_list("error", flat=True)
    )
    sent = Delivery.objects.filter(campaign=campaign, status="sent")
    assert sent.count() > 100 and set(sent.values_list("body", flat=True)) == {"Your tag: tea"}
    # The tick goes on and completes the campaign: nothing is left open.
    out = services.campaigns_tick()
    assert out["completed"] >= 1
    assert Campaign.objects.get(pk=campaign.pk).status == "completed"
    report = campaign_report(campaign)
    assert report["failed"] == 5 and report["pending"] == 0


def test_a_message_over_the_cap_fails_only_its_own_delivery(committed, shop, settings):
    settings.CAMPAIGN_MESSAGE_MAX_CHARS = 2000
    chatty = list(
        Customer.objects.filter(memberships__segment=everyone(), consent_in_app=True)
        .order_by("-id")
        .values_list("id", flat=True)[:3]
    )
    Customer.objects.filter(id__in=chatty).update(attributes={"bio": "b" * 5000})
    Customer.objects.exclude(id__in=chatty).update(attributes={"bio": "short"})
    campaign = make_campaign(
        segments=[everyone()],
        name="Bios",
        body_template="About you: {{ customer.attributes.bio }}",
        control_percent=0,
        frequency_cap_count=1000,
    )
    committed(services.campaign_launch, campaign=campaign)
    failed = Delivery.objects.filter(campaign=campaign, status="failed")
    assert set(failed.values_list("customer_id", flat=True)) == set(chatty)
    assert all("longer than 2,000 characters" in e for e in failed.values_list("error", flat=True))
    assert Delivery.objects.filter(campaign=campaign, status="sent", body="About you: short").count() > 100


def test_a_campaign_saved_with_querystring_is_refused_at_launch_and_never_breaks_the_tick(
    committed, shop, admin_client
):
    from django.utils import timezone

    # Saved before the allow-list existed (or behind the form's back).
    bad = make_campaign(segments=[everyone()], name="Paged", body_template="Page {% querystring page=2 %}")
    good = make_campaign(segments=[everyone()], name="Fine", frequency_cap_count=1000)
    # The campaign page answers, with the reason where the preview would be.
    page = admin_client.get(f"/admin/campaigns/campaign/{bad.pk}/change/")
    assert page.status_code == 200
    assert "querystring" in page.context["message_preview_error"]
    # The launch is refused with a clear message; nothing is queued, the campaign stays a draft.
    with TestCase.captureOnCommitCallbacks(execute=True):
        res = admin_client.post(f"/admin/campaigns/campaign/{bad.pk}/do/launch/", follow=True)
    shown = [str(m) for m in res.context["messages"]]
    assert any("Body template" in m and "querystring" in m for m in shown), shown
    assert Campaign.objects.get(pk=bad.pk).status == "draft" and not Delivery.objects.filter(campaign=bad).exists()
    # Scheduled (before the check existed): the tick launches the good one and sends the bad one back to draft.
    past = timezone.now()
    Campaign.objects.filter(pk__in=[bad.pk, good.pk]).update(status="scheduled", schedule="at", send_at=past)
    with TestCase.captureOnCommitCallbacks(execute=True):
        out = services.campaigns_tick()
    assert out["launched"] == 1 and out["refused"] == 1
    bad.refresh_from_db()
    assert bad.status == "draft" and "querystring" in bad.status_changes.order_by("-at", "-id").first().note
    assert Campaign.objects.get(pk=good.pk).status in ("running", "completed")
    assert Delivery.objects.filter(campaign=good, status="sent").exists()


def test_the_campaign_page_shows_a_render_error_for_the_sample_instead_of_a_500(shop, client):
    client.force_login(
        OperatorFactory(
            username="editor",
            permissions=["campaigns.view_campaign", "campaigns.change_campaign", "segments.view_segment"],
        )
    )
    sample = Customer.objects.filter(memberships__segment=everyone()).order_by("id").first()
    Customer.objects.filter(pk=sample.pk).update(attributes={"tags": {"colour": "red"}})
    campaign = make_campaign(segments=[everyone()], name="Tags", body_template="{{ customer.attributes.tags|first }}")
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/?sample={sample.external_id}")
    assert page.status_code == 200
    assert "could not be rendered" in page.context["message_preview_error"]
    assert "could not be rendered" in page.content.decode()
