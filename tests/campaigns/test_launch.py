"""Launch and in-app delivery on the demo shop: audience snapshot, control group, consent, cap, quiet hours, status."""

import json
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Delivery, StatusChange
from profiles.models import Customer
from segments.models import Membership, Segment
from tests.factories import OperatorFactory

from .conftest import make_campaign

pytestmark = pytest.mark.django_db


def everyone():
    return Segment.objects.get(name="Everyone who looked")


def test_a_launch_delivers_exactly_once_to_each_eligible_member_and_holds_out_a_stable_control_group(committed, shop):
    user = OperatorFactory(username="op")
    seg = everyone()
    cluster = Segment.objects.filter(kind="cluster").order_by("size").first()
    campaign = make_campaign(segments=[seg], excluded=[cluster])
    committed(services.campaign_launch, campaign=campaign, by=user)

    members = set(Membership.objects.filter(segment=seg).values_list("customer_id", flat=True))
    excluded = set(Membership.objects.filter(segment=cluster).values_list("customer_id", flat=True))
    audience = members - excluded
    rows = pd.DataFrame.from_records(
        Delivery.objects.filter(campaign=campaign).values("customer_id", "is_control", "status", "reason", "title")
    )
    assert set(rows["customer_id"]) == audience and rows["customer_id"].is_unique
    consent = dict(Customer.objects.values_list("id", "consent_in_app"))
    rows["consent"] = rows["customer_id"].map(consent)
    # never to a customer without consent; the control group is drawn among the consenting
    assert (rows.loc[~rows["consent"], "reason"] == "no_consent").all()
    assert not rows.loc[~rows["consent"], "is_control"].any()
    eligible = rows[rows["consent"]]
    share = eligible["is_control"].mean()
    assert 0.06 < share < 0.14, share
    assert (rows.loc[rows["is_control"], "status"] == "suppressed").all()
    treated = eligible[~eligible["is_control"]]
    assert (treated["status"] == "sent").all()
    names = dict(Customer.objects.values_list("id", "name"))
    assert all(
        t.startswith("Hello ") and names[c].split()[0] in t
        for c, t in zip(treated["customer_id"], treated["title"], strict=False)
    )

    # deterministic: the same hash answers again, and a re-run adds and sends nothing
    again = services.control_mask(campaign.pk, eligible["customer_id"].to_numpy(), campaign.control_percent)
    assert (again == eligible["is_control"].to_numpy()).all()
    assert services.audience_snapshot(campaign=campaign) == 0
    first, last = (
        Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True)[:: len(rows) - 1]
    )
    assert services.deliveries_send(campaign_id=campaign.pk, first_id=first, last_id=last)["claimed"] == 0
    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == len(treated)

    # every status move is recorded with who and when; the campaign completes on the next tick
    assert list(StatusChange.objects.filter(campaign=campaign).values_list("from_status", "to_status", "by")) == [
        ("draft", "running", user.pk)
    ]
    committed(services.campaigns_tick)
    campaign.refresh_from_db()
    assert campaign.status == "completed"
    with pytest.raises(services.TransitionError):
        services.campaign_transition(campaign=campaign, to="running", by=user)


def test_the_suggested_items_are_in_the_message_and_count_as_seen(committed, shop):
    from recommendations.models import Impression

    campaign = make_campaign(
        segments=[everyone()],
        kind="products",
        recommendation_count=3,
        body_template="{% for i in items %}{{ i.title }} ({{ i.price }}) {{ i.url }}\n{% endfor %}",
    )
    committed(services.campaign_launch, campaign=campaign)
    sent = Delivery.objects.filter(campaign=campaign, status="sent").select_related("customer")
    with_items = [d for d in sent if d.items]
    assert len(with_items) >= 0.9 * sent.count()
    from recommendations.selectors import recommendations_for

    d = with_items[0]
    own = [r.item for r in recommendations_for(d.customer, kind="product", limit=3)]
    assert d.items == [i.pk for i in own]
    assert all(i.title in d.body and f"/shop/product/{i.external_id}/" in d.body for i in own)
    shown = Impression.objects.filter(source=f"campaign:{campaign.pk}")
    assert shown.count() == sum(len(x.items) for x in sent)


