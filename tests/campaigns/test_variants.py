"""Message variants within one campaign: the split, the deliveries, the analysis and the winner send
(issue #17). Customers come in through the services, messages are opened and clicked through the
tracking services, purchases are ingested as events and attributed, as in production."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import AuditEntry
from campaigns import services
from campaigns.models import Campaign, CampaignVariant, Delivery, StatusChange
from campaigns.selectors import campaign_report, campaign_status_history, variant_report
from experiments.stats import assign
from profiles.services import events_ingest
from segments.rules import refresh_rule_memberships
from tests.factories import CampaignFactory, CustomerRow, EventRow, ItemFactory, SegmentFactory, UserFactory, ingest

pytestmark = pytest.mark.django_db


def population(prefix: str, n: int):
    """`n` customers with in-app consent who looked at this population's jacket, and their segment."""
    from profiles.models import Item

    if not Item.objects.filter(external_id=f"{prefix}-sku").exists():
        ItemFactory(external_id=f"{prefix}-sku", title="Jacket", category=f"{prefix} jackets", price="20.00")
    ids = [f"{prefix}{i}" for i in range(n)]
    ingest(
        customers=[CustomerRow(external_id=c) for c in ids],
        events=[EventRow(external_id=f"{c}-view", customer=c, item=f"{prefix}-sku", type="view") for c in ids],
    )
    return SegmentFactory(
        name=f"{prefix} looked", rule={"event": {"type": "view", "category": f"{prefix} jackets", "min_count": 1}}
    )


def variant_campaign(prefix: str, segment, *, shares=(50, 50), b_title="B: Hello {{ customer.first_name }}", **fields):
    from profiles.models import Item

    if not Item.objects.filter(external_id=f"{prefix}-sku").exists():
        ItemFactory(external_id=f"{prefix}-sku", title="Jacket", category=f"{prefix} jackets", price="20.00")
    campaign = CampaignFactory(
        name=f"{prefix} spring",
        segments=[segment],
        control_percent=10,
        goal_category=f"{prefix} jackets",
        attribution_days=7,
        frequency_cap_count=1000,
        **fields,
    )
    labels = "ABCDE"
    for i, share in enumerate(shares):
        CampaignVariant.objects.create(
            campaign=campaign,
            label=labels[i],
            # A keeps the campaign's own templates (empty); the others have their own title
            title_template="" if i == 0 else b_title.replace("B:", f"{labels[i]}:"),
            body_template="" if i == 0 else f"Variant {labels[i]} body",
            share=share,
        )
    return campaign


def simulate(campaign, *, p: dict, seed: int, opened: float = 0.2, clicked: float = 0.3):
    """Back-date the sends three days; open and click a share of the messages through the tracking
    service; each recipient of variant L buys with probability p[L] a day after; attribute."""
    back = timezone.now() - timedelta(days=3)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=back)
    Delivery.objects.filter(campaign=campaign, status="sent").update(sent_at=back)
    rng = np.random.default_rng(seed)
    sent = list(Delivery.objects.filter(campaign=campaign, status="sent").select_related("campaign", "customer"))
    for d in sent:
        if rng.random() < opened:
            services.delivery_track(
                delivery=d, what="clicked" if rng.random() < clicked else "opened", now=back + timedelta(hours=1)
            )
    labels = dict(CampaignVariant.objects.filter(campaign=campaign).values_list("id", "label"))
    buyers = [d.customer.external_id for d in sent if rng.random() < p[labels[d.variant_id]]]
    prefix = campaign.name.split()[0]
    if buyers:
        events_ingest(
            rows=pd.DataFrame(
                {
                    "external_id": [f"{prefix}-buy-{c}" for c in buyers],
                    "customer": buyers,
                    "item_kind": "product",
                    "item": f"{prefix}-sku",
                    "type": "purchase",
                    "value": 1.0,
                    "amount": 20.0,
                    "occurred_at": back + timedelta(days=1),
                    "context": [{"order_id": f"{prefix}-o-{c}"} for c in buyers],
                }
            )
        )
    services.campaigns_attribute(campaign_ids=[campaign.pk])
    return Campaign.objects.get(pk=campaign.pk)


