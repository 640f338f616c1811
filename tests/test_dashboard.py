"""The operator dashboard: figures from the stored runs, charts fed, no query that grows with the data."""

import re
from datetime import timedelta
from html import unescape

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import services as campaign_services
from campaigns.models import Campaign, Delivery
from campaigns.stats import two_proportion
from common import display
from pipeline import services as pipeline
from profiles import services
from tests.factories import CampaignFactory, CustomerRow, EventRow, SegmentFactory, UserFactory, ingest

pytestmark = pytest.mark.django_db


def _shop(n, start=0):
    now = timezone.now()
    services.events_ingest(
        rows=pd.DataFrame(
            [
                {
                    "external_id": f"d{start + i}",
                    "customer": f"c{(start + i) % (n // 3 + 1)}",
                    "item": f"sku{i % 7}",
                    "type": "purchase" if i % 3 == 0 else "view",
                    "amount": 12.0 if i % 3 == 0 else None,
                    "occurred_at": now - timedelta(days=i % 60),
                    "context": {"order_id": f"o{start + i}"} if i % 3 == 0 else {},
                }
                for i in range(n)
            ]
        )
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments"]))


def test_dashboard_shows_the_platform_at_a_glance(admin_client):
    _shop(300)
    resp = admin_client.get("/admin/dashboard/")
    assert resp.status_code == 200
    figures = resp.context["figures"]
    assert figures["customers"] == 101 and figures["events_30d"] == 150
    charts = resp.context["charts"]
    assert sum(charts["segments"]["sizes"]) == 101
    assert charts["elbow"]["chosen_k"] in charts["elbow"]["ks"]
    html = resp.content.decode()
    assert "chart.umd.min.js" in html and "Pipeline runs" in html
    assert "Open the dashboard" in admin_client.get("/admin/").content.decode()


def test_dashboard_queries_do_not_grow_with_the_data_and_never_count_events(admin_client):
    _shop(120)
    with CaptureQueriesContext(connection) as small:
        admin_client.get("/admin/dashboard/")
    _shop(900, start=1000)
    with CaptureQueriesContext(connection) as large:
        admin_client.get("/admin/dashboard/")
    assert len(large.captured_queries) == len(small.captured_queries)
    assert not any("profiles_event" in q["sql"] for q in large.captured_queries)


def test_dashboard_is_for_staff_only(client):
    assert client.get("/admin/dashboard/").status_code == 302  # to the login page
    client.force_login(UserFactory(username="shopper"))
    assert client.get("/admin/dashboard/").status_code == 302


# --- issue #14: recent campaigns with their uplift in words, quality in words ---------------------


def _audience(prefix: str, n: int):
    ingest(customers=[CustomerRow(external_id=f"{prefix}{i}") for i in range(n)])
    return SegmentFactory(name=f"{prefix} audience", rule={"consent": "in_app"})


def _converted(campaign, *, treated: int, control: int):
    """Back-date the sends three days and have the first `treated` sent and `control` held-out customers buy
    the day after; attribution (the scheduler's job) counts them. Returns the test's four counts as attributed
    (a customer in several audiences converts for each campaign whose window holds the purchase)."""
    back = timezone.now() - timedelta(days=3)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=back)
    Delivery.objects.filter(campaign=campaign, status="sent").update(sent_at=back)
    sent = list(Delivery.objects.filter(campaign=campaign, status="sent").order_by("id"))
    held = list(Delivery.objects.filter(campaign=campaign, is_control=True).order_by("id"))
    buyers = [d.customer.external_id for d in sent[:treated] + held[:control]]
    ingest(
        events=[
            EventRow(
                external_id=f"buy-{campaign.pk}-{who}",
                customer=who,
                item="boots",
                purchase=True,
                occurred_at=back + timedelta(days=1),
            )
            for who in buyers
        ]
    )
    campaign_services.campaigns_attribute(campaign_ids=[campaign.pk])
    rows = Delivery.objects.filter(campaign=campaign, converted_at__isnull=False)
    return rows.filter(status="sent").count(), len(sent), rows.filter(is_control=True).count(), len(held)


def _rows(html: str) -> list[str]:
    body = html.split('id="dash-campaigns"', 1)[1].split("</table>", 1)[0]
    return [unescape(" ".join(re.sub(r"<[^>]+>", " ", row).split())) for row in body.split("<tr>")[2:]]