def test_the_frequency_cap_holds_across_campaigns_with_a_per_campaign_override(committed, shop):
    seg = everyone()
    ids = []
    for n in range(3):  # the global cap: 3 in 7 days
        c = make_campaign(segments=[seg], name=f"c{n}", control_percent=0)
        committed(services.campaign_launch, campaign=c)
        ids.append(c.pk)
    fourth = make_campaign(segments=[seg], name="fourth", control_percent=0)
    committed(services.campaign_launch, campaign=fourth)
    assert not Delivery.objects.filter(campaign=fourth, status="sent").exists()
    capped = Delivery.objects.filter(campaign=fourth, reason="frequency_cap").count()
    assert capped == Delivery.objects.filter(campaign_id=ids[0], status="sent").count()
    loose = make_campaign(segments=[seg], name="loose", control_percent=0, frequency_cap_count=10)
    committed(services.campaign_launch, campaign=loose)
    assert Delivery.objects.filter(campaign=loose, status="sent").count() == capped
    # nobody ever got more than the cap allowed within the window
    per_customer = pd.Series(
        Delivery.objects.filter(status="sent").values_list("customer_id", flat=True)
    ).value_counts()
    assert per_customer.max() <= 10


def test_quiet_hours_defer_to_the_next_window_in_the_customers_own_time_zone(committed, shop):
    seg = everyone()
    tz_of = dict(Customer.objects.values_list("id", "time_zone"))
    now = datetime(2030, 1, 15, 3, 0, tzinfo=UTC)  # 03:00 UTC: night in Europe, evening in the Americas, day in Asia
    campaign = make_campaign(
        segments=[seg], window_start=time(9, 0), window_end=time(21, 0), control_percent=0, frequency_cap_count=100
    )
    services.campaign_launch(campaign=campaign, now=now)  # its send tasks wait for a commit that never comes here
    ids = list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    services.deliveries_send(campaign_id=campaign.pk, first_id=ids[0], last_id=ids[-1], now=now)
    from zoneinfo import ZoneInfo

    rows = list(Delivery.objects.filter(campaign=campaign).exclude(reason="no_consent"))
    deferred = [d for d in rows if d.status == "deferred"]
    sent = [d for d in rows if d.status == "sent"]
    assert deferred and sent
    for d in sent:
        local = now.astimezone(ZoneInfo(tz_of[d.customer_id]))
        assert time(9) <= local.time() < time(21)
    for d in deferred:
        local_due = d.due_at.astimezone(ZoneInfo(tz_of[d.customer_id]))
        assert local_due.time() == time(9, 0) and d.due_at > now and d.due_at - now < timedelta(days=1)
        assert not (time(9) <= now.astimezone(ZoneInfo(tz_of[d.customer_id])).time() < time(21))
    # the clock moves on: each deferred message goes out once its window opens, not before, and never twice
    later = max(d.due_at for d in deferred) + timedelta(minutes=1)
    committed(services.campaigns_tick, now=later)
    services.deliveries_send(campaign_id=campaign.pk, first_id=ids[0], last_id=ids[-1], now=later)
    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == len(sent) + len(deferred)
    assert Delivery.objects.filter(campaign=campaign, deferred_until__isnull=False).count() == len(deferred)


def test_only_valid_status_moves_are_allowed_and_each_is_recorded(committed, shop):
    user = OperatorFactory(username="op2")
    later = timezone.now() + timedelta(days=1)
    campaign = make_campaign(segments=[everyone()], schedule="at", send_at=later)
    committed(services.campaign_launch, campaign=campaign, by=user)
    assert campaign.status == "scheduled" and not Delivery.objects.filter(campaign=campaign).exists()
    services.campaign_pause(campaign=campaign, by=user)
    with pytest.raises(services.TransitionError):
        services.campaign_transition(campaign=campaign, to="completed", by=user)
    services.campaign_cancel(campaign=campaign, by=user)
    assert list(campaign.status_changes.values_list("to_status", flat=True)) == ["scheduled", "paused", "cancelled"]
    assert all(c.by_id == user.pk and c.at for c in campaign.status_changes.all())


