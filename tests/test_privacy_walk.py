"""The privacy walk: every model that holds a customer's key or a copy of their data is covered by the
export (right of access) and by forgetting (right to erasure).

Every model with a foreign key to Customer must be declared below, each of its fields either exported
(with where it appears in the export) or listed as not personal, with the reason. A new model with a
key to Customer, or a new field on one of these models, fails this test until it is wired in. After
forgetting, no text column of any model (third-party ones too: the admin's history, the audit log)
holds the customer's external id, email or name, and no row but those declared still points to them.
"""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.db import models
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from campaigns import services as campaign_services
from campaigns.models import Delivery
from experiments.models import Assignment, Experiment, Variant
from pipeline import services as pipeline
from profiles import services
from profiles.models import Customer
from recommendations.models import RecommenderConfig
from recommendations.services import impressions_record
from tests.factories import CampaignFactory, CustomerRow, EventRow, SegmentFactory, ingest, key_client

pytestmark = pytest.mark.django_db

EXT, NAME, EMAIL = "walk-cust-5531xq", "Adèle Vandersteen-Ruiz", "adele.vsr@zoeklicht.example"


def _natural(obj):
    """How the export names a related row: by the shop's id, or a name."""
    for attr in ("external_id", "name"):
        if hasattr(obj, attr):
            return getattr(obj, attr)
    return obj.pk


def _items(delivery):
    from profiles.models import Item

    return [Item.objects.get(pk=i).external_id for i in delivery.items]


# model label → (export section, {field: export key, or (export key, expected value from the row, exported value →
# comparable)})
EXPORTED = {
    "profiles.Customer": (
        "customer",
        {
            f: f
            for f in (
                "external_id",
                "name",
                "email",
                "time_zone",
                "consent_in_app",
                "consent_email",
                "consent_push",
                "consent_updated_at",
                "attributes",
                "created_at",
            )
        },
    ),
    "profiles.Event": (
        "events",
        {
            "external_id": "external_id",
            "item": "item",
            "type": "type",
            "value": "value",
            "amount": "amount",
            "occurred_at": "occurred_at",
            "context": "context",
            "received_at": "received_at",
        },
    ),
    "profiles.Profile": (
        "profile",
        {},
    ),  # every field but those below, under its own name (filled in by _profile_fields)
    "profiles.ConsentChange": (
        "consent_history",
        {"channel": "channel", "granted": "granted", "source": "source", "at": "at"},
    ),
    "segments.Membership": ("segments", {"segment": "segment", "since": "since"}),
    "recommendations.Recommendation": (
        "recommendations",
        {
            "item": "item",
            "kind": "kind",
            "rank": "rank",
            "score": "score",
            "reason": "reason_code",
            "reason_text": "reason",
            "reason_item": "reason_item",
        },
    ),
    "recommendations.Impression": (
        "impressions",
        {"item": "item", "shown_at": "shown_at", "source": "source", "channel": "channel"},
    ),
    "experiments.Assignment": (
        "experiments",
        {
            "experiment": ("experiment", lambda a: a.experiment.name, None),
            "variant": ("variant", lambda a: a.variant.letter, None),
            "assigned_at": "assigned_at",
        },
    ),
    "campaigns.Delivery": (
        "messages",
        {
            "campaign": "campaign",
            "is_control": "is_control",
            "variant": ("variant", lambda d: d.variant.label if d.variant else None, None),
            "variant_test": "variant_test",
            "status": "status",
            "reason": "reason",
            "title": "title",
            "body": "body",
            "items": ("items", _items, lambda v: [i["external_id"] for i in v]),
            "attempts": "attempts",
            "error": "error",
            "created_at": "created_at",
            "due_at": "due_at",
            "deferred_until": "deferred_until",
            "claimed_at": "claimed_at",
            "sent_at": "sent_at",
            "delivered_at": "delivered_at",
            "opened_at": "opened_at",
            "clicked_at": "clicked_at",
            "converted_at": "converted_at",
            "revenue": "revenue",
        },
    ),
}

