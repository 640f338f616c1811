"""Rule segments: the grammar's validation, exact audiences, the `not` complement, one-query SQL, refreshes."""

from __future__ import annotations

import random
from datetime import timedelta

import pandas as pd
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles.models import Customer, Item, Profile
from profiles.services import events_ingest
from segments.models import Membership, Segment, SegmentSize
from segments.rules import (
    RuleError,
    compile_rule,
    describe_rule,
    refresh_rule_memberships,
    rule_audience_size,
    rule_queryset,
    rule_refresh_order,
    validate_rule,
)

pytestmark = pytest.mark.django_db

NOW = pd.Timestamp("2025-06-01 12:00", tz="UTC").to_pydatetime()

ITEMS = [  # kind, external_id, category
    ("product", "book-1", "Books"),
    ("product", "book-2", "Books"),
    ("product", "rake", "Garden"),
    ("product", "phone", "Electronics"),
    ("activity", "spring-sale", "Promotions"),
    ("post", "post-1", "Community"),
]

# customer, type, item kind, item, days ago, amount
EVENTS = [
    # A loyal book buyer: 3 book purchases in 90 days, and views.
    ("books", "purchase", "product", "book-1", 5, 30),
    ("books", "purchase", "product", "book-2", 20, 25),
    ("books", "purchase", "product", "book-1", 60, 30),
    ("books", "view", "product", "rake", 2, None),
    ("books", "view", "product", "book-2", 21, None),
    # Bought once, long ago, garden.
    ("lapsed", "purchase", "product", "rake", 200, 45),
    ("lapsed", "view", "product", "rake", 201, None),
    # Two purchases, both 100+ days ago.
    ("atrisk", "purchase", "product", "book-1", 100, 300),
    ("atrisk", "purchase", "product", "phone", 150, 220),
    ("atrisk", "view", "product", "book-2", 10, None),
    ("atrisk", "click", "activity", "spring-sale", 4, None),
    # Views books recently, never buys.
    ("viewer", "view", "product", "book-1", 10, None),
    ("viewer", "view", "product", "book-2", 3, None),
    ("viewer", "add_to_cart", "product", "book-2", 3, None),
    # Bought a phone and sent it back.
    ("returner", "purchase", "product", "phone", 40, 400),
    ("returner", "return", "product", "phone", 30, 400),
    ("returner", "view", "product", "book-1", 100, None),
    # Fresh customer: events but no profile computed yet.
    ("fresh", "view", "product", "rake", 1, None),
    ("fresh", "purchase", "product", "rake", 1, 45),
    # Community member: likes and comments on posts, never buys.
    ("community", "like", "post", "post-1", 7, None),
    ("community", "like", "post", "post-1", 8, None),
    ("community", "comment", "post", "post-1", 8, None),
]

PROFILES = {  # customer -> profile fields (others default)
    "books": dict(
        recency_days=5.0,
        frequency=3,
        monetary=600.0,
        avg_order_value=200.0,
        r_score=5,
        f_score=5,
        m_score=5,
        rfm_code="555",
        top_category="Books",
        price_band="mid",
        lifecycle="active",
        events_30d=3,
        orders_total=3,
        median_price=25.0,
    ),
    "lapsed": dict(
        recency_days=200.0,
        frequency=1,
        monetary=45.0,
        avg_order_value=45.0,
        r_score=1,
        f_score=1,
        m_score=1,
        rfm_code="111",
        top_category="Garden",
        price_band="low",
        lifecycle="lapsed",
        orders_total=1,
        median_price=45.0,
    ),
    "atrisk": dict(
        recency_days=100.0,
        frequency=2,
        monetary=520.0,
        avg_order_value=260.0,
        r_score=2,
        f_score=3,
        m_score=4,
        rfm_code="234",
        top_category="Books",
        price_band="high",
        lifecycle="at-risk",
        orders_total=2,
        median_price=300.0,
    ),
    "viewer": dict(
        recency_days=None,
        frequency=0,
        monetary=0.0,
        rfm_code="000",
        top_category="Books",
        price_band="mid",
        lifecycle="never-bought",
        events_30d=3,
    ),
    "returner": dict(
        recency_days=40.0,
        frequency=1,
        monetary=0.0,
        avg_order_value=0.0,
        r_score=3,
        f_score=1,
        m_score=1,
        rfm_code="311",
        top_category="Electronics",
        price_band="high",
        lifecycle="active",
        orders_total=1,
        median_price=400.0,
    ),
    "community": dict(
        recency_days=None,
        monetary=0.0,
        rfm_code="000",
        top_category="",
        price_band="",
        lifecycle="never-bought",
        community_likes=2,
        community_comments=1,
        events_30d=3,
    ),
}

