"""Test factories (factory-boy): the customers, items, events, operators, API keys, customer tokens,
segments and campaigns the tests build again and again.

Two ways to put a shop in the database, for two needs:

- the model factories (`CustomerFactory`, `ItemFactory`, `EventFactory`, ...) write rows directly,
  for a test about one row or a handful;
- the row factories (`CustomerRow`, `EventRow`) build the plain dicts the shop sends, and `ingest`
  writes them through the services' bulk paths (`customers_upsert`, `events_ingest`), the way a
  real shop fills the database: unknown items and customers are created as ingestion creates them,
  consent changes are recorded. Use it where a test depends on what ingestion writes, or needs
  thousands of events (one bulk statement, not a query per row).

API keys and customer tokens are issued by the access services, never built as rows, so a key has
the secret the API shows once. Every external id is a sequence; no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import factory
import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import access
from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR, sync_role_permissions
from campaigns.models import Campaign
from profiles import services
from profiles.models import Customer, Event, Item, Profile
from segments.models import Segment
from segments.rules import refresh_rule_memberships

__all__ = [
    "ADMINISTRATOR",
    "ANALYST",
    "MARKETING_OPERATOR",
    "ApiKeyFactory",
    "CampaignFactory",
    "CustomerFactory",
    "CustomerRow",
    "CustomerTokenFactory",
    "EventFactory",
    "EventRow",
    "IssuedKey",
    "IssuedToken",
    "ItemFactory",
    "OperatorFactory",
    "SegmentFactory",
    "UserFactory",
    "client_for",
    "customer_client",
    "demo_shop_commit",
    "demo_shop_empty",
    "ingest",
    "key_client",
    "purchases",
]


# --- customers, items, events (rows in the database) -------------------------------------------


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("external_id",)

    external_id = factory.Sequence(lambda n: f"cust{n}")
    name = factory.LazyAttribute(lambda o: f"Customer {o.external_id}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")


class ItemFactory(factory.django.DjangoModelFactory):
    """A product by default; `ItemFactory(activity=True)` or `(post=True)` for the other kinds."""

    class Meta:
        model = Item
        django_get_or_create = ("kind", "external_id")

    kind = "product"
    external_id = factory.Sequence(lambda n: f"sku{n}")
    title = factory.LazyAttribute(lambda o: f"{o.kind.title()} {o.external_id}")
    category = "Books"
    price = factory.Maybe(factory.LazyAttribute(lambda o: o.kind == "product"), "10.00", None)

    class Params:
        activity = factory.Trait(kind="activity", external_id=factory.Sequence(lambda n: f"act{n}"))
        post = factory.Trait(kind="post", external_id=factory.Sequence(lambda n: f"post{n}"), category="")


class EventFactory(factory.django.DjangoModelFactory):
    """A view just now by default; traits `purchase` (with an amount and an order), `view`, `rating` (a value)."""

    class Meta:
        model = Event

    external_id = factory.Sequence(lambda n: f"ev{n}")
    customer = factory.SubFactory(CustomerFactory)
    item = factory.SubFactory(ItemFactory)
    type = "view"
    occurred_at = factory.LazyFunction(timezone.now)

    class Params:
        view = factory.Trait(type="view")
        purchase = factory.Trait(
            type="purchase", amount="10.00", context=factory.LazyAttribute(lambda o: {"order_id": f"o-{o.external_id}"})
        )
        rating = factory.Trait(type="rating", value=4.0)


# --- what the shop sends (rows for the services' bulk paths) ----------------------------------


class CustomerRow(factory.DictFactory):
    """A customer as the shop sends it to `customers_upsert`."""

    external_id = factory.Sequence(lambda n: f"cust{n}")
    name = factory.LazyAttribute(lambda o: f"Customer {o.external_id}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    consent_in_app = True


class EventRow(factory.DictFactory):
    """An event as the shop sends it to `events_ingest`: a view just now by default; traits as `EventFactory`'s."""

    external_id = factory.Sequence(lambda n: f"ev{n}")
    customer = factory.Sequence(lambda n: f"cust{n}")
    item = factory.Sequence(lambda n: f"sku{n}")
    type = "view"
    occurred_at = factory.LazyFunction(timezone.now)

    class Params:
        view = factory.Trait(type="view")
        purchase = factory.Trait(type="purchase", amount=10.0)
        rating = factory.Trait(type="rating", value=4.0)