def test_a_scheduled_campaign_launches_on_the_tick_and_a_paused_one_sends_nothing(committed, shop):
    soon = timezone.now() + timedelta(hours=1)
    campaign = make_campaign(segments=[everyone()], schedule="at", send_at=soon, frequency_cap_count=100)
    committed(services.campaign_launch, campaign=campaign)
    committed(services.campaigns_tick, now=soon - timedelta(minutes=1))
    assert Campaign.objects.get(pk=campaign.pk).status == "scheduled"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(services, "deliveries_enqueue", lambda **kw: 0)  # the workers are slow: nothing sent yet
        committed(services.campaigns_tick, now=soon + timedelta(minutes=1))
    campaign.refresh_from_db()
    assert campaign.status == "running"
    services.campaign_pause(campaign=campaign)
    ids = list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    assert services.deliveries_send(campaign_id=campaign.pk, first_id=ids[0], last_id=ids[-1]) == {"skipped": "paused"}
    committed(services.campaign_resume, campaign=campaign)
    assert Delivery.objects.filter(campaign=campaign, status="sent").exists()
    assert not Delivery.objects.filter(campaign=campaign, status="queued").exists()


@pytest.mark.django_db
def test_a_recurring_campaign_reaches_each_new_member_once_on_its_next_run(shop, committed):
    """Daily: at launch the current members; at each next run only those who entered since."""
    from profiles import services as profile_services
    from segments.rules import refresh_rule_memberships

    segment = Segment.objects.create(name="Emailable", kind="rule", rule={"consent": "email"})
    refresh_rule_memberships(segment)
    start = timezone.now()
    campaign = make_campaign(segments=[segment], schedule="daily", control_percent=0)
    committed(services.campaign_launch, campaign=campaign, now=start)
    first = set(Delivery.objects.filter(campaign=campaign).values_list("customer_id", flat=True))
    assert len(first) == segment.size > 0
    campaign.refresh_from_db()
    assert campaign.status == "running" and campaign.next_run_at == start + timedelta(days=1)

    # a customer gives email consent: the segment's next refresh takes them in
    newcomer = Customer.objects.filter(consent_email=False).first()
    profile_services.customer_consent_set(customer=newcomer, source="api", consent_email=True)
    refresh_rule_memberships(segment)

    # before the period is over nothing happens; after it, exactly the newcomer is added and sent
    assert committed(services.campaigns_tick, now=start + timedelta(hours=23))["refreshed"] == 0
    out = committed(services.campaigns_tick, now=start + timedelta(days=1, minutes=1))
    assert out["refreshed"] == 1
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert set(deliveries.values_list("customer_id", flat=True)) - first == {newcomer.pk}
    assert deliveries.filter(customer=newcomer, status="sent").count() == 1
    # the next day, no newcomer: nothing more, nobody twice
    out = committed(services.campaigns_tick, now=start + timedelta(days=2, minutes=2))
    assert out["refreshed"] == 0 and deliveries.count() == len(first) + 1
    campaign.refresh_from_db()
    assert campaign.status == "running"  # a recurring campaign runs until it ends or is stopped


@pytest.mark.django_db
def test_the_campaign_command_launches_reports_and_refuses_invalid_moves(shop, committed):
    from io import StringIO

    from django.core.management import CommandError, call_command

    campaign = make_campaign(segments=[everyone()], control_percent=0)
    out = StringIO()
    with pytest.raises(CommandError, match="needs a campaign id"):
        call_command("campaign", "launch", stdout=out)
    committed(lambda **kw: call_command("campaign", "launch", str(campaign.pk), stdout=out))
    assert "is now running" in out.getvalue() or "is now completed" in out.getvalue()
    report = StringIO()
    call_command("campaign", "report", str(campaign.pk), stdout=report)
    assert (
        json.loads(report.getvalue())["sent"] == Delivery.objects.filter(campaign=campaign, status="sent").count() > 0
    )
    call_command("campaign", "cancel", str(campaign.pk), stdout=out)
    with pytest.raises(CommandError):
        call_command("campaign", "launch", str(campaign.pk), stdout=out)