CONSENTS = {  # customer -> (in_app, email, push)
    "books": (True, True, False),
    "lapsed": (True, False, False),
    "atrisk": (True, True, True),
    "viewer": (False, True, False),
    "returner": (True, False, True),
    "fresh": (True, False, False),
    "community": (True, False, False),
    "ghost": (False, False, True),
}

EVERYONE = set(CONSENTS)


def ingest(events, *, prefix="e"):
    rows = pd.DataFrame(
        [
            {
                "external_id": f"{prefix}{i}",
                "customer": c,
                "item_kind": kind,
                "item": item,
                "type": t,
                "value": None,
                "amount": amount,
                "occurred_at": NOW - timedelta(days=days, minutes=1),
                "context": {},
            }
            for i, (c, t, kind, item, days, amount) in enumerate(events)
        ]
    )
    result = events_ingest(rows=rows, create_unknown=True, now=NOW)
    assert result.created == len(events), result.errors


@pytest.fixture
def shop():
    """Given a small shop: customers with and without profiles and events, items in categories."""
    Item.objects.bulk_create([Item(kind=k, external_id=e, title=e, category=c) for k, e, c in ITEMS])
    ingest(EVENTS)
    Customer.objects.create(external_id="ghost")  # no events, no profile
    for ext, (in_app, email, push) in CONSENTS.items():
        Customer.objects.filter(external_id=ext).update(consent_in_app=in_app, consent_email=email, consent_push=push)
    ids = dict(Customer.objects.values_list("external_id", "pk"))
    Profile.objects.bulk_create(
        [Profile(customer_id=ids[ext], computed_at=NOW, **fields) for ext, fields in PROFILES.items()]
    )
    return ids


def audience(rule) -> set[str]:
    return set(rule_queryset(rule, now=NOW).values_list("external_id", flat=True))


# --- an independent evaluator: plain Python over the same data -------------------------------------


def py_world():
    """Everything a rule can read, loaded into plain Python structures."""
    items = {i.pk: i for i in Item.objects.all()}
    world = {}
    for c in Customer.objects.all():
        prof = Profile.objects.filter(customer=c).values().first()
        events = [{"type": e.type, "at": e.occurred_at, "item": items.get(e.item_id)} for e in c.events.all()]
        members = set(Membership.objects.filter(customer=c).values_list("segment_id", flat=True))
        world[c.external_id] = {"customer": c, "profile": prof, "events": events, "segments": members}
    return world


def py_match(rule, who) -> bool:
    if "all" in rule:
        return all(py_match(r, who) for r in rule["all"])
    if "any" in rule:
        return any(py_match(r, who) for r in rule["any"])
    if "not" in rule:
        return not py_match(rule["not"], who)
    if "consent" in rule:
        return getattr(who["customer"], "consent_" + rule["consent"])
    if "segment" in rule:
        return rule["segment"] in who["segments"]
    if "event" in rule:
        spec = rule["event"]
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        n = sum(
            1
            for e in who["events"]
            if e["type"] in types
            and ("within_days" not in spec or e["at"] >= NOW - timedelta(days=spec["within_days"]))
            and ("category" not in spec or (e["item"] is not None and e["item"].category == spec["category"]))
            and ("item_kind" not in spec or (e["item"] is not None and e["item"].kind == spec["item_kind"]))
            and ("item" not in spec or (e["item"] is not None and e["item"].external_id == spec["item"]))
        )
        hi = spec.get("max_count")
        lo = spec.get("min_count", 1 if hi is None else 0)
        return n >= lo and (hi is None or n <= hi)
    prof, field, op, value = who["profile"], rule["field"], rule["op"], rule.get("value")
    v = None if prof is None else prof[field]
    if v == "":
        v = None
    if op == "is null":
        return v is None
    if op == "is not null":
        return v is not None
    if v is None:
        return False
    return {
        "=": lambda: v == value,
        "!=": lambda: v != value,
        "<": lambda: v < value,
        "<=": lambda: v <= value,
        ">": lambda: v > value,
        ">=": lambda: v >= value,
        "in": lambda: v in value,
        "not in": lambda: v not in value,
        "between": lambda: value[0] <= v <= value[1],
        "startswith": lambda: v.startswith(value),
        "matches": lambda: all(p in ("*", ch) for p, ch in zip(value, v, strict=False)),
    }[op]()


