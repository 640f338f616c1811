"""A demo shop with profiles, segments and suggestions, built once per test module, and a campaign helper."""

import pytest

from pipeline import services as pipeline
from profiles import services
from profiles.demo import generate_shop

N_CUSTOMERS = 600


def wipe():
    from campaigns.models import Campaign
    from tests.factories import demo_shop_empty

    Campaign.objects.all().delete()
    demo_shop_empty()


def build_shop(n_customers: int = N_CUSTOMERS, seed: int = 11, recommend: bool = True):
    from segments.models import Segment
    from segments.rules import refresh_rule_memberships

    demo = generate_shop(
        seed=seed, n_customers=n_customers, n_events=n_customers * 40, n_products=120, n_posts=40, chunk_size=30_000
    )
    services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
    services.items_upsert(rows=demo.items)
    for chunk in demo.iter_events():
        services.events_ingest(rows=chunk, create_unknown=False)
    steps = ["profiles", "segments"] + (["recommendations"] if recommend else [])
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=steps))
    assert run.status == "succeeded", run.error
    everyone = Segment.objects.create(
        name="Everyone who looked", kind="rule", rule={"event": {"type": "view", "min_count": 1}}
    )
    refresh_rule_memberships(everyone)
    return demo


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        demo = build_shop()
    yield demo
    with django_db_blocker.unblock():
        wipe()


def make_campaign(*, segments, excluded=(), **fields):
    """A draft campaign of this package's tests: "Spring", in-app, the items and their prices in the body."""
    from tests.factories import CampaignFactory

    defaults = dict(
        name="Spring",
        goal="sell more",
        kind="message",
        channel="in_app",
        title_template="Hello {{ customer.first_name }}",
        body_template="{% for i in items %}{{ i.title }} {{ i.price }}\n{% endfor %}",
    )
    return CampaignFactory(**{**defaults, **fields}, segments=segments, excluded_segments=excluded)