def ingest(*, customers=(), events=(), **kwargs) -> None:
    """Write customers, then events, through the services (the shop's own path into the database).

    `kwargs` go to `customers_upsert` (`source="import"`, for instance); the events must all be valid.
    """
    if len(customers):
        services.customers_upsert(rows=pd.DataFrame(list(customers)), **kwargs)
    if len(events):
        result = services.events_ingest(rows=pd.DataFrame(list(events)))
        assert not result.errors, result.errors


def demo_shop_commit(
    *,
    seed: int,
    customers: int,
    events: int,
    products: int = 120,
    posts: int = 40,
    quiet_id: str | None = None,
    chunk_size: int | None = None,
):
    """A demo shop (`profiles.demo.generate_shop`) written through the services, as the shop's feeds
    write it: customers (and, with `quiet_id`, one customer without any event), items, then events.
    For module fixtures whose shop other processes read (Spark over JDBC, a worker, a server): call it
    inside `django_db_blocker.unblock()` so the rows are committed, and `demo_shop_empty()` after.
    Returns the generated shop."""
    from profiles.demo import generate_shop

    sizes = {"chunk_size": chunk_size} if chunk_size else {}  # the events depend on it (profiles/demo.py)
    demo = generate_shop(seed=seed, n_customers=customers, n_events=events, n_products=products, n_posts=posts, **sizes)
    services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
    if quiet_id:
        services.customers_upsert(rows=pd.DataFrame([{"external_id": quiet_id, "name": "Quiet Newcomer"}]))
    services.items_upsert(rows=demo.items)
    for chunk in demo.iter_events():
        services.events_ingest(rows=chunk, create_unknown=False)
    return demo


def demo_shop_empty() -> None:
    """Delete what `demo_shop_commit` and pipeline runs over it left: results, runs, events, items,
    customers (children first)."""
    from pipeline.models import Lease, PipelineRun, PipelineStep
    from recommendations.models import Impression, PopularItem, Recommendation, RecommenderRun, SimilarItem
    from segments.models import ClusteringRun, Membership, SegmentSize

    for model in (
        Impression,
        Recommendation,
        SimilarItem,
        PopularItem,
        RecommenderRun,
        Membership,
        SegmentSize,
        Segment,
        ClusteringRun,
        Profile,
        PipelineStep,
        PipelineRun,
        Lease,
        Event,
        Item,
        Customer,
    ):
        model.objects.all().delete()


def purchases(
    customers: list[str],
    n: int,
    *,
    prefix: str,
    items: int = 5,
    amount: float = 10.0,
    days: int = 9,
    order_ids: bool = False,
) -> list[dict]:
    """`n` purchases spread evenly over `customers` (round robin), `items` items and the last `days` days."""
    now = timezone.now()
    return [
        EventRow(
            external_id=f"{prefix}{i}",
            customer=customers[i % len(customers)],
            item=f"sku{i % items}",
            purchase=True,
            amount=amount,
            occurred_at=now - timedelta(days=i % days),
            **({"context": {"order_id": f"o{i}"}} if order_ids else {}),
        )
        for i in range(n)
    ]


def predictions_set(*, seed: int = 7, odd_categories: tuple[str, ...] = ()) -> None:
    """What the profiles step's model writes, set directly on the computed profiles (realistic spreads,
    ties and gaps): a sixth of the profiles have no prediction yet, predicted spend is rounded to tens
    (many ties), each affinity lists a few of the shop's categories only (in steps of 0.05), and every
    eleventh profile also has an affinity of 0.5 for one of `odd_categories`."""
    rng = np.random.default_rng(seed)
    categories = sorted(set(Item.objects.exclude(category="").values_list("category", flat=True)))
    profiles = list(Profile.objects.order_by("customer_id"))
    for i, p in enumerate(profiles):
        if i % 6 == 5:
            p.p_alive = p.churn_risk = p.predicted_orders = p.predicted_value = None
            p.prediction_basis, p.affinity = "", {}
            continue
        p.p_alive = float(rng.beta(2, 2))
        p.churn_risk = float(round(1 - p.p_alive * rng.uniform(0.5, 1), 3))
        p.predicted_orders = float(round(rng.gamma(1.5, 1.0), 2))
        p.predicted_value = float(round(rng.gamma(1.2, 80) / 10) * 10)
        p.prediction_basis = "model" if p.orders_total >= 2 else "prior"
        picked = rng.choice(categories, size=int(rng.integers(0, 4)), replace=False) if categories else []
        p.affinity = {str(c): float(round(rng.uniform(0, 0.8) * 20) / 20) for c in picked}
        if odd_categories and i % 11 == 0:
            p.affinity[odd_categories[i % len(odd_categories)]] = 0.5
    fields = ["p_alive", "churn_risk", "predicted_orders", "predicted_value", "prediction_basis", "affinity"]
    Profile.objects.bulk_update(profiles, fields, batch_size=500)