def py_audience(rule, world) -> set[str]:
    return {ext for ext, who in world.items() if py_match(rule, who)}


# --- exact audiences, one kind of condition at a time ----------------------------------------------


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({"field": "recency_days", "op": "<=", "value": 30}, {"books"}),
        ({"field": "recency_days", "op": "<=", "value": 100}, {"books", "atrisk", "returner"}),
        ({"field": "monetary", "op": ">=", "value": 500}, {"books", "atrisk"}),
        ({"field": "monetary", "op": "between", "value": [40, 520]}, {"lapsed", "atrisk"}),
        ({"field": "frequency", "op": "in", "value": [1, 2]}, {"lapsed", "atrisk", "returner"}),
        ({"field": "lifecycle", "op": "=", "value": "at-risk"}, {"atrisk"}),
        ({"field": "lifecycle", "op": "!=", "value": "never-bought"}, {"books", "lapsed", "atrisk", "returner"}),
        ({"field": "lifecycle", "op": "not in", "value": ["active", "never-bought"]}, {"lapsed", "atrisk"}),
        ({"field": "top_category", "op": "=", "value": "Books"}, {"books", "atrisk", "viewer"}),
        ({"field": "top_category", "op": "!=", "value": "Books"}, {"lapsed", "returner"}),
        ({"field": "top_category", "op": "is null"}, {"community", "fresh", "ghost"}),
        ({"field": "price_band", "op": "in", "value": ["high"]}, {"atrisk", "returner"}),
        ({"field": "rfm_code", "op": "=", "value": "555"}, {"books"}),
        ({"field": "rfm_code", "op": "in", "value": ["111", "311"]}, {"lapsed", "returner"}),
        ({"field": "rfm_code", "op": "startswith", "value": "3"}, {"returner"}),
        ({"field": "rfm_code", "op": "matches", "value": "**1"}, {"lapsed", "returner"}),
        ({"field": "rfm_code", "op": "matches", "value": "2*4"}, {"atrisk"}),
        ({"field": "recency_days", "op": "is null"}, {"viewer", "community", "fresh", "ghost"}),
        ({"field": "recency_days", "op": "is not null"}, {"books", "lapsed", "atrisk", "returner"}),
        ({"field": "recency_days", "op": "!=", "value": 5}, {"lapsed", "atrisk", "returner"}),
        ({"field": "frequency", "op": "is null"}, {"fresh", "ghost"}),
        ({"field": "community_likes", "op": ">", "value": 0}, {"community"}),
    ],
)
def test_profile_conditions_select_exactly_the_matching_customers(shop, rule, expected):
    assert audience(rule) == expected


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({"consent": "email"}, {"books", "atrisk", "viewer"}),
        ({"consent": "push"}, {"atrisk", "returner", "ghost"}),
        ({"consent": "in_app"}, EVERYONE - {"viewer", "ghost"}),
    ],
)
def test_consent_conditions(shop, rule, expected):
    assert audience(rule) == expected


@pytest.mark.parametrize(
    "rule, expected",
    [
        # did purchase at least N times in the last D days
        ({"event": {"type": "purchase", "min_count": 3, "within_days": 90}}, {"books"}),
        ({"event": {"type": "purchase", "min_count": 2}}, {"books", "atrisk"}),
        ({"event": {"type": "purchase", "within_days": 90}}, {"books", "returner", "fresh"}),
        ({"event": {"type": "purchase", "within_days": 90, "category": "Books"}}, {"books"}),
        ({"event": {"type": "purchase", "category": "Books"}}, {"books", "atrisk"}),
        ({"event": {"type": "purchase", "item": "phone"}}, {"atrisk", "returner"}),
        ({"event": {"type": "click", "item_kind": "activity"}}, {"atrisk"}),
        ({"event": {"type": ["like", "comment"], "min_count": 3}}, {"community"}),
        # never did X, two spellings
        ({"not": {"event": {"type": "purchase"}}}, {"viewer", "community", "ghost"}),
        ({"event": {"type": "purchase", "max_count": 0}}, {"viewer", "community", "ghost"}),
        ({"event": {"type": "purchase", "min_count": 1, "max_count": 2}}, {"lapsed", "atrisk", "returner", "fresh"}),
        ({"event": {"type": "return"}}, {"returner"}),
        # viewed category C in the last D days but did not buy (in C, in those days)
        (
            {
                "all": [
                    {"event": {"type": "view", "category": "Books", "within_days": 30}},
                    {"not": {"event": {"type": "purchase", "category": "Books", "within_days": 30}}},
                ]
            },
            {"atrisk", "viewer"},
        ),
    ],
)
def test_behaviour_conditions(shop, rule, expected):
    assert audience(rule) == expected


