"""Attribution, the report's statistics on simulated conversions, the activities endpoint, and the operator screens."""

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Delivery
from campaigns.selectors import campaign_report
from campaigns.stats import two_proportion
from profiles.models import Item
from profiles.services import events_ingest
from segments.models import Segment
from tests.factories import OperatorFactory, UserFactory

from .conftest import make_campaign

pytestmark = pytest.mark.django_db


def everyone():
    return Segment.objects.get(name="Everyone who looked")


def test_the_two_proportion_test_matches_a_hand_computation():
    r = two_proportion(300, 1000, 100, 1000)
    assert r["uplift_abs"] == pytest.approx(0.2)
    se = np.sqrt(0.3 * 0.7 / 1000 + 0.1 * 0.9 / 1000)
    assert r["uplift_abs_ci"] == pytest.approx([0.2 - 1.959964 * se, 0.2 + 1.959964 * se], rel=1e-5)
    # the p-value comes from the interval's own (unpooled) statistic
    assert r["z"] == pytest.approx(0.2 / se) and r["p_value"] < 1e-20
    assert r["uplift_rel"] == pytest.approx(2.0)
    assert two_proportion(50, 500, 5, 50)["p_value"] == pytest.approx(1.0)
    assert two_proportion(0, 0, 1, 10)["uplift_abs"] is None


def test_the_reports_interval_and_p_value_agree_where_the_pooled_test_disagreed():
    # 30 of 785 recipients against 1 of 138 held out: the Wald interval excludes 0 while the pooled
    # z-test the report used to give said p = 0.063; now both come from one statistic
    r = two_proportion(30, 785, 1, 138)
    lo, hi = r["uplift_abs_ci"]
    pooled = 31 / 923
    pooled_z = r["uplift_abs"] / math.sqrt(pooled * (1 - pooled) * (1 / 785 + 1 / 138))
    pooled_p = math.erfc(abs(pooled_z) / math.sqrt(2))
    assert lo > 0 and pooled_p > 0.05  # the old disagreement
    assert r["p_value"] < 0.05 and r["significant"] is True
    # and on many random reports: significant exactly when the interval excludes 0
    rng = np.random.default_rng(5)
    for _ in range(500):
        n_t, n_c = int(rng.integers(30, 3_000)), int(rng.integers(10, 400))
        r = two_proportion(int(rng.binomial(n_t, 0.05)), n_t, int(rng.binomial(n_c, 0.03)), n_c)
        lo, hi = r["uplift_abs_ci"]
        assert r["significant"] == (lo > 0 or hi < 0)


def _simulate(committed, *, p_treated: float, p_control: float, seed: int):
    from profiles.services import items_upsert

    # the goal is limited to a category only the simulation buys from (the demo's own purchases would count otherwise)
    items_upsert(
        rows=pd.DataFrame(
            [
                {
                    "kind": "product",
                    "external_id": f"sim-{seed}",
                    "title": "Simulated",
                    "category": "Simulated",
                    "price": 20.0,
                }
            ]
        )
    )
    campaign = make_campaign(
        segments=[everyone()],
        name=f"sim {seed}",
        # a control group large enough that its conversions never come to zero, whichever ids the
        # customers got (the control share is a hash of the id: at 10% it held ~45 customers, and on
        # some id ranges none of them converted, so the relative uplift had no interval)
        control_percent=30,
        frequency_cap_count=1000,
        attribution_days=7,
        goal_category="Simulated",
    )
    committed(services.campaign_launch, campaign=campaign)
    back = timezone.now() - timedelta(days=3)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=back)
    Delivery.objects.filter(campaign=campaign, status="sent").update(sent_at=back)
    rows = pd.DataFrame.from_records(
        Delivery.objects.filter(campaign=campaign)
        .exclude(reason="no_consent")
        .values("customer__external_id", "is_control")
    )
    rng = np.random.default_rng(seed)
    p = np.where(rows["is_control"], p_control, p_treated)
    buyers = rows[rng.random(len(rows)) < p]
    product = Item.objects.get(kind="product", external_id=f"sim-{seed}")
    events = pd.DataFrame(
        {
            "external_id": [f"sim{seed}-{c}" for c in buyers["customer__external_id"]],
            "customer": buyers["customer__external_id"].to_numpy(),
            "item_kind": "product",
            "item": product.external_id,
            "type": "purchase",
            "value": 1.0,
            "amount": 20.0,
            "occurred_at": back + timedelta(days=1),
            "context": [{"order_id": f"sim{seed}-{c}"} for c in buyers["customer__external_id"]],
        }
    )
    # a purchase outside the window counts for nobody
    late = events.head(5).assign(external_id=lambda f: f["external_id"] + "-late", occurred_at=back - timedelta(days=1))
    events_ingest(rows=pd.concat([events, late], ignore_index=True))
    services.campaigns_attribute(campaign_ids=[campaign.pk])
    return campaign, campaign_report(Campaign.objects.get(pk=campaign.pk)), buyers