# --- operators --------------------------------------------------------------------------------


class UserFactory(factory.django.DjangoModelFactory):
    """An account; no usable password unless one is given (hashing one costs a good part of a test)."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password(None)

    class Params:
        superuser = factory.Trait(is_staff=True, is_superuser=True)


class OperatorFactory(UserFactory):
    """A staff account: in a role's group (`OperatorFactory(role=ANALYST)`), or holding a few permissions
    of its own (`permissions=["segments.view_segment"]`), or neither.

    Permissions are found by codename (the app label is for the reader): a model that moves to another
    app keeps its codenames, and its tests keep working.
    """

    is_staff = True

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):
        if create and extracted:
            if not Group.objects.filter(name=extracted).exists():  # a flushing test can leave the groups gone
                sync_role_permissions()
            obj.groups.add(Group.objects.get(name=extracted))

    @factory.post_generation
    def permissions(obj, create, extracted, **kwargs):
        if create and extracted:
            codenames = [p.rpartition(".")[2] for p in extracted if isinstance(p, str)]
            given = [p for p in extracted if not isinstance(p, str)]
            obj.user_permissions.add(*given, *Permission.objects.filter(codename__in=codenames))


def client_for(user) -> APIClient:
    """An API client signed in as `user` (no session, no CSRF)."""
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- API keys and customer tokens (through the access services) -------------------------------


@dataclass
class IssuedKey:
    key: object  # the ApiKey row
    secret: str  # the full key text, "<prefix>.<secret>", as the API shows it once

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {self.secret}")
        return client


def _api_key_issue(*, name: str, scopes: list[str], user=None) -> IssuedKey:
    return IssuedKey(*access.api_key_create(name=name, scopes=list(scopes), user=user))


class ApiKeyFactory(factory.Factory):
    """A key issued by `api_key_create`: `ApiKeyFactory(scopes=["ingest_events"]).client()`."""

    class Meta:
        model = _api_key_issue

    name = "backend"
    scopes = factory.List(["read_recommendations"])
    user = None


@dataclass
class IssuedToken:
    token: str
    ttl: int

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Customer {self.token}")
        return client


def _customer_token_issue(*, customer: str, key: IssuedKey, ttl: int | None = None) -> IssuedToken:
    return IssuedToken(*access.customer_token_issue(customer_external_id=customer, key=key.key, ttl=ttl))


class CustomerTokenFactory(factory.Factory):
    """A token for one customer (by external id), from a fresh key that may read recommendations."""

    class Meta:
        model = _customer_token_issue

    customer = factory.Sequence(lambda n: f"cust{n}")
    key = factory.SubFactory(ApiKeyFactory, scopes=["read_recommendations"])
    ttl = None


def key_client(*scopes: str, name: str = "backend") -> APIClient:
    """An API client for the shop's backend, holding a fresh key with these scopes."""
    return ApiKeyFactory(name=name, scopes=list(scopes)).client()


def customer_client(external_id: str) -> APIClient:
    """An API client for one customer, holding a token issued to a fresh key that reads recommendations."""
    return CustomerTokenFactory(customer=external_id).client()


# --- segments and campaigns -------------------------------------------------------------------


class SegmentFactory(factory.django.DjangoModelFactory):
    """A rule segment (everyone with in-app consent by default), its members refreshed once it is saved
    (`refresh=False`: saved with no members yet)."""

    class Meta:
        model = Segment
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Segment {n}")
    kind = "rule"
    rule = factory.LazyFunction(lambda: {"consent": "in_app"})

    @factory.post_generation
    def refresh(obj, create, extracted, **kwargs):
        if create and obj.kind == "rule" and extracted is not False:
            refresh_rule_memberships(obj)


class CampaignFactory(factory.django.DjangoModelFactory):
    """A draft in-app message sent at any hour (no send window): `CampaignFactory(segments=[...])`."""

    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Campaign {n}")
    title_template = "Hi {{ customer.name }}"
    body_template = "For you"
    window_start = None
    window_end = None

    @factory.post_generation
    def segments(obj, create, extracted, **kwargs):
        if create and extracted is not None:
            obj.segments.set(extracted)

    @factory.post_generation
    def excluded_segments(obj, create, extracted, **kwargs):
        if create and extracted is not None:
            obj.excluded_segments.set(extracted)