def test_recent_campaigns_list_running_and_recently_completed_ones_with_their_uplift_in_words(admin_client, committed):
    audience = _audience("rc", 400)
    winter = CampaignFactory(name="Winter boots <b>sale</b>", segments=[audience], control_percent=50, channel="in_app")
    committed(campaign_services.campaign_launch, campaign=winter)
    counts = _converted(winter, treated=80, control=10)
    assert counts[0] == 80 and counts[2] == 10
    flat = CampaignFactory(name="Newsletter", segments=[audience], control_percent=50)
    committed(campaign_services.campaign_launch, campaign=flat)
    flat_counts = _converted(flat, treated=20, control=20)
    campaign_services.campaigns_tick()  # both fully sent: completed
    going = CampaignFactory(name="Spring preview", segments=[audience], control_percent=10)
    campaign_services.campaign_launch(campaign=going)  # its sends are queued, not done
    old = CampaignFactory(name="Last summer", segments=[audience])
    committed(campaign_services.campaign_launch, campaign=old)
    campaign_services.campaigns_tick()
    Campaign.objects.filter(pk=old.pk).update(completed_at=timezone.now() - timedelta(days=40))
    CampaignFactory(name="Draft idea", segments=[audience])

    html = admin_client.get("/admin/dashboard/").content.decode()
    rows = _rows(html)

    assert [r.split(" In-app inbox")[0] for r in rows] == ["Spring preview", "Newsletter", "Winter boots <b>sale</b>"]
    assert "Winter boots &lt;b&gt;sale&lt;/b&gt;" in html  # a name is text, never markup
    assert f'href="/admin/campaigns/campaign/{winter.pk}/change/"' in html
    spring, newsletter, boots = rows
    assert "Running:" in spring and "messages still to send" in spring and "no message sent" in spring
    test = two_proportion(*counts)
    assert "Completed" in boots and display.number(counts[1]) in boots
    assert f"{display.percent(80 / counts[1])} / {display.percent(10 / counts[3])}" in boots
    lo, hi = test["uplift_abs_ci"]
    assert f"{display.points(test['uplift_abs'])} 95% CI {display.points(lo)} to {display.points(hi)}" in boots
    assert boots.endswith(f"significant ({display.p_value(test['p_value'])})") and "not significant" not in boots
    flat_test = two_proportion(*flat_counts)
    assert newsletter.endswith(f"not significant ({display.p_value(flat_test['p_value'])})")
    assert "conversions counted" in boots and "conversions not counted yet" in spring
    assert "0.1394" not in html and "Last summer" not in html and "Draft idea" not in html
    # no scheduler in tests: the page says why a finished campaign would stay "running"
    assert "the scheduler (Celery beat) is not running" in html and "make run-worker" in html


def test_a_running_campaign_whose_messages_are_all_sent_says_when_it_completes(admin_client, committed):
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    audience = _audience("ts", 30)
    done = CampaignFactory(name="All out", segments=[audience])
    committed(campaign_services.campaign_launch, campaign=done)
    html = admin_client.get("/admin/dashboard/").content.decode()
    assert "Nothing left to send: stays “running” until the scheduler (Celery beat) runs" in _rows(html)[0]

    PeriodicTask.objects.create(
        name="campaigns-tick",
        task="campaigns.tasks.campaigns_tick",
        crontab=CrontabSchedule.objects.create(minute="*"),
        last_run_at=timezone.now() - timedelta(minutes=2),
    )
    html = admin_client.get("/admin/dashboard/").content.decode()
    assert "Nothing left to send: marked completed at the scheduler's next tick" in _rows(html)[0]
    assert 'id="dash-scheduler"' not in html


def test_recent_campaigns_cost_the_same_queries_for_one_campaign_or_several(admin_client, committed):
    audience = _audience("qc", 40)
    committed(campaign_services.campaign_launch, campaign=CampaignFactory(segments=[audience]))
    with CaptureQueriesContext(connection) as one:
        admin_client.get("/admin/dashboard/")
    for _ in range(4):
        committed(campaign_services.campaign_launch, campaign=CampaignFactory(segments=[audience]))
    with CaptureQueriesContext(connection) as five:
        html = admin_client.get("/admin/dashboard/").content.decode()
    assert len(_rows(html)) == 5
    assert len(five.captured_queries) == len(one.captured_queries)


def test_model_quality_is_read_in_words_with_its_figures(admin_client):
    from recommendations.models import RecommenderRun

    _shop(300)
    RecommenderRun.objects.create(
        status="succeeded",
        ndcg_at_10=0.146,
        precision_at_10=0.0412,
        coverage=0.375,
        metrics={"product": {"default": {"ndcg@10": 0.146}, "popularity": {"ndcg@10": 0.081}}},
    )
    resp = admin_client.get("/admin/dashboard/")
    html = resp.content.decode()
    assert (
        "Suggestions: 1.8× better than best-sellers at predicting what customers turn to next "
        "(NDCG@10 0.146 vs 0.081); precision@10 4.1%, catalogue coverage 37.5%." in html
    )
    clustering = resp.context["clustering"]
    value = clustering.silhouette[clustering.ks.index(clustering.chosen_k)]
    assert f"(silhouette {value:.2f}, {clustering.chosen_k} segments)" in html
    assert resp.context["charts"]["recommender"]["precision"] == [4.1]  # percent on the chart too


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0.74, "strongly separated"),
        (0.41, "distinct but overlapping"),
        (0.55, "clearly separated"),
        (0.1, "barely separated: read them as broad groups"),
    ],
)
def test_silhouette_thresholds(value, words):
    from types import SimpleNamespace

    from config.dashboard import segments_words

    run = SimpleNamespace(ks=[2, 3, 4], silhouette=[0.2, value, 0.3], chosen_k=3)
    assert segments_words(run) == f"Segments: {words} (silhouette {value:.2f}, 3 segments)"


@pytest.mark.parametrize(
    ("ndcg", "baseline", "reading"),
    [
        (0.146, 0.081, "1.8× better than best-sellers"),
        (0.085, 0.081, "about as good as best-sellers"),
        (0.04, 0.081, "worse than best-sellers (0.49×): check the data or the model"),
    ],
)
def test_suggestions_are_compared_with_best_sellers(ndcg, baseline, reading):
    from types import SimpleNamespace

    from config.dashboard import recommender_words

    run = SimpleNamespace(ndcg_at_10=ndcg, metrics={"product": {"popularity": {"ndcg@10": baseline}}})
    assert recommender_words(run).startswith(f"Suggestions: {reading} at predicting")