def test_the_window_is_anchored_at_now(shop):
    rule = {"event": {"type": "purchase", "within_days": 30}}
    assert audience(rule) == {"books", "fresh"}
    assert set(rule_queryset(rule, now=NOW + timedelta(days=26)).values_list("external_id", flat=True)) == {"fresh"}


def test_membership_of_other_segments(shop):
    vip = Segment.objects.create(name="VIP", kind="rule", rule={"field": "monetary", "op": ">=", "value": 500})
    refresh_rule_memberships(vip, now=NOW)
    assert audience({"segment": vip.pk}) == {"books", "atrisk"}
    assert audience({"all": [{"segment": vip.pk}, {"consent": "push"}]}) == {"atrisk"}
    assert audience({"not": {"segment": vip.pk}}) == EVERYONE - {"books", "atrisk"}


def test_nested_combinations(shop):
    # recency_days <= 30 OR (lifecycle = at-risk AND purchased >= 2 times), and email consent, and not a returner
    rule = {
        "all": [
            {
                "any": [
                    {"field": "recency_days", "op": "<=", "value": 30},
                    {
                        "all": [
                            {"field": "lifecycle", "op": "=", "value": "at-risk"},
                            {"event": {"type": "purchase", "min_count": 2}},
                        ]
                    },
                ]
            },
            {"consent": "email"},
            {"not": {"event": {"type": "return"}}},
        ]
    }
    assert audience(rule) == {"books", "atrisk"}
    assert audience({"not": rule}) == EVERYONE - {"books", "atrisk"}
    deep = {
        "not": {"not": {"not": {"any": [{"not": {"consent": "email"}}, {"field": "top_category", "op": "is null"}]}}}
    }
    assert audience(deep) == {"books", "atrisk", "viewer"}


# --- not is a true complement ----------------------------------------------------------------------

COMPLEMENT_CASES = [
    {"field": "recency_days", "op": "<=", "value": 30},
    {"field": "recency_days", "op": "!=", "value": 5},
    {"field": "recency_days", "op": "is null"},
    {"field": "top_category", "op": "!=", "value": "Books"},
    {"field": "price_band", "op": "not in", "value": ["mid"]},
    {"field": "lifecycle", "op": "=", "value": "never-bought"},
    {"field": "rfm_code", "op": "matches", "value": "*1*"},
    {"consent": "email"},
    {"event": {"type": "purchase", "min_count": 2, "within_days": 365}},
    {"event": {"type": "view", "max_count": 1}},
    {"any": [{"field": "monetary", "op": ">", "value": 100}, {"event": {"type": "return"}}]},
    {"all": [{"field": "monetary", "op": "<", "value": 100}, {"not": {"consent": "in_app"}}]},
]


@pytest.mark.parametrize("rule", COMPLEMENT_CASES)
def test_not_is_the_complement_over_all_customers(shop, rule):
    inside, outside = audience(rule), audience({"not": rule})
    assert inside | outside == EVERYONE
    assert not inside & outside
    # Customers without a profile (fresh, ghost) or without events (ghost) land on one side or the other.
    assert {"fresh", "ghost"} <= inside | outside
    assert rule_audience_size(rule, now=NOW) + rule_audience_size({"not": rule}, now=NOW) == Customer.objects.count()


def test_customers_without_profile_match_no_profile_condition_except_is_null(shop):
    for field in ("recency_days", "monetary", "lifecycle", "rfm_code", "top_category"):
        assert "fresh" not in audience({"field": field, "op": "is not null"})
        assert {"fresh", "ghost"} <= audience({"field": field, "op": "is null"})
    assert "ghost" not in audience({"field": "monetary", "op": ">=", "value": 0})
    assert "ghost" in audience({"not": {"field": "monetary", "op": ">=", "value": 0}})


# --- agreement with an independent computation -----------------------------------------------------