def test_when_treated_customers_convert_more_the_uplift_is_positive_and_significant(committed, shop, client):
    campaign, report, buyers = _simulate(committed, p_treated=0.35, p_control=0.08, seed=1)
    c = report["conversion"]
    assert c["treated_conversions"] + c["control_conversions"] == len(buyers)
    assert c["uplift_abs"] > 0 and c["uplift_abs_ci"][0] > 0 and c["p_value"] < 0.05 and c["significant"]
    assert c["uplift_rel_ci"][0] > 0
    assert report["attributed_revenue"] == f"{20.0 * c['treated_conversions']:.2f}"
    assert report["control"] == c["control_n"] and report["sent"] == c["treated_n"]
    assert report["suppressed"]["control"] == report["control"]

    # the same report from the API and in the admin, with its two charts
    client.force_login(UserFactory(username="boss", superuser=True))
    res = client.get(f"/api/campaigns/{campaign.pk}/report/")
    assert res.status_code == 200 and res.json()["conversion"]["p_value"] == pytest.approx(c["p_value"])
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="funnel-chart"' in html and 'id="uplift-chart"' in html and "chart.umd.min.js" in html


def test_when_treated_customers_do_not_convert_more_the_interval_covers_zero(committed, shop):
    _, report, _ = _simulate(committed, p_treated=0.2, p_control=0.2, seed=2)
    lo, hi = report["conversion"]["uplift_abs_ci"]
    assert lo < 0 < hi and report["conversion"]["p_value"] > 0.05


def test_activities_lists_the_running_promotions_a_customer_may_join_best_first(committed, shop, client):
    from recommendations.models import Recommendation

    second = (
        Recommendation.objects.filter(
            run__is_active=True, kind="activity", rank=2, customer__memberships__segment=everyone()
        )
        .order_by("customer_id")
        .first()
    )
    customer = second.customer
    customer.consent_in_app = True
    customer.save()
    recs = list(
        Recommendation.objects.filter(run__is_active=True, kind="activity", customer=customer).order_by("rank")[:2]
    )
    seg = everyone()
    a = make_campaign(segments=[seg], name="second", kind="activity", promoted_item=recs[1].item, control_percent=0)
    b = make_campaign(segments=[seg], name="first", kind="activity", promoted_item=recs[0].item, control_percent=0)
    held = make_campaign(
        segments=[seg], name="held out", kind="activity", promoted_item=recs[0].item, control_percent=100
    )
    draft = make_campaign(segments=[seg], name="draft", kind="activity", promoted_item=recs[0].item, control_percent=0)
    for c in (a, b, held):
        c.status = "running"
        c.save()
    client.force_login(OperatorFactory(username="fe", permissions=["campaigns.view_campaign"]))
    res = client.get(f"/api/customers/{customer.external_id}/activities/")
    assert res.status_code == 200
    names = [r["campaign_name"] for r in res.json()["results"]]
    assert names == ["first", "second"], names  # ranked by the recommender's score; no control, no draft
    assert res.json()["results"][0]["score"] >= res.json()["results"][1]["score"]
    customer.consent_in_app = False
    customer.save()
    assert client.get(f"/api/customers/{customer.external_id}/activities/").json()["results"] == []
    del draft