# ------------------------------------------------------------------------------------------ the split
def test_the_split_is_deterministic_sticky_and_close_to_the_shares_on_10k_customers():
    campaign = Campaign(pk=41, name="x")
    variants = [CampaignVariant(pk=7, label="A", share=50), CampaignVariant(pk=8, label="B", share=30)]
    variants.append(CampaignVariant(pk=9, label="C", share=20))
    ids = np.arange(1, 10_001, dtype=np.int64)
    vid, in_test = services.variant_split(campaign, variants, ids)
    assert in_test.all()
    shares = {v: float(np.mean(vid == v)) for v in (7, 8, 9)}
    assert shares[7] == pytest.approx(0.5, abs=0.015)
    assert shares[8] == pytest.approx(0.3, abs=0.015)
    assert shares[9] == pytest.approx(0.2, abs=0.015)
    # the same customer gets the same variant at every send, in any order, alone or with others
    again, _ = services.variant_split(campaign, variants, ids[::-1])
    assert (again[::-1] == vid).all()
    alone, _ = services.variant_split(campaign, variants, ids[1234:1235])
    assert alone[0] == vid[1234]
    # another campaign splits independently
    other, _ = services.variant_split(Campaign(pk=42, name="y"), variants, ids)
    assert 0.3 < np.mean(other == vid) < 0.45  # 0.5² + 0.3² + 0.2² = 0.38 by chance

    # with a test share of 20%, a fifth gets the test and the rest waits (-1) for the winner
    campaign.variant_test_percent = 20
    vid, in_test = services.variant_split(campaign, variants, ids)
    assert in_test.mean() == pytest.approx(0.2, abs=0.015)
    assert (vid[~in_test] == -1).all() and (vid[in_test] >= 7).all()


# ------------------------------------------------------------------------------------------ deliveries
def test_deliveries_record_their_variant_and_render_its_templates(committed):
    segment = population("dv", 400)
    campaign = variant_campaign("dv", segment, schedule="daily")
    committed(services.campaign_launch, campaign=campaign)
    rows = list(
        Delivery.objects.filter(campaign=campaign).values(
            "customer_id", "customer__name", "is_control", "status", "variant__label", "variant_test", "title", "body"
        )
    )
    treated = [r for r in rows if not r["is_control"]]
    control = [r for r in rows if r["is_control"]]
    assert control and all(r["variant__label"] is None and not r["variant_test"] for r in control)
    assert all(r["status"] == "sent" and r["variant_test"] for r in treated)
    a = [r for r in treated if r["variant__label"] == "A"]
    b = [r for r in treated if r["variant__label"] == "B"]
    assert len(a) + len(b) == len(treated) and 0.4 < len(a) / len(treated) < 0.6
    # A has no templates of its own: the campaign's; B has its own title and body
    assert all(r["title"] == f"Hi {r['customer__name']}" and r["body"] == "For you" for r in a)
    assert all(r["title"] == f"B: Hello {r['customer__name'].split()[0]}" and r["body"] == "Variant B body" for r in b)
    # the variant is the hash's: the same customer gets it at every send of the campaign
    vids = [v.pk for v in services.campaign_variants(campaign)]
    ids = np.array([r["customer_id"] for r in treated])
    expected = np.array(vids)[assign(ids, salt=f"campaign:{campaign.pk}", shares=[0.5, 0.5])]
    label_of = {v.pk: v.label for v in services.campaign_variants(campaign)}
    assert [label_of[v] for v in expected] == [r["variant__label"] for r in treated]

    # the recurring refresh gives newcomers their own sticky variant, and the old rows keep theirs
    newcomers = [f"dv{i}" for i in range(1000, 1060)]
    ingest(
        customers=[CustomerRow(external_id=c) for c in newcomers],
        events=[EventRow(external_id=f"{c}-view", customer=c, item="dv-sku", type="view") for c in newcomers],
    )
    refresh_rule_memberships(segment)
    later = timezone.now() + timedelta(days=1, minutes=1)
    committed(services.campaigns_tick, now=later)
    new = Delivery.objects.filter(campaign=campaign, customer__external_id__regex=r"^dv1[0-9]{3}$", is_control=False)
    assert new.count() > 40
    for cid, vid in new.values_list("customer_id", "variant_id"):
        assert vid == vids[assign([cid], salt=f"campaign:{campaign.pk}", shares=[0.5, 0.5])[0]]


