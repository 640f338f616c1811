"""A campaign aimed at a predictive segment (issue #16) reaches exactly that segment's members."""

import pandas as pd
import pytest

from campaigns import services
from campaigns.models import Delivery
from profiles.models import Customer, Item, Profile
from segments.models import Membership
from segments.services import predictive_segments_create
from tests.factories import OperatorFactory, predictions_set

from .conftest import make_campaign

pytestmark = pytest.mark.django_db


def _members(segment) -> set[int]:
    return set(Membership.objects.filter(segment=segment).values_list("customer_id", flat=True))


def test_a_campaign_aimed_at_predictive_segments_reaches_exactly_their_members(committed, shop):
    predictions_set(seed=3)
    category = Item.objects.exclude(category="").order_by("category").values_list("category", flat=True).first()
    segments = {s.name: s for s in predictive_segments_create(category=category)}
    churn, value = segments["Likely to churn"], segments["High predicted value"]
    profiles = pd.DataFrame(list(Profile.objects.values("customer_id", "churn_risk", "orders_total")))
    likely_to_churn = set(
        profiles.loc[(profiles["churn_risk"] >= 0.7) & (profiles["orders_total"] >= 1), "customer_id"]
    )
    assert _members(churn) == likely_to_churn and len(likely_to_churn) > 20

    # Win back the likely churners, but not the ones still worth the most (they get another offer).
    campaign = make_campaign(segments=[churn], excluded=[value], control_percent=0, name="Win back")
    committed(services.campaign_launch, campaign=campaign, by=OperatorFactory(username="op"))

    audience = _members(churn) - _members(value)
    assert _members(churn) & _members(value)  # the exclusion removes someone
    rows = pd.DataFrame(list(Delivery.objects.filter(campaign=campaign).values("customer_id", "status", "reason")))
    assert set(rows["customer_id"]) == audience and rows["customer_id"].is_unique
    consent = dict(Customer.objects.filter(pk__in=audience).values_list("pk", "consent_in_app"))
    sent = set(rows.loc[rows["status"] == "sent", "customer_id"])
    assert sent == {c for c in audience if consent[c]} and sent
    assert (rows.loc[rows["status"] != "sent", "reason"] == "no_consent").all()
