"""A campaign with a report to read, built the way one comes about: customers sent by the shop, a rule
segment, a launch through the services, messages shown, opened and clicked through the tracking
services, purchases ingested as events and attributed. Shared by the report's page tests and the
browser test (and handy in a shell to see the page: ``reported_campaign(...)``)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Delivery
from tests.factories import CampaignFactory, CustomerRow, EventRow, ItemFactory, SegmentFactory, ingest


def reported_campaign(
    *,
    prefix: str,
    n: int = 400,
    p_treated: float,
    p_control: float,
    seed: int,
    channel: str = "in_app",
    shown: float = 0.8,
    opened: float = 0.5,
    clicked: float = 0.2,
    no_consent_every: int = 10,
    by=None,
    launch=None,
    **fields,
) -> Campaign:
    """`n` customers (every `no_consent_every`-th without consent for the channel), a campaign with a
    20% control group launched three days ago; of the recipients a share `shown` had the message shown,
    `opened` opened it, `clicked` clicked (each among those before); then each customer of the treated
    (control) group buys with probability `p_treated` (`p_control`) a day after the launch, in a
    category only this campaign's goal counts."""
    rows = [
        CustomerRow(external_id=f"{prefix}{i}", **{f"consent_{channel}": i % no_consent_every != 0}) for i in range(n)
    ]
    category = f"{prefix} jackets"
    ItemFactory(external_id=f"{prefix}-sku", title="Spring jacket", category=category, price="20.00")
    looked = [
        EventRow(external_id=f"{prefix}-view-{i}", customer=f"{prefix}{i}", item=f"{prefix}-sku", type="view")
        for i in range(n)
    ]
    ingest(customers=rows, events=looked)
    # the audience: everyone who looked at the jackets (consent to the channel varies)
    segment = SegmentFactory(
        name=f"Looked at {category}", rule={"event": {"type": "view", "category": category, "min_count": 1}}
    )
    campaign = CampaignFactory(
        name=fields.pop("name", f"{prefix} spring sale"),
        channel=channel,
        control_percent=20,
        segments=[segment],
        goal_category=category,
        attribution_days=7,
        frequency_cap_count=1000,
        **fields,
    )
    # `launch`: how to call the service so its after-commit sends run (the `committed` fixture in a test)
    (launch or (lambda fn, **kw: fn(**kw)))(services.campaign_launch, campaign=campaign, by=by, source="admin")
    back = timezone.now() - timedelta(days=3)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=back)
    Delivery.objects.filter(campaign=campaign, status="sent").update(sent_at=back)

    rng = np.random.default_rng(seed)
    sent = list(Delivery.objects.filter(campaign=campaign, status="sent").select_related("campaign", "customer"))
    when = back + timedelta(hours=2)
    if channel == "in_app":
        shown_ids = [d.pk for d in sent if rng.random() < shown]
        services.inbox_mark_delivered(delivery_ids=shown_ids, now=when)
        shown_set = set(shown_ids)
        for d in sent:
            if d.pk in shown_set and rng.random() < opened:
                d.refresh_from_db()
                services.delivery_track(delivery=d, what="clicked" if rng.random() < clicked else "opened", now=when)

    reachable = (
        Delivery.objects.filter(campaign=campaign)
        .exclude(reason="no_consent")
        .values_list("customer__external_id", "is_control")
    )
    buyers = [ext for ext, control in reachable if rng.random() < (p_control if control else p_treated)]
    if buyers:
        ingest(
            events=[
                EventRow(
                    external_id=f"{prefix}-buy-{ext}",
                    customer=ext,
                    item=f"{prefix}-sku",
                    type="purchase",
                    amount=20.0,
                    occurred_at=back + timedelta(days=1),
                    context={"order_id": f"{prefix}-order-{ext}"},
                )
                for ext in buyers
            ]
        )
    services.campaigns_attribute(campaign_ids=[campaign.pk])
    return Campaign.objects.get(pk=campaign.pk)