def test_a_campaign_without_variants_is_unchanged(committed):
    segment = population("nv", 120)
    campaign = CampaignFactory(segments=[segment], control_percent=10)
    committed(services.campaign_launch, campaign=campaign)
    assert not Delivery.objects.filter(campaign=campaign, variant__isnull=False).exists()
    assert not Delivery.objects.filter(campaign=campaign, variant_test=True).exists()
    report = campaign_report(campaign)
    assert report["variants"] is None and report["sent"] == Delivery.objects.filter(status="sent").count()


def test_a_variant_with_a_broken_template_stops_the_launch():
    segment = population("bt", 10)
    campaign = variant_campaign("bt", segment, b_title="B: {% load x %}")
    with pytest.raises(services.TemplateError, match="Variant B, title template"):
        services.campaign_launch(campaign=campaign)
    assert not Delivery.objects.filter(campaign=campaign).exists()


# ------------------------------------------------------------------------------------------ the analysis
def test_a_better_variant_is_named_winner_with_enough_customers_and_not_with_few(committed):
    segment = population("bw", 1600)
    campaign = variant_campaign("bw", segment, variant_mde=5.0)
    committed(services.campaign_launch, campaign=campaign)
    campaign = simulate(campaign, p={"A": 0.05, "B": 0.20}, seed=3, opened=0.06)
    v = campaign_report(campaign)["variants"]
    a, b = v["rows"]
    assert a["sent"] + b["sent"] == campaign_report(campaign)["sent"]
    assert a["opened"] > 0 and b["clicked"] > 0 and a["open_rate_ci"][0] < a["open_rate"] < a["open_rate_ci"][1]
    assert b["conversion_rate"] > a["conversion_rate"] and b["difference"] > 0.1
    assert v["verdict"] == "better" and v["winner"] == "B" and b["significant"] and b["p_value"] < 0.05
    assert b["difference_ci"][0] > 0
    assert v["text"].startswith("B converts better: +") and "95% always-valid interval +" in v["text"]
    assert not v["srm"]["mismatch"]

    # the same planted effect on 60 customers: no winner yet
    small = variant_campaign("bs", population("bs", 60), variant_mde=5.0)
    committed(services.campaign_launch, campaign=small)
    v = variant_report(simulate(small, p={"A": 0.05, "B": 0.20}, seed=4, opened=0))
    assert v["winner"] is None and v["verdict"] == "no_difference_yet"
    assert v["text"] == "No difference yet: keep the test running or stop it."


def test_an_a_a_pair_is_never_named_a_winner(committed):
    segment = population("aa", 700)
    for seed in range(4):
        campaign = variant_campaign(f"aa{seed}", segment)
        committed(services.campaign_launch, campaign=campaign)
        v = variant_report(simulate(campaign, p={"A": 0.1, "B": 0.1}, seed=10 + seed, opened=0))
        assert v["winner"] is None, v["text"]
        assert v["rows"][1]["difference_ci"][0] < 0 < v["rows"][1]["difference_ci"][1]


def test_a_split_tampered_to_60_40_is_a_sample_ratio_mismatch(committed):
    segment = population("sr", 1000)
    campaign = variant_campaign("sr", segment)
    committed(services.campaign_launch, campaign=campaign)
    assert not variant_report(campaign)["srm"]["mismatch"]
    a, b = services.campaign_variants(campaign)
    treated = Delivery.objects.filter(campaign=campaign, is_control=False)
    n = treated.count()
    moved = list(
        treated.filter(variant=b).values_list("id", flat=True)[: int(0.6 * n) - treated.filter(variant=a).count()]
    )
    Delivery.objects.filter(id__in=moved).update(variant=a)
    v = variant_report(campaign)
    assert v["srm"]["mismatch"] and v["verdict"] == "sample_ratio_mismatch" and v["winner"] is None
    assert v["text"].startswith("Sample ratio mismatch: the split is broken, do not trust this test")