NOT_PERSONAL = {
    "profiles.Customer": {"id": "the platform's internal row number"},
    "profiles.Event": {"id": "internal row number", "customer": "the customer themself"},
    "profiles.Profile": {"customer": "the customer themself", "run": "which recomputation step wrote the row"},
    "profiles.ConsentChange": {
        "id": "internal row number",
        "customer": "the customer themself",
        "changed_by": "the operator's account, not the customer's data",
    },
    "segments.Membership": {"id": "internal row number", "customer": "the customer themself"},
    "recommendations.Recommendation": {
        "id": "internal row number",
        "customer": "the customer themself",
        "run": "which recommender run computed it; only the active run's are served and exported",
    },
    "recommendations.Impression": {"id": "internal row number", "customer": "the customer themself"},
    "experiments.Assignment": {"id": "internal row number", "customer": "the customer themself"},
    "campaigns.Delivery": {
        "id": "internal row number",
        "customer": "the customer themself",
        "provider_key": "idempotency key built from campaign and delivery ids",
        "claim": "the id of the task attempt that sent it",
    },
}

# Models without a key to Customer that may hold a copy of a customer's identity in text.
COPIES = {
    "admin.LogEntry": "the admin's history of operators' actions: names the customer (object_repr); rewritten on "
    "forgetting",
    "accounts.AuditEntry": "the audit log: names the customer by external id; rewritten to the pseudonym on forgetting",
}

# Rows that still point to the customer's (now anonymous) row after forgetting.
KEPT_AFTER_FORGET = {
    "profiles.Customer": "the anonymous row itself: pseudonym, no name, email, attributes or consent",
    "campaigns.Delivery": "campaign reports keep counting it; title, body, items and error text are emptied",
}

TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField, models.GenericIPAddressField)


def _customer_models():
    return {
        m._meta.label: m
        for m in apps.get_models()
        if m is Customer
        or any(getattr(f, "related_model", None) is Customer and f.concrete for f in m._meta.get_fields())
    }


def _profile_fields():
    model = apps.get_model("profiles.Profile")
    return {f.name: f.name for f in model._meta.concrete_fields if f.name not in NOT_PERSONAL["profiles.Profile"]}


EXPORTED["profiles.Profile"] = ("profile", _profile_fields())


def _json(value):
    return None if value is None else json.loads(JSONRenderer().render(value))


def _same(a, b) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