def test_operators_need_the_permission_to_launch_and_can_preview_and_send_a_test(
    committed, shop, client, django_user_model
):
    from django.core import mail

    user = OperatorFactory(
        username="editor",
        permissions=[  # the test mail goes to editor@example.com
            "campaigns.view_campaign",
            "campaigns.add_campaign",
            "campaigns.change_campaign",
            "segments.view_segment",
        ],
    )
    client.force_login(user)
    seg = everyone()
    res = client.post(
        "/admin/campaigns/campaign/add/",
        {
            "name": "Autumn",
            "goal": "",
            "kind": "message",
            "channel": "in_app",
            "segments": [seg.pk],
            "control_percent": 10,
            "title_template": "Hi {{ customer.first_name }}",
            "body_template": "{% for i in items %}{{ i.title }}{% endfor %}",
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
    assert res.status_code == 302, res.content.decode()[:3000]
    campaign = Campaign.objects.get(name="Autumn")
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    html = page.content.decode()
    assert "Message preview" in html and "audience-size" in html
    sample = services.audience_queryset(segment_ids=[seg.pk]).order_by("id").first()
    assert f"Hi {sample.name.split()[0]}" in html
    # a bad template is refused with its reason
    res = client.post(
        "/admin/campaigns/campaign/add/",
        {
            "name": "Bad",
            "kind": "message",
            "channel": "in_app",
            "segments": [seg.pk],
            "control_percent": 10,
            "title_template": "{% load static %}",
            "body_template": "x",
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
    assert res.status_code == 200 and "Template error" in res.content.decode()
    # without the permission the launch is refused; with it, it runs
    assert client.post(f"/admin/campaigns/campaign/{campaign.pk}/do/launch/").status_code == 403
    res = client.post("/admin/campaigns/campaign/", {"action": "launch_selected", "_selected_action": [campaign.pk]})
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"
    user.user_permissions.add(*Permission.objects.filter(codename__in=["launch_campaign", "send_test_campaign"]))
    user = django_user_model.objects.get(pk=user.pk)
    client.force_login(user)
    res = client.post(f"/admin/campaigns/campaign/{campaign.pk}/send-test/", {"sample": sample.external_id})
    assert res.status_code == 302 and len(mail.outbox) == 1 and mail.outbox[0].to == ["editor@example.com"]
    assert mail.outbox[0].subject.startswith("[TEST] Hi ")
    assert not Delivery.objects.filter(campaign=campaign).exists()
    with __import__("django.test", fromlist=["x"]).TestCase.captureOnCommitCallbacks(execute=True):
        assert client.post(f"/admin/campaigns/campaign/{campaign.pk}/do/launch/").status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "running" and campaign.status_changes.get().by_id == user.pk
    assert Delivery.objects.filter(campaign=campaign, status="sent").exists()
    assert client.get("/admin/campaigns/campaign/").status_code == 200
    assert client.get("/admin/campaigns/campaign/add/").status_code == 200


# --- the report as the operator reads it (issue #14) ----------------------------------------------


def _report_text(html: str) -> str:
    """The report section's text, tags stripped and spaces collapsed (what the operator reads)."""
    import html as html_lib
    import re

    section = re.search(r'<section class="module" id="campaign-report".*?</section>', html, re.S).group(0)
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", section))).strip()


def _funnel(html: str) -> list[tuple[str, str, str, str]]:
    import re

    rows = re.findall(
        r'<tr data-step="(\w+)"><th>\w+</th><td class="count"[^>]*>([^<]*)</td>'
        r'<td class="of-previous"[^>]*>([^<]*)</td><td class="of-sent"[^>]*>([^<]*)</td></tr>',
        html,
    )
    return rows


def _page(client, campaign) -> str:
    res = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert res.status_code == 200
    return res.content.decode()


def test_a_campaign_that_works_reads_significant_with_its_conversions_apart_from_the_funnel(committed, boss_client):
    from common.display import money, number, p_value, percent
    from tests.campaigns.reporting import reported_campaign

    anna = OperatorFactory(username="anna")
    campaign = reported_campaign(prefix="sig", p_treated=0.3, p_control=0.05, seed=1, by=anna, launch=committed)
    report = campaign_report(campaign)
    c = report["conversion"]
    assert c["significant"]  # the simulation converts the recipients six times as often
    html = _page(boss_client, campaign)
    text = _report_text(html)

    # the funnel: sent → delivered → opened → clicked, counts and percentages, never increasing
    funnel = _funnel(html)
    assert [r[0] for r in funnel] == ["sent", "delivered", "opened", "clicked"]
    counts = [int(r[1].replace(",", "")) for r in funnel]
    assert counts[0] == report["sent"] and counts == sorted(counts, reverse=True) and counts[-1] > 0
    assert funnel[0][3] == "100.0%"
    assert funnel[2][2] == percent(counts[2] / counts[1]) and funnel[3][3] == percent(counts[3] / counts[0])

    # conversions apart, with their window, against the control group; the uplift in words
    assert (
        f"{number(c['treated_conversions'])} conversions within 7 days of the message — "
        f"{percent(c['treated_rate'])} of recipients, against {percent(c['control_rate'])} in the control group"
    ) in text
    assert f"significant ({p_value(c['p_value'])})" in text and "not significant" not in text
    assert "95% confidence interval" in text and "relative to the control group" in text
    assert f"Revenue: {money(report['attributed_revenue'])} from recipients" in text
    # reasons in words: every tenth customer gave no in-app consent
    assert "40 — no consent for in-app messages" in text and "no_consent" not in text
    # no fraction left for the operator to read as a rate
    import re

    assert not re.search(r"(?<!< )\b0\.\d{3,}\b", text), text

    # the uplift chart gets one estimate and its interval (in percentage points), drawn as one error bar
    chart = re.search(r'<script id="campaign-chart-data" type="application/json">(.*?)</script>', html, re.S)
    import json

    uplift = json.loads(chart.group(1))["uplift"]
    assert uplift["low"] < uplift["point"] < uplift["high"] and uplift["low"] > 0
    assert uplift["point"] == pytest.approx(c["uplift_abs"] * 100)

    # status history in words
    assert "Launched by anna · " in html and "StatusChange object" not in html and "object (" not in html


def test_a_campaign_that_changes_nothing_reads_not_significant_with_its_p_value(committed, boss_client):
    from common.display import p_value
    from tests.campaigns.reporting import reported_campaign

    campaign = reported_campaign(prefix="flat", p_treated=0.1, p_control=0.1, seed=8, launch=committed)
    c = campaign_report(campaign)["conversion"]
    assert c["treated_conversions"] and c["control_conversions"] and not c["significant"]
    text = _report_text(_page(boss_client, campaign))
    assert f"not significant ({p_value(c['p_value'])})" in text
    lo, hi = c["uplift_abs_ci"]
    assert lo < 0 < hi  # the interval crosses zero, which is what "not significant" means here


def test_before_any_conversion_the_report_says_uplift_cannot_be_measured(committed, boss_client):
    from tests.campaigns.reporting import reported_campaign

    campaign = reported_campaign(prefix="new", n=120, p_treated=0, p_control=0, seed=3, launch=committed)
    html = _page(boss_client, campaign)
    text = _report_text(html)
    assert "No conversions yet within 7 days of the message" in text
    assert "No conversions yet — uplift cannot be measured" in text
    assert "[, ]" not in text and "None" not in text and 'id="uplift-chart"' not in html


def test_the_funnel_never_increases_even_when_a_click_is_tracked_without_its_open(committed, boss_client):
    from campaigns.selectors import campaign_funnel
    from tests.campaigns.reporting import reported_campaign

    campaign = reported_campaign(
        prefix="px", n=100, p_treated=0.5, p_control=0.05, seed=4, shown=0.2, opened=0.1, launch=committed
    )
    # clicks tracked while the open (and the delivery receipt) never came, as with an email whose images
    # were blocked; and more conversions than clicks: conversions stand apart from the funnel
    untouched = Delivery.objects.filter(campaign=campaign, status="sent", delivered_at__isnull=True)
    clicked_only = list(untouched.values_list("id", flat=True)[:30])
    Delivery.objects.filter(id__in=clicked_only).update(clicked_at=timezone.now())
    steps = campaign_funnel(campaign)
    counts = [s["count"] for s in steps]
    assert counts == sorted(counts, reverse=True) and counts[3] >= 30
    assert all(s["of_previous"] is None or s["of_previous"] <= 1 for s in steps)
    html = _page(boss_client, campaign)
    assert [int(r[1]) for r in _funnel(html)] == counts
    assert "Converted" not in [r[0] for r in _funnel(html)]


def test_every_suppression_reason_has_words():
    from campaigns.models import SuppressReason
    from campaigns.selectors import suppression_words
    from tests.factories import CampaignFactory

    email = CampaignFactory.build(channel="email", frequency_cap_count=None, frequency_cap_days=None)
    push = CampaignFactory.build(channel="push", frequency_cap_count=1, frequency_cap_days=1)
    assert suppression_words(email, "no_consent") == "no consent for email"
    assert suppression_words(push, "no_consent") == "no consent for push notifications"
    assert suppression_words(email, "frequency_cap") == "frequency cap: 3 messages in 7 days"  # the defaults
    assert suppression_words(push, "frequency_cap") == "frequency cap: 1 message in 1 day"
    assert suppression_words(email, "no_address") == "no email address"
    for code in [*SuppressReason.values, "quiet_hours_deferred"]:
        words = suppression_words(email, code)
        assert words and "_" not in words


def test_a_frequency_capped_campaign_names_its_cap_on_the_report(committed, boss_client):
    from tests.campaigns.reporting import reported_campaign

    first = reported_campaign(prefix="fc", n=60, p_treated=0, p_control=0, seed=5, launch=committed)
    second = make_campaign(segments=list(first.segments.all()), name="Second", control_percent=0, frequency_cap_count=1)
    second.window_start = second.window_end = None
    second.save()
    committed(services.campaign_launch, campaign=second)
    capped = Delivery.objects.filter(campaign=second, reason="frequency_cap").count()
    assert capped == Delivery.objects.filter(campaign=first, status="sent").count() > 0
    text = _report_text(_page(boss_client, second))
    assert f"{capped} — frequency cap: 1 message in 7 days" in text


def test_deliveries_mark_only_the_control_group_and_say_what_became_of_each_message(committed, boss_client):
    import re

    from tests.campaigns.reporting import reported_campaign

    campaign = reported_campaign(prefix="dl", n=60, p_treated=0.5, p_control=0.5, seed=6, launch=committed)
    html = boss_client.get(f"/admin/campaigns/delivery/?campaign__id__exact={campaign.pk}").content.decode()
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]
    assert rows
    held_out = Delivery.objects.filter(campaign=campaign, is_control=True).count()
    assert html.count('<td class="field-group">Control group</td>') == held_out > 0
    assert "icon-no.svg" not in html and "icon-yes.svg" not in html  # no red cross for every recipient
    assert "Not sent: no consent for in-app messages" in html and "Held out (not sent)" in html
    assert re.search(r"Converted \d+ \w{3} \d\d:\d\d \(€20\.00\)|Shown.* · converted", html)
    # no internal ids as captions
    one = Delivery.objects.filter(campaign=campaign, status="sent").first()
    page = boss_client.get(f"/admin/campaigns/delivery/{one.pk}/change/").content.decode()
    assert f"delivery {one.pk}" not in page and f"Message of “{campaign.name}”" in page


def test_the_form_follows_the_operators_order_and_folds_the_advanced_settings(boss_client):
    import re

    html = boss_client.get("/admin/campaigns/campaign/add/").content.decode()
    headings = re.findall(r'<h2 id="fieldset-[^"]*"[^>]*>(.*?)</h2>', html)
    headings = headings or re.findall(r"<fieldset[^>]*>.*?<h2[^>]*>(.*?)</h2>", html, re.S)
    names = [re.sub(r"<[^>]+>", "", h).strip() for h in headings]
    advanced_name = "Advanced: sending window, frequency cap and conversion goal"
    assert names[:5] == ["What", "Who", "When", "Channel and message", advanced_name]
    advanced = html[html.index(advanced_name) - 400 :]
    assert "<details" in advanced and "id_goal_event_type" in advanced and "id_segments" not in advanced
    assert "id_window_start" in advanced and "id_window_start" not in html[: html.index(advanced_name)]
    assert 'id="audience-size"' in html


def test_the_status_history_reads_as_sentences(committed, boss_client):
    from campaigns.selectors import campaign_status_history
    from tests.factories import CampaignFactory, CustomerRow, SegmentFactory, ingest

    ingest(customers=[CustomerRow(external_id=f"sh{i}") for i in range(5)])
    anna = OperatorFactory(username="anna")
    campaign = CampaignFactory(name="History", segments=[SegmentFactory(name="Everyone in the app")])
    committed(services.campaign_launch, campaign=campaign, by=anna)
    services.campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk), by=anna)
    committed(services.campaign_resume, campaign=Campaign.objects.get(pk=campaign.pk), by=anna)
    services.campaign_cancel(campaign=Campaign.objects.get(pk=campaign.pk))
    texts = [row["text"].split(" · ")[0] for row in campaign_status_history(campaign)]
    assert texts == ["Launched by anna", "Paused by anna", "Resumed by anna", "Cancelled"]
    html = _page(boss_client, campaign)
    assert "Launched by anna · " in html and "Cancelled · " in html and "object (" not in html