def random_rule(rng: random.Random, depth: int = 0):
    if depth < 3 and rng.random() < 0.4:
        kind = rng.choice(["all", "any", "not"])
        if kind == "not":
            return {"not": random_rule(rng, depth + 1)}
        return {kind: [random_rule(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    leaf = rng.choice(["num", "num", "choice", "text", "rfm", "null", "consent", "event", "event"])
    if leaf == "num":
        field = rng.choice(["recency_days", "monetary", "frequency", "avg_order_value", "median_price", "events_30d"])
        op = rng.choice(["=", "!=", "<", "<=", ">", ">=", "in", "not in", "between"])
        pool = [0, 1, 2, 5, 40, 45, 100, 200, 300, 520, 600]
        value = (
            sorted(rng.sample(pool, 2))
            if op == "between"
            else rng.sample(pool, rng.randint(1, 3))
            if op in ("in", "not in")
            else rng.choice(pool)
        )
        return {"field": field, "op": op, "value": value}
    if leaf == "choice":
        return rng.choice(
            [
                {
                    "field": "lifecycle",
                    "op": rng.choice(["=", "!="]),
                    "value": rng.choice(["active", "at-risk", "never-bought"]),
                },
                {
                    "field": "price_band",
                    "op": rng.choice(["in", "not in"]),
                    "value": rng.sample(["low", "mid", "high"], 2),
                },
            ]
        )
    if leaf == "text":
        return {
            "field": "top_category",
            "op": rng.choice(["=", "!="]),
            "value": rng.choice(["Books", "Garden", "Toys"]),
        }
    if leaf == "rfm":
        return rng.choice(
            [
                {"field": "rfm_code", "op": "startswith", "value": rng.choice(["1", "2", "3", "5", "55", "0"])},
                {"field": "rfm_code", "op": "matches", "value": rng.choice(["**1", "5*5", "*1*", "0**"])},
                {"field": "rfm_code", "op": "!=", "value": rng.choice(["111", "000", "555"])},
            ]
        )
    if leaf == "null":
        return {
            "field": rng.choice(["recency_days", "top_category", "price_band", "monetary"]),
            "op": rng.choice(["is null", "is not null"]),
        }
    if leaf == "consent":
        return {"consent": rng.choice(["in_app", "email", "push"])}
    spec = {"type": rng.choice(["purchase", "view", "return", "like", ["view", "purchase"]])}
    if rng.random() < 0.6:
        spec["within_days"] = rng.choice([7, 30, 90, 365])
    if rng.random() < 0.4:
        spec["category"] = rng.choice(["Books", "Garden", "Electronics"])
    if rng.random() < 0.5:
        spec["min_count"] = rng.randint(1, 3)
    if rng.random() < 0.3:
        spec["max_count"] = spec.get("min_count", 0) + rng.randint(0, 1)
    return {"event": spec}


def test_audiences_agree_with_a_plain_python_filter(shop):
    vip = Segment.objects.create(name="VIP", kind="rule", rule={"field": "monetary", "op": ">=", "value": 500})
    refresh_rule_memberships(vip, now=NOW)
    world = py_world()
    rng = random.Random(20250601)
    rules = [random_rule(rng) for _ in range(150)] + [{"any": [{"segment": vip.pk}, {"consent": "push"}]}]
    for rule in rules:
        assert audience(rule) == py_audience(rule, world), rule
        assert audience({"not": rule}) == EVERYONE - py_audience(rule, world), rule


# --- validation names the bad part -----------------------------------------------------------------


def errors_of(rule, **kwargs) -> dict[str, str]:
    with pytest.raises(RuleError) as caught:
        validate_rule(rule, **kwargs)
    return {e["path"]: e["message"] for e in caught.value.errors}


@pytest.mark.parametrize(
    "rule, path, fragment",
    [
        ({"field": "recency", "op": "<=", "value": 30}, "field", "unknown profile field"),
        (
            {"all": [{"consent": "email"}, {"field": "lifecycle", "op": "<", "value": "active"}]},
            "all[1].op",
            "does not apply to lifecycle",
        ),
        ({"field": "rfm_code", "op": ">=", "value": "500"}, "op", "does not apply"),
        ({"field": "monetary", "op": ">=", "value": "500"}, "value", "expected a number"),
        ({"field": "monetary", "op": ">=", "value": True}, "value", "expected a number"),
        ({"field": "monetary", "op": "between", "value": [500]}, "value", "two numbers"),
        ({"field": "monetary", "op": "between", "value": [500, 100]}, "value", "low end"),
        ({"field": "monetary", "op": "in", "value": [1, "x"]}, "value[1]", "expected a number"),
        ({"field": "monetary", "op": "is null", "value": 3}, "value", "left out"),
        ({"field": "monetary", "op": ">="}, "value", "is required"),
        ({"any": [{"field": "lifecycle", "op": "=", "value": "at_risk"}]}, "any[0].value", "unknown lifecycle"),
        ({"field": "lifecycle", "op": "in", "value": ["active", "dormant"]}, "value[1]", "unknown lifecycle"),
        ({"field": "rfm_code", "op": "=", "value": "56"}, "value", "RFM code"),
        ({"field": "rfm_code", "op": "=", "value": "561"}, "value", "RFM code"),
        ({"field": "rfm_code", "op": "matches", "value": "5?5"}, "value", "for any"),
        (
            {"all": [{"consent": "email"}, {"consent": "email"}, {"event": {"type": "purchase", "within_days": -3}}]},
            "all[2].event.within_days",
            "positive whole number of days",
        ),
        ({"event": {"type": "purchase", "within_days": 7.5}}, "event.within_days", "positive whole number of days"),
        ({"event": {"type": "buy"}}, "event.type", "unknown event type"),
        ({"event": {"type": ["view", "buy"]}}, "event.type[1]", "unknown event type"),
        ({"event": {"within_days": 3}}, "event.type", "is required"),
        ({"event": {"type": "purchase", "min_count": 3, "max_count": 1}}, "event.max_count", "below min_count"),
        ({"event": {"type": "purchase", "min_count": -1}}, "event.min_count", "0 or more"),
        ({"event": {"type": "purchase", "item_kind": "service"}}, "event.item_kind", "unknown item kind"),
        ({"event": {"type": "purchase", "days": 3}}, "event.days", "unknown key"),
        ({"not": {"consent": "sms"}}, "not.consent", "unknown consent channel"),
        ({"all": []}, "all", "non-empty list"),
        ({"any": [{"consent": "email"}, "x"]}, "any[1]", "must be an object"),
        ({"some": []}, "", "must have one of the keys"),
        ({"all": [{"consent": "email"}], "any": []}, "", "only one of"),
        ({"field": "monetary", "op": ">", "value": 1, "extra": 2}, "extra", "unknown key"),
        ({"segment": "vip"}, "segment", "id of a segment"),
        ({"segment": 987654}, "segment", "no segment with id 987654"),
    ],
)
def test_every_validation_error_names_its_path(rule, path, fragment):
    errors = errors_of(rule)
    assert path in errors, errors
    assert fragment in errors[path]


def test_all_errors_are_collected_not_just_the_first():
    rule = {
        "all": [
            {"field": "recency", "op": "<=", "value": 30},
            {
                "any": [
                    {"field": "lifecycle", "op": "=", "value": "sleepy"},
                    {"event": {"type": "purchase", "within_days": 0}},
                ]
            },
            {"not": {"consent": "fax"}},
        ]
    }
    errors = errors_of(rule)
    assert set(errors) == {
        "all[0].field",
        "all[1].any[0].value",
        "all[1].any[1].event.within_days",
        "all[2].not.consent",
    }
    with pytest.raises(RuleError) as caught:
        compile_rule(rule)
    assert len(caught.value.errors) == 4
    assert "all[0].field" in str(caught.value)


MAX_DEPTH = settings.RULE_MAX_DEPTH
MAX_NODES = settings.RULE_MAX_CONDITIONS


def test_too_deep_and_too_big_rules_are_refused():
    rule = {"consent": "email"}
    for _ in range(MAX_DEPTH + 5):
        rule = {"not": rule}
    errors = errors_of(rule)
    assert list(errors) == [".".join(["not"] * MAX_DEPTH)]
    assert f"deeper than {MAX_DEPTH}" in errors[".".join(["not"] * MAX_DEPTH)]
    # Exactly at the limit is fine.
    ok = {"consent": "email"}
    for _ in range(MAX_DEPTH - 1):
        ok = {"not": ok}
    validate_rule(ok)

    big = {"any": [{"consent": "email"}] * (MAX_NODES + 1)}
    errors = errors_of(big)
    assert f"at most {MAX_NODES} conditions" in errors[f"any[{MAX_NODES - 1}]"]
    validate_rule({"any": [{"consent": "email"}] * (MAX_NODES - 1)})


def test_segment_references_refuse_self_and_cycles(shop):
    a = Segment.objects.create(name="A", kind="rule", rule={"consent": "email"})
    b = Segment.objects.create(name="B", kind="rule", rule={"all": [{"segment": a.pk}, {"consent": "push"}]})
    c = Segment.objects.create(name="C", kind="rule", rule={"not": {"segment": b.pk}})
    cluster = Segment.objects.create(name="Cluster 0", kind="cluster")

    # Direct self-reference.
    assert "cannot refer to itself" in errors_of({"segment": a.pk}, segment_id=a.pk)["segment"]
    # A cycle through two other segments: editing A to refer to C (C -> B -> A).
    errors = errors_of({"any": [{"consent": "push"}, {"segment": c.pk}]}, segment_id=a.pk)
    assert "cycle" in errors["any[1].segment"]
    # No cycle: A may refer to the cluster segment; B and C stay valid.
    validate_rule({"segment": cluster.pk}, segment_id=a.pk)
    validate_rule(b.rule, segment_id=b.pk)
    validate_rule(c.rule, segment_id=c.pk)
    # A new segment (no id yet) may refer to anything that exists.
    validate_rule({"all": [{"segment": a.pk}, {"segment": c.pk}]})
    assert [s.name for s in rule_refresh_order([c, b, a])] == ["A", "B", "C"]


# --- one query, set-based --------------------------------------------------------------------------


def test_audience_size_is_one_count_query(shop, django_assert_num_queries):
    rule = {
        "all": [
            {"field": "recency_days", "op": "<=", "value": 100},
            {"any": [{"event": {"type": "purchase", "min_count": 3, "within_days": 90}}, {"consent": "push"}]},
            {"not": {"event": {"type": "return"}}},
        ]
    }
    with django_assert_num_queries(1) as ctx:
        assert rule_audience_size(rule, now=NOW) == 2
    assert "COUNT(" in ctx.captured_queries[0]["sql"].upper()


def test_no_per_customer_queries_over_300_customers(shop):
    many = [(f"bulk-{n:03d}", "purchase" if n % 3 else "view", "product", "book-1", n % 120, 20) for n in range(300)]
    ingest(many, prefix="bulk")
    assert Customer.objects.count() > 300
    rule = {
        "any": [
            {
                "all": [
                    {"event": {"type": "purchase", "min_count": 2, "within_days": 30, "category": "Books"}},
                    {"not": {"field": "lifecycle", "op": "=", "value": "lapsed"}},
                ]
            },
            {"all": [{"event": {"type": "purchase", "within_days": 10}}, {"event": {"type": "view", "max_count": 0}}]},
        ]
    }
    with CaptureQueriesContext(connection) as ctx:
        members = [c.external_id for c in rule_queryset(rule, now=NOW)]
    assert len(ctx.captured_queries) == 1
    assert len(members) == len(set(members))
    expected = py_audience(rule, py_world())
    assert set(members) == expected
    assert {"books"} | {f"bulk-{n:03d}" for n in range(300) if n % 3 and n % 120 < 10} == expected


def test_describe_rule_reads_as_english():
    rule = {
        "all": [
            {"field": "recency_days", "op": "<=", "value": 30},
            {
                "any": [
                    {"field": "lifecycle", "op": "=", "value": "at-risk"},
                    {"event": {"type": "purchase", "min_count": 3, "within_days": 90}},
                ]
            },
        ]
    }
    assert describe_rule(rule) == "recency_days ≤ 30 AND (lifecycle = at-risk OR purchased ≥ 3 times in 90 days)"
    assert describe_rule({"not": {"event": {"type": "return"}}}) == "NOT returned"
    assert (
        describe_rule({"event": {"type": "purchase", "max_count": 0, "within_days": 30}})
        == "never purchased in the last 30 days"
    )
    assert (
        describe_rule(
            {
                "all": [
                    {"event": {"type": "view", "category": "Books", "within_days": 14}},
                    {"not": {"event": {"type": "purchase", "category": "Books", "within_days": 14}}},
                ]
            }
        )
        == "viewed in Books in 14 days AND NOT purchased in Books in 14 days"
    )
    assert (
        describe_rule(
            {"all": [{"consent": "in_app"}, {"segment": 4}, {"field": "rfm_code", "op": "in", "value": ["555", "554"]}]}
        )
        == "consents to in-app AND in segment #4 AND rfm_code in (555, 554)"
    )


# --- refreshing memberships ------------------------------------------------------------------------


def test_refresh_replaces_members_keeps_since_and_records_the_size(shop):
    seg = Segment.objects.create(name="Big spenders", kind="rule", rule={"field": "monetary", "op": ">=", "value": 500})
    earlier = NOW - timedelta(days=30)
    Membership.objects.create(segment=seg, customer_id=shop["books"], since=earlier)  # stays
    Membership.objects.create(segment=seg, customer_id=shop["lapsed"], since=earlier)  # leaves
    other = Segment.objects.create(name="Other", kind="rule", rule={"consent": "email"})
    Membership.objects.create(segment=other, customer_id=shop["lapsed"], since=earlier)  # untouched

    size = refresh_rule_memberships(seg, now=NOW)

    assert size == 2
    since = dict(Membership.objects.filter(segment=seg).values_list("customer__external_id", "since"))
    assert set(since) == {"books", "atrisk"}
    assert since["books"] == earlier and since["atrisk"] == NOW
    assert Membership.objects.filter(segment=other).count() == 1
    seg.refresh_from_db()
    assert (seg.size, seg.refreshed_at, seg.members_version) == (2, NOW, 1)
    assert list(SegmentSize.objects.filter(segment=seg).values_list("size", "at")) == [(2, NOW)]

    # The rule changes; the next refresh follows it and bumps the version again.
    seg.rule = {"consent": "push"}
    seg.save(update_fields=["rule"])
    assert refresh_rule_memberships(seg, now=NOW + timedelta(hours=1)) == 3
    assert set(Membership.objects.filter(segment=seg).values_list("customer__external_id", flat=True)) == {
        "atrisk",
        "returner",
        "ghost",
    }
    seg.refresh_from_db()
    assert seg.members_version == 2
    assert SegmentSize.objects.filter(segment=seg).count() == 2


def test_a_failed_refresh_leaves_the_previous_members(shop, monkeypatch):
    seg = Segment.objects.create(name="Email", kind="rule", rule={"consent": "email"})
    refresh_rule_memberships(seg, now=NOW)
    before = set(Membership.objects.filter(segment=seg).values_list("customer_id", flat=True))
    seg.rule = {"consent": "push"}
    seg.save(update_fields=["rule"])

    class Boom:
        class objects:
            @staticmethod
            def using(db):
                raise RuntimeError("disk full")

    monkeypatch.setattr("segments.rules.SegmentSize", Boom)
    with pytest.raises(RuntimeError):
        refresh_rule_memberships(seg, now=NOW + timedelta(hours=1))
    assert set(Membership.objects.filter(segment=seg).values_list("customer_id", flat=True)) == before
    seg.refresh_from_db()
    assert seg.members_version == 1


def test_refresh_refuses_an_invalid_stored_rule(shop):
    seg = Segment.objects.create(name="Broken", kind="rule", rule={"field": "nope", "op": "=", "value": 1})
    with pytest.raises(RuleError):
        refresh_rule_memberships(seg, now=NOW)
    assert not Membership.objects.filter(segment=seg).exists()


def test_the_documented_example_reads_as_documented():
    rule = {
        "all": [
            {
                "any": [
                    {"field": "recency_days", "op": "<=", "value": 30},
                    {
                        "all": [
                            {"field": "lifecycle", "op": "=", "value": "at-risk"},
                            {"event": {"type": "purchase", "min_count": 3, "within_days": 90}},
                        ]
                    },
                ]
            },
            {"consent": "email"},
            {"not": {"segment": 4}},
        ]
    }
    assert describe_rule(rule) == (
        "(recency_days ≤ 30 OR (lifecycle = at-risk AND purchased ≥ 3 times in 90 days)) "
        "AND consents to email AND NOT in segment #4"
    )
    # A broken rule still gets a description instead of an exception in an admin list.
    assert isinstance(describe_rule({"all": [{"weird": 1}, 3]}), str)


def test_never_bought_rfm_code_and_other_edge_values_are_accepted(shop):
    validate_rule({"field": "rfm_code", "op": "=", "value": "000"})
    assert audience({"field": "rfm_code", "op": "=", "value": "000"}) == {"viewer", "community"}
    assert audience({"field": "monetary", "op": ">", "value": 519.5}) == {"books", "atrisk"}
    assert audience({"event": {"type": "view", "min_count": 0}}) == EVERYONE


def test_only_rule_segments_are_refreshed_here(shop):
    cluster = Segment.objects.create(name="Cluster 1", kind="cluster")
    with pytest.raises(ValueError):
        refresh_rule_memberships(cluster, now=NOW)