@pytest.fixture
def shop(db, committed, admin_user):
    now = timezone.now()
    people = [
        CustomerRow(
            external_id=EXT, name=NAME, email=EMAIL, consent_email=True, attributes={"tier": "gold", "contact": EMAIL}
        )
    ]
    people += [CustomerRow(external_id=f"w{i}", name=f"Walker {i}") for i in range(24)]
    ingest(
        customers=people,
        events=[
            EventRow(
                external_id=f"we{i}",
                customer=people[i % 25]["external_id"],
                item=f"sku{(i * 3) % 15}",
                type=["view", "purchase"][(i // 25) % 2],
                amount=19.9 if (i // 25) % 2 else None,
                occurred_at=now - timedelta(days=i % 40),
                context={"device": "app", "note": f"by {people[i % 25]['name']}"},
            )
            for i in range(250)
        ],
    )
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"]))
    assert run.status == "succeeded", run.error
    app_users = SegmentFactory(name="App users", rule={"consent": "in_app"})
    campaign = CampaignFactory(
        name="Picks",
        kind="products",
        recommendation_count=2,
        control_percent=0,
        body_template="{% for i in items %}{{ i.title }} {% endfor %}",
        segments=[app_users],
    )
    committed(campaign_services.campaign_launch, campaign=campaign)
    customer = Customer.objects.get(external_id=EXT)
    Delivery.objects.filter(customer=customer).update(
        error=f"earlier attempt: 550 <{EMAIL}> unknown",
        delivered_at=now,
        opened_at=now,
        converted_at=now,
        revenue=Decimal("42.50"),
    )
    impressions_record(
        customer_ids=[customer.pk],
        item_ids=[Delivery.objects.get(customer=customer).items[0]],
        shown_at=now,
        source="page:home",
        channel="experiment-1-2",
    )
    # an experiment put them in a variant
    config = RecommenderConfig.objects.get_or_create(name="Walk default", defaults={"algorithm": "pure_svd"})[0]
    experiment = Experiment.objects.create(name="Walk test", status="stopped")
    variant = Variant.objects.create(experiment=experiment, position=1, config=config, share=50)
    Assignment.objects.create(experiment=experiment, customer=customer, variant=variant)
    # the operators' logs name the customer
    from django.contrib import admin

    request = RequestFactory().post("/admin/")
    request.user = admin_user
    admin.site._registry[Customer].log_change(request, customer, [{"changed": {"fields": ["Name", "Email"]}}])
    services.customer_consent_set(customer=customer, source="admin", user=admin_user, consent_push=True)
    return campaign


def test_every_model_holding_a_customer_key_is_declared():
    found = _customer_models()
    undeclared = sorted(set(found) - set(EXPORTED))
    assert not undeclared, f"models with a key to Customer that the export and this walk do not cover: {undeclared}"
    for label, model in found.items():
        fields = {f.name for f in model._meta.concrete_fields}
        exported, not_personal = set(EXPORTED[label][1]), set(NOT_PERSONAL.get(label, {}))
        assert not exported & not_personal, (label, exported & not_personal)
        assert fields == exported | not_personal, (
            f"{label}: fields neither exported nor declared not personal: {sorted(fields - exported - not_personal)}; "
            f"declared but gone: {sorted((exported | not_personal) - fields)}"
        )
        assert all(reason.strip() for reason in NOT_PERSONAL.get(label, {}).values())
    for label in COPIES:
        apps.get_model(label)  # still there


def test_the_export_holds_every_personal_field_of_every_such_model(shop):
    customer = Customer.objects.get(external_id=EXT)
    body = key_client("manage_customers").get(f"/api/customers/{EXT}/export/").json()
    checked = 0
    for label, model in _customer_models().items():
        section, fields = EXPORTED[label]
        exported = body[section]
        exported = exported if isinstance(exported, list) else [exported]
        if model is Customer:
            rows = [customer]
        else:
            key = next(f.name for f in model._meta.concrete_fields if getattr(f, "related_model", None) is Customer)
            rows = list(model.objects.filter(**{key: customer}))
            if label == "recommendations.Recommendation":
                rows = [r for r in rows if r.run.is_active]
        assert rows, f"the fixture holds no {label} row for the customer; the walk would check nothing"
        assert len(exported) == len(rows), (label, len(exported), len(rows))
        for row in rows:
            for field, spec in fields.items():
                key, expected_of, exported_of = (spec, None, None) if isinstance(spec, str) else spec
                if expected_of:
                    expected = _json(expected_of(row))
                else:
                    value = getattr(row, field)
                    expected = _json(_natural(value) if isinstance(value, models.Model) else value)
                values = [_json(e[key]) for e in exported if key in e]
                if exported_of:
                    values = [exported_of(v) for v in values]
                assert any(_same(v, expected) for v in values), (
                    f"{label}.{field} = {expected!r} is not in export[{section!r}][*][{key!r}]"
                )
                checked += 1
    assert checked > 60


def _holds(text: str) -> list[str]:
    low = text.lower()
    return [needle for needle in (EXT, EMAIL, NAME) if needle.lower() in low]


def test_after_forgetting_no_model_holds_the_customer(shop):
    customer = Customer.objects.get(external_id=EXT)
    assert LogEntry.objects.filter(object_repr__contains=EXT).exists()  # the fixture did put copies there
    assert key_client("manage_customers").delete(f"/api/customers/{EXT}/").status_code == 200
    # no row still points to them, but those declared
    for label, model in _customer_models().items():
        if label in KEPT_AFTER_FORGET:
            continue
        for f in model._meta.concrete_fields:
            if getattr(f, "related_model", None) is Customer:
                assert not model.objects.filter(**{f.name: customer}).exists(), (
                    f"{label}.{f.name} still points to the forgotten customer"
                )
    # no text column of any model, ours or third-party, holds their external id, email or name
    leaks = []
    for model in apps.get_models():
        if not model._meta.managed:
            continue
        text = [f.attname for f in model._meta.concrete_fields if isinstance(f, TEXT_FIELDS)]
        if not text:
            continue
        for values in model.objects.values_list(*text):
            for name, value in zip(text, values, strict=False):
                if value is None:
                    continue
                found = _holds(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
                if found:
                    leaks.append(f"{model._meta.label}.{name}: {found}")
    assert not leaks, leaks
    # the rows kept are anonymous and still counted
    kept = Delivery.objects.get(customer=customer)
    assert kept.status == "sent" and kept.revenue == Decimal("42.50") and kept.items == [] and kept.title == ""