# ------------------------------------------------------------------------------------------ the winner send
def test_the_winner_send_reaches_exactly_the_rest_once(committed):
    segment = population("ws", 500)
    campaign = variant_campaign("ws", segment, variant_test_percent=20, variant_test_hours=24)
    committed(services.campaign_launch, campaign=campaign)
    rows = Delivery.objects.filter(campaign=campaign)
    test = set(rows.filter(variant_test=True).values_list("customer_id", flat=True))
    rest = set(rows.filter(status="waiting").values_list("customer_id", flat=True))
    control = set(rows.filter(is_control=True).values_list("customer_id", flat=True))
    assert test and rest and control and not (test & rest) and not (rest & control)
    assert rows.filter(status="sent").count() == len(test)
    assert len(test) / (len(test) + len(rest)) == pytest.approx(0.2, abs=0.06)
    assert variant_report(campaign)["waiting"] == len(rest)
    # the tick does not send the waiting ones, nor complete the campaign while they wait
    committed(services.campaigns_tick)
    assert rows.filter(status="waiting").count() == len(rest)
    assert Campaign.objects.get(pk=campaign.pk).status == "running"

    launched = Campaign.objects.get(pk=campaign.pk).launched_at
    assert committed(services.campaigns_decide_winners, now=launched + timedelta(hours=23))["decided"] == 0
    first = committed(services.campaigns_decide_winners, now=launched + timedelta(hours=25))
    assert first == {"decided": 1, "by_test": 0, "customers": len(rest)}
    sent_rest = rows.filter(variant_test=False, is_control=False, status="sent")
    assert set(sent_rest.values_list("customer_id", flat=True)) == rest
    assert set(sent_rest.values_list("variant__label", flat=True)) == {"A"}  # no winner: the original
    times = dict(sent_rest.values_list("id", "sent_at"))
    # twice: nothing more
    assert committed(services.campaigns_decide_winners, now=launched + timedelta(hours=26))["decided"] == 0
    assert services.campaign_winner_send(campaign=campaign, now=launched + timedelta(hours=27)) is None
    assert dict(sent_rest.values_list("id", "sent_at")) == times
    assert rows.filter(status="sent").count() == len(test) + len(rest)
    assert set(rows.filter(is_control=True).values_list("status", flat=True)) == {"suppressed"}

    campaign.refresh_from_db()
    assert campaign.winner.label == "A" and campaign.winner_verdict.startswith("No winner after 24 h: the rest got A.")
    v = variant_report(campaign)
    assert v["winner_sent"]["variant"] == "A" and v["winner_sent"]["customers"] == len(rest)
    assert len(v["rows"]) == 2 and sum(r["sent"] for r in v["rows"]) == len(test)  # the test only
    history = campaign_status_history(campaign)
    assert any(h["text"].startswith("Test decided") and "the rest got A" in h["note"] for h in history)
    assert StatusChange.objects.filter(campaign=campaign, note__startswith="No winner").count() == 1
    assert AuditEntry.objects.filter(action="campaign.winner_sent", target_id=str(campaign.pk)).count() == 1


def test_a_named_winner_is_what_the_rest_gets(committed):
    segment = population("wb", 1500)
    campaign = variant_campaign("wb", segment, variant_test_percent=50, variant_test_hours=24, variant_mde=5.0)
    committed(services.campaign_launch, campaign=campaign)
    campaign = simulate(campaign, p={"A": 0.03, "B": 0.25}, seed=21, opened=0)
    result = committed(services.campaign_winner_send, campaign=campaign)
    assert result["winner"] == "B" and result["by_test"]
    rest = Delivery.objects.filter(campaign=campaign, variant_test=False, is_control=False)
    assert set(rest.values_list("variant__label", "status").distinct()) == {("B", "sent")}
    assert set(rest.values_list("title", flat=True)) == {
        f"B: Hello {n.split()[0]}" for n in rest.values_list("customer__name", flat=True)
    }
    assert Campaign.objects.get(pk=campaign.pk).winner_verdict.startswith("B won after 24 h: the rest got B.")


# ------------------------------------------------------------------------------------------ API and console
def test_the_api_report_and_the_console_show_the_variants(committed, client):
    segment = population("ap", 300)
    campaign = variant_campaign("ap", segment)
    committed(services.campaign_launch, campaign=campaign)
    client.force_login(UserFactory(username="boss", superuser=True))
    body = client.get(f"/api/campaigns/{campaign.pk}/report/").json()
    assert [r["label"] for r in body["variants"]["rows"]] == ["A", "B"]
    assert body["variants"]["verdict"] == "no_difference_yet" and body["variants"]["rows"][0]["difference"] is None
    page = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'id="report-variants"' in page and "No difference yet: keep the test running or stop it." in page
    listing = client.get(f"/admin/campaigns/delivery/?campaign__id__exact={campaign.pk}").content.decode()
    assert "Variant A" in listing and "Variant B" in listing and "Control group" in listing


def _form(segment, **variants):
    data = {
        "name": "Form variants",
        "kind": "message",
        "channel": "in_app",
        "segments": [segment.pk],
        "control_percent": 10,
        "title_template": "Hi {{ customer.first_name }}",
        "body_template": "For you",
        "recommendation_kind": "product",
        "recommendation_count": 3,
        "schedule": "now",
        "goal_event_type": "purchase",
        "attribution_days": 7,
        "variants-TOTAL_FORMS": len(variants),
        "variants-INITIAL_FORMS": 0,
    }
    for i, (label, title) in enumerate(variants.items()):
        data.update({f"variants-{i}-label": label, f"variants-{i}-share": 50, f"variants-{i}-title_template": title})
    return data


def test_the_form_validates_each_variants_template_and_wants_two_of_them(boss_client):
    segment = population("fv", 5)
    res = boss_client.post("/admin/campaigns/campaign/add/", _form(segment, A="", B="Hi {% load static %}"))
    assert res.status_code == 200 and "Template error" in res.content.decode()
    res = boss_client.post("/admin/campaigns/campaign/add/", _form(segment, A="Hello"))
    assert res.status_code == 200 and "add a second one (B)" in res.content.decode()
    assert not Campaign.objects.filter(name="Form variants").exists()
    res = boss_client.post("/admin/campaigns/campaign/add/", _form(segment, a="", b="Hello {{ customer.name }}"))
    assert res.status_code == 302
    campaign = Campaign.objects.get(name="Form variants")
    assert list(campaign.variants.values_list("label", "title_template")) == [
        ("A", ""),
        ("B", "Hello {{ customer.name }}"),
    ]
    assert campaign.variant_mde == 1.0 and campaign.variant_test_percent is None  # left empty: the defaults
    page = boss_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'class="variant-preview' in page and "Hello Customer fv0" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent transactions need PostgreSQL's row locks (CI runs PostgreSQL)",
)
def test_two_beats_at_once_decide_the_test_once():
    import threading

    segment = population("cc", 300)
    campaign = variant_campaign("cc", segment, variant_test_percent=30, variant_test_hours=24)
    services.campaign_launch(campaign=campaign)
    rest = Delivery.objects.filter(campaign=campaign, status="waiting").count()
    due = Campaign.objects.get(pk=campaign.pk).launched_at + timedelta(hours=25)
    barrier, results = threading.Barrier(2), []

    def beat():
        try:
            barrier.wait()
            results.append(services.campaigns_decide_winners(now=due))
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["decided"] for r in results) == [0, 1]
    assert sum(r["customers"] for r in results) == rest > 0
    assert StatusChange.objects.filter(campaign=campaign, from_status="running", to_status="running").count() == 1
    assert AuditEntry.objects.filter(action="campaign.winner_sent", target_id=str(campaign.pk)).count() == 1
    assert (
        Delivery.objects.filter(campaign=campaign, variant_test=False, is_control=False, status="sent").count() == rest
    )


def test_the_beat_decides_due_tests_through_its_task(committed, settings):
    from campaigns.tasks import campaigns_decide_winners

    entry = settings.CELERY_BEAT_SCHEDULE["campaigns-decide-winners"]
    assert entry["task"] == campaigns_decide_winners.name == "campaigns.tasks.campaigns_decide_winners"
    campaign = variant_campaign("bt2", population("bt2", 80), variant_test_percent=25, variant_test_hours=1)
    committed(services.campaign_launch, campaign=campaign)
    assert committed(campaigns_decide_winners.apply().get) == {"decided": 0, "by_test": 0, "customers": 0}
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - timedelta(hours=2))
    assert committed(campaigns_decide_winners.apply().get)["decided"] == 1
    assert not Delivery.objects.filter(campaign=campaign, status="waiting").exists()
