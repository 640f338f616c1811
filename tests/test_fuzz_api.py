"""Property-based fuzzing of every write endpoint (issue #7, section 3).

Hypothesis builds batches that mix valid rows with hostile ones (wrong JSON types, missing and
extra fields, huge strings and numbers, NUL and lone surrogates, naive and far-future timestamps,
negative money, unknown event types, SQL and template injection strings), and raw bodies that are
not JSON, not UTF-8, nested too deeply or larger than the limit. The properties:

- never a 5xx;
- a 4xx answers in the API's one error shape, and a refused batch names the bad row and field;
- a refused batch writes nothing (customers, items and events are counted before and after);
- an accepted batch stores exactly its rows, with injection strings stored verbatim.

Each example runs inside a savepoint that is rolled back, so examples do not see each other's rows.
"""

import json
import math
from datetime import timedelta
from decimal import Decimal

import jsonschema
import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from common.schema import ERROR_ITEM_SCHEMA, ERROR_SCHEMA
from profiles.models import Customer, Event, Item
from tests import factories
from tests.factories import UserFactory, client_for

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

FUZZ = settings(
    deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# writes and deletes cost more per example: fewer of them keeps the whole file well under a minute
FUZZ_WRITES = settings(FUZZ, max_examples=8)

# --- hostile values ------------------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE profiles_event; --",
    "' OR '1'='1",
    "1; SELECT pg_sleep(1)",
    "{{ settings.SECRET_KEY }}",
    "{% debug %}",
    "{{ request.user.password }}",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "%s%s%s%n",
    "Robert'); DELETE FROM profiles_customer;--",
]
UNICODE_EDGES = ["é", "Ω≈ç√", "𝕏𝕐", "👩‍👩‍👧", "\u200b", "\u202e", "ﷺ", "Z̤͔ͧ̑", "日本語", "\ufeff"]
# Lone surrogates and NUL: valid JSON escapes, but no database can store them.
UNSTORABLE = ["\ud800", "a\udfffb", "\x00", "x\x00y"]

safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda s: s.strip()
)
ident = st.one_of(st.sampled_from(INJECTIONS + UNICODE_EDGES).map(lambda s: s[:120]), safe_text)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase", "favorite", "like", "comment", "share"]


def _now():
    return timezone.now()


def _aware(days_ago: float) -> str:
    return (_now() - timedelta(days=days_ago)).isoformat()


@st.composite
def good_event(draw, i: int = 0):
    etype = draw(st.sampled_from(EVENT_TYPES + ["rating"]))
    row = {
        "external_id": f"fz-{i}-{draw(st.uuids()).hex[:12]}",
        "customer": draw(ident),
        "item": draw(ident),
        "type": etype,
        "occurred_at": _aware(draw(st.floats(min_value=0.01, max_value=3000))),
        "context": {"note": draw(st.sampled_from(INJECTIONS + UNICODE_EDGES))},
    }
    if etype == "rating":
        row["value"] = draw(st.integers(min_value=0, max_value=10))
    elif etype in ("purchase", "add_to_cart"):
        row["value"] = draw(st.integers(min_value=1, max_value=50))
        row["amount"] = str(draw(st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False)))
    return row


# Each mutation turns a valid event into a bad one and names the field the error must blame.
def _mutations(draw):
    far_future = (_now() + timedelta(days=draw(st.integers(min_value=2, max_value=3000)))).isoformat()
    return [
        ("type", lambda r: r.update(type=draw(st.sampled_from(["teleport", "DROP TABLE", "{{ x }}", ""])))),
        ("type", lambda r: r.update(type=draw(st.sampled_from([1, [], {}, True])))),
        ("customer", lambda r: r.pop("customer")),
        ("customer", lambda r: r.update(customer=draw(st.sampled_from([[], {"a": 1}, True])))),
        ("customer", lambda r: r.update(customer="c" * draw(st.integers(min_value=129, max_value=5000)))),
        ("customer", lambda r: r.update(customer=draw(st.sampled_from(UNSTORABLE)))),
        ("item", lambda r: r.update(item=draw(st.sampled_from(UNSTORABLE)))),
        ("occurred_at", lambda r: r.update(occurred_at=(_now() - timedelta(days=1)).replace(tzinfo=None).isoformat())),
        ("occurred_at", lambda r: r.update(occurred_at=far_future)),
        (
            "occurred_at",
            lambda r: r.update(
                occurred_at=draw(
                    st.sampled_from(
                        ["9999-12-31T23:59:59+00:00", "1900-01-01T00:00:00Z", "yesterday", 1700000000, None]
                    )
                )
            ),
        ),
        (
            "amount",
            lambda r: r.update(
                type="purchase",
                value=1,
                amount=draw(st.sampled_from([-0.01, -5, "-1", "1e400", "Infinity", "NaN", "abc", 10**13, 10**400])),
            ),
        ),
        ("value", lambda r: r.update(type="purchase", value=draw(st.sampled_from([0, -3, "lots", [1], True])))),
        ("value", lambda r: r.update(type="rating", value=draw(st.sampled_from([11, -1, None, "1e999"])))),
        (
            "context",
            lambda r: r.update(
                context=draw(
                    st.sampled_from([[1], "not json", 5, {"k": "\x00"}, {"k": "\ud800"}, {"k": 1.5} and _deep(40)])
                )
            ),
        ),
        ("bogus", lambda r: r.update(bogus=draw(junk.filter(lambda v: v is not None)))),
    ]


def _deep(depth: int) -> dict:
    node: dict = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


@st.composite
def bad_event(draw, i: int = 0):
    row = draw(good_event(i))
    field, mutate = draw(st.sampled_from(_mutations(draw)))
    mutate(row)
    return row, field


# --- clients and helpers -------------------------------------------------------------------------


@pytest.fixture
def key_client(db):
    """The shop's backend: an API key with every write scope."""
    return factories.key_client("ingest_events", "manage_customers", "read_recommendations", name="fuzz")


def _counts():
    return Customer.objects.count(), Item.objects.count(), Event.objects.count()


class _Rollback(Exception):
    pass


def _isolated(fn):
    """Run fn() in a savepoint that is always rolled back: each example starts from the same data."""
    try:
        with transaction.atomic():
            fn()
            raise _Rollback
    except _Rollback:
        pass


def _post(client, url, body, **extra):
    if isinstance(body, (bytes, str)):
        data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        return client.generic("POST", url, data, content_type="application/json", **extra)
    return client.generic("POST", url, json.dumps(body), content_type="application/json", **extra)


# The schema's Error component, with its items in place: every refusal must match it exactly.
ERROR = {**ERROR_SCHEMA, "properties": {**ERROR_SCHEMA["properties"]}}
ERROR["properties"]["errors"] = {**ERROR_SCHEMA["properties"]["errors"], "items": ERROR_ITEM_SCHEMA}


def _assert_error_shape(resp):
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.content[:500])
    body = resp.json()
    jsonschema.validate(body, ERROR)  # what the OpenAPI schema promises for every 4xx
    assert isinstance(body["detail"], str) and body["detail"], body
    assert isinstance(body["errors"], list), body
    for err in body["errors"]:
        assert err.get("reason") or err.get("message"), err
        assert {"row", "field", "path"} & set(err), err
    return body


# --- properties: events --------------------------------------------------------------------------


@FUZZ_WRITES
@given(
    rows=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8).flatmap(
        lambda seeds: st.tuples(*[good_event(i) for i in range(len(seeds))])
    )
)
def test_valid_event_batches_are_stored_exactly_and_verbatim(key_client, rows):
    rows = list(rows)

    def check():
        before = _counts()
        resp = _post(key_client, "/api/events/", rows)
        assert resp.status_code == 201, resp.json()
        assert resp.json()["created"] == len(rows) and resp.json()["invalid"] == 0
        assert _counts()[2] == before[2] + len(rows)
        for row in rows:
            event = Event.objects.select_related("customer", "item").get(external_id=row["external_id"])
            # ids are stripped of surrounding whitespace, nothing else: injections are stored as text
            assert event.customer.external_id == row["customer"].strip()
            assert event.item.external_id == row["item"].strip()
            assert event.context == row["context"]
            assert event.type == row["type"]
            if "amount" in row:
                assert event.amount == Decimal(row["amount"]).quantize(Decimal("0.01"))

    _isolated(check)


@FUZZ_WRITES
@given(data=st.data(), n=st.integers(min_value=1, max_value=12))
def test_one_bad_row_anywhere_refuses_the_batch_names_it_and_writes_nothing(key_client, data, n):
    rows = [data.draw(good_event(i)) for i in range(n)]
    at = data.draw(st.integers(min_value=0, max_value=n))
    bad, field = data.draw(bad_event(n + 1))
    rows.insert(at, bad)

    def check():
        before = _counts()
        resp = _post(key_client, "/api/events/", rows)
        body = _assert_error_shape(resp)
        assert resp.status_code == 400
        assert "nothing was written" in body["detail"]
        assert {e["row"] for e in body["errors"]} == {at}, body
        error = body["errors"][0]
        assert error["field"] == field, (field, body)
        assert error["reason"]
        assert _counts() == before

    _isolated(check)


@FUZZ
@given(
    rows=st.lists(
        st.one_of(
            junk,
            st.dictionaries(
                st.sampled_from(["customer", "item", "type", "occurred_at", "value", "amount", "context", "x"]),
                junk,
                max_size=8,
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_arbitrary_junk_batches_never_fail_with_5xx_or_write_on_refusal(key_client, rows):
    def check():
        before = _counts()
        resp = _post(key_client, "/api/events/", rows)
        if resp.status_code == 201:
            assert _counts()[2] - before[2] == resp.json()["created"]
        else:
            body = _assert_error_shape(resp)
            assert _counts() == before
            if body.get("errors"):
                assert all(0 <= e["row"] < len(rows) for e in body["errors"]), body

    _isolated(check)


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                b"",
                b"null",
                b"{}",
                b"42",
                b'"x"',
                b"[NaN]",
                b"[Infinity]",
                b'[{"a": 1e99999}]',
                b"\xff\xfe[]",
                b'[{"customer": "\xe9"}]',
                '[{"customer": "é"}]'.encode("latin-1"),
                b"[" * 50_000,
                b'{"a":' * 20_000,
                b"[" + b"1," * 5 + b"]",
                b'[{"customer": "a", "item": "b", "type": "view", "occurred_at": "2025-01-01T00:00:00Z", "value": '
                + b"9" * 5000
                + b"}]",
            ]
        ),
    )
)
def test_raw_bodies_that_are_not_a_json_array_get_a_clear_400(key_client, body):
    array = _json_array(body)

    def check():
        before = _counts()
        resp = _post(key_client, "/api/events/", body)
        if array == []:  # b"[]" and friends (whitespace around it) are valid, empty batches
            assert resp.status_code == 201 and resp.json()["created"] == 0, resp.content[:300]
        else:  # not a JSON array, or one whose rows are not events
            assert resp.status_code == 400, (resp.status_code, resp.content[:300])
            assert _assert_error_shape(resp)["detail"]
        assert _counts() == before

    _isolated(check)


def _json_array(body: bytes) -> list | None:
    """The body as the API's parser reads it (UTF-8, strict JSON: no NaN or Infinity) when that is an
    array, else None."""

    def no_constants(name):
        raise ValueError(name)

    try:
        data = json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deeply, a number too long
        return None
    return data if isinstance(data, list) else None


@FUZZ
@given(body=st.sampled_from([b"[]", b" [ ] ", b"\n[]\n"]))
def test_an_empty_array_is_an_empty_batch(key_client, body):
    def check():
        resp = _post(key_client, "/api/events/", body)
        assert resp.status_code == 201 and resp.json()["created"] == 0, resp.content[:300]

    _isolated(check)


def test_a_batch_over_the_limit_is_refused_whole(key_client):
    rows = [{"customer": "c", "item": "i", "type": "view", "occurred_at": _aware(1)} for _ in range(6)]
    with override_settings(INGEST_MAX_BATCH=5):
        resp = _post(key_client, "/api/events/", rows)
    body = _assert_error_shape(resp)
    assert "at most 5 rows" in body["detail"] and "has 6" in body["detail"]
    assert _counts() == (0, 0, 0)


@FUZZ_WRITES
@given(
    size=st.integers(min_value=1, max_value=20),
    endpoint=st.sampled_from(["/api/events/", "/api/customers/", "/api/items/"]),
)
def test_a_body_over_the_size_limit_is_refused_with_413_before_parsing(key_client, size, endpoint):
    body = json.dumps([{"external_id": "x" * 100, "customer": "c", "type": "view", "occurred_at": _aware(1)}] * size)
    limit = len(body.encode()) - 1
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=limit):
        resp = _post(key_client, endpoint, body)
    assert resp.status_code == 413
    body_json = _assert_error_shape(resp)
    assert f"at most {limit}" in body_json["detail"]
    assert _counts() == (0, 0, 0)
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=limit + 1):  # one byte more and it is read
        assert _post(key_client, endpoint, body).status_code != 413


def test_deeply_nested_bodies_and_contexts_are_refused_not_crashed(key_client):
    resp = _post(key_client, "/api/events/", b"[" * 100_000)
    assert "nested too deeply" in _assert_error_shape(resp)["detail"]
    row = {"customer": "c", "item": "i", "type": "view", "occurred_at": _aware(1), "context": _deep(200)}
    body = _assert_error_shape(_post(key_client, "/api/events/", [row]))
    assert body["errors"] == [{"row": 0, "field": "context", "reason": "is nested deeper than 32 levels"}]
    assert _counts() == (0, 0, 0)


def test_unknown_field_named_with_a_lone_surrogate_is_reported_not_crashed(key_client):
    body = b'[{"customer": "c", "item": "i", "type": "view", "occurred_at": "2025-01-01T00:00:00Z", "\\ud800": 1}]'
    errors = _assert_error_shape(_post(key_client, "/api/events/", body))["errors"]
    assert errors[0]["row"] == 0 and errors[0]["field"] == "\\ud800" and "unknown field" in errors[0]["reason"]


# --- properties: customers and items -------------------------------------------------------------


@st.composite
def good_customer(draw, i: int):
    row = {"external_id": f"cu-{i}-{draw(ident)}"[:128]}
    if draw(st.booleans()):
        row["name"] = draw(st.sampled_from(INJECTIONS + UNICODE_EDGES))
    if draw(st.booleans()):
        row["email"] = f"user{i}@example.com"
    if draw(st.booleans()):
        row["consent_email"] = draw(st.booleans())
    if draw(st.booleans()):
        row["attributes"] = {"note": draw(st.sampled_from(INJECTIONS))}
    if draw(st.booleans()):
        row["time_zone"] = draw(st.sampled_from(["Europe/Paris", "UTC", "America/New_York"]))
    return row


CUSTOMER_MUTATIONS = [
    ("external_id", {"external_id": None}),
    ("external_id", {"external_id": ["a"]}),
    ("external_id", {"external_id": "x" * 129}),
    ("name", {"name": {"first": "a"}}),
    ("name", {"name": "n" * 201}),
    ("name", {"name": "\ud800"}),
    ("email", {"email": "not-an-email"}),
    ("email", {"email": "a" * 250 + "@example.com"}),
    ("time_zone", {"time_zone": "Mars/Olympus"}),
    ("consent_email", {"consent_email": "maybe"}),
    ("attributes", {"attributes": [1, 2]}),
    ("attributes", {"attributes": {"k": "\x00"}}),
    ("created_at", {"created_at": "2024-01-01T00:00:00"}),
    ("created_at", {"created_at": "2999-01-01T00:00:00Z"}),
]


@FUZZ_WRITES
@given(data=st.data(), n=st.integers(min_value=1, max_value=8))
def test_customer_batches_all_or_nothing(key_client, data, n):
    rows = [data.draw(good_customer(i)) for i in range(n)]
    # ids are unique per batch (a repeat is refused, which a later property covers)
    assume(len({r["external_id"].strip() for r in rows}) == n and all(r["external_id"].strip() for r in rows))
    bad_at = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=n - 1)))
    field = None
    if bad_at is not None:
        field, change = data.draw(st.sampled_from(CUSTOMER_MUTATIONS))
        rows[bad_at] = {**rows[bad_at], **change}

    def check():
        before = _counts()
        resp = _post(key_client, "/api/customers/", rows)
        if bad_at is None:
            assert resp.status_code == 201, resp.json()
            assert resp.json()["created"] == n
            for row in rows:
                customer = Customer.objects.get(external_id=row["external_id"].strip())
                if "name" in row:
                    assert customer.name == row["name"].strip()
                if "attributes" in row:
                    assert customer.attributes == row["attributes"]
        else:
            body = _assert_error_shape(resp)
            assert [(e["row"], e["field"]) for e in body["errors"]] == [(bad_at, field)], body
            assert _counts() == before

    _isolated(check)


ITEM_MUTATIONS = [
    ("price", {"price": -1}),
    ("price", {"price": "-0.01"}),
    ("price", {"price": 10**10}),  # numeric(12, 2) holds less than 10^10
    ("price", {"price": 9999999999.999}),  # rounds up past it
    ("price", {"price": "NaN"}),
    ("price", {"price": True}),
    ("kind", {"kind": "spaceship"}),
    ("kind", {"kind": {"a": 1}}),
    ("title", {"title": "t" * 301}),
    ("title", {"title": ["x"]}),
    ("title", {"title": "x\ud83d"}),
    ("category", {"category": "c" * 121}),
    ("active", {"active": "sometimes"}),
    ("external_id", {"external_id": "a\x00b"}),
]


@FUZZ
@given(data=st.data(), n=st.integers(min_value=1, max_value=8))
def test_item_batches_all_or_nothing(key_client, data, n):
    rows = [
        {
            "external_id": f"it-{i}",
            "title": data.draw(st.sampled_from(INJECTIONS + UNICODE_EDGES)),
            "price": str(data.draw(st.decimals(min_value=0, max_value=9_999_999_999, places=2, allow_nan=False))),
        }
        for i in range(n)
    ]
    bad_at = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=n - 1)))
    field = None
    if bad_at is not None:
        field, change = data.draw(st.sampled_from(ITEM_MUTATIONS))
        rows[bad_at] = {**rows[bad_at], **change}

    def check():
        before = _counts()
        resp = _post(key_client, "/api/items/", rows)
        if bad_at is None:
            assert resp.status_code == 201, resp.json()
            for row in rows:
                item = Item.objects.get(kind="product", external_id=row["external_id"])
                assert item.title == row["title"].strip()
                assert item.price == Decimal(row["price"]).quantize(Decimal("0.01"))
        else:
            body = _assert_error_shape(resp)
            assert [(e["row"], e["field"]) for e in body["errors"]] == [(bad_at, field)], body
            assert _counts() == before

    _isolated(check)


# --- the other write endpoints -------------------------------------------------------------------


@FUZZ
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {"customer": st.one_of(ident, junk, st.sampled_from(UNSTORABLE))}, optional={"ttl": junk}
        ),
        junk,
    )
)
def test_customer_token_endpoint_never_fails_with_5xx(key_client, body):
    def check():
        Customer.objects.get_or_create(external_id="known")
        resp = _post(key_client, "/api/customer-tokens/", body)
        if resp.status_code == 201:
            assert resp.json()["customer"] == body["customer"] and resp.json()["token"]
        else:
            _assert_error_shape(resp)

    _isolated(check)


@FUZZ_WRITES
@given(external_id=st.one_of(ident, st.text(max_size=300)))
def test_forgetting_a_customer_by_any_id_never_fails_with_5xx(db, external_id):
    from urllib.parse import quote

    # an empty id or one with a slash is another URL (Django's own 404 page), not this endpoint
    assume(external_id and "/" not in external_id and external_id not in (".", ".."))
    client = client_for(UserFactory(username="root", superuser=True))

    def check():
        Customer.objects.create(external_id="keep-me")
        resp = client.delete(f"/api/customers/{quote(external_id, safe='')}/")
        if resp.status_code == 200:
            assert not Customer.objects.filter(external_id=external_id).exists()
        else:
            _assert_error_shape(resp)
        assert Customer.objects.filter(external_id="keep-me").exists() or external_id == "keep-me"

    _isolated(check)


rule_leaf = st.one_of(
    st.fixed_dictionaries(
        {
            "field": st.one_of(
                st.sampled_from(["frequency", "monetary", "top_category", "lifecycle", "rfm_code"]), junk
            ),
            "op": st.one_of(st.sampled_from(["=", "<", "in", "between", "startswith", "is null"]), junk),
            "value": st.one_of(junk, st.sampled_from(INJECTIONS + UNSTORABLE + [10**30, 1e308, [1e308, 1e308]])),
        }
    ),
    st.fixed_dictionaries({"consent": st.one_of(st.sampled_from(["email", "push", "fax"]), junk)}),
    st.fixed_dictionaries(
        {
            "event": st.one_of(
                junk,
                st.fixed_dictionaries(
                    {"type": st.one_of(st.sampled_from(["purchase", "teleport"]), junk)},
                    optional={
                        "category": st.sampled_from(INJECTIONS + UNSTORABLE),
                        "item": st.sampled_from(UNSTORABLE + ["sku"]),
                        "within_days": junk,
                        "min_count": junk,
                    },
                ),
            )
        }
    ),
    st.fixed_dictionaries({"segment": st.one_of(junk, st.sampled_from([10**30, 2**63, -1]))}),
    st.dictionaries(st.sampled_from(["\ud800", "all", "x"]), junk, max_size=2),
)
rules = st.recursive(
    rule_leaf,
    lambda children: st.one_of(
        st.fixed_dictionaries({"all": st.lists(children, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(children, max_size=3)}),
        st.fixed_dictionaries({"not": children}),
    ),
    max_leaves=6,
)


@FUZZ
@given(rule=st.one_of(rules, junk), segment_id=st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70)))
def test_rule_preview_never_fails_with_5xx(db, rule, segment_id):
    client = client_for(UserFactory(username="root", superuser=True))
    body = {"rule": rule} if segment_id is None else {"rule": rule, "segment_id": segment_id}
    resp = _post(client, "/api/segments/preview/", json.dumps(body))
    if resp.status_code == 200:
        assert resp.json()["size"] == 0 and isinstance(resp.json()["description"], str)
    else:
        _assert_error_shape(resp)


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "segments": st.one_of(junk, st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=4)),
            "excluded_segments": st.one_of(
                junk, st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=4)
            ),
            "channel": st.one_of(st.sampled_from(["in_app", "email", "push", "\ud800", "pigeon"]), junk),
            "control_percent": st.one_of(junk, st.sampled_from(["NaN", "Infinity", "-Infinity", 100.5, -1])),
        },
    )
)
def test_audience_preview_never_fails_with_5xx(db, body):
    client = client_for(UserFactory(username="root", superuser=True))
    resp = _post(client, "/api/campaigns/audience-preview/", json.dumps(body))
    if resp.status_code == 200:
        figures = resp.json()
        assert figures["members"] == 0 and all(isinstance(v, int) for v in figures.values())
        assert math.isfinite(float(body.get("control_percent", 10)))
    else:
        _assert_error_shape(resp)


@FUZZ
@given(
    message=st.integers(min_value=0, max_value=2**70),
    body=st.one_of(
        junk,
        st.fixed_dictionaries(
            {},
            optional={
                "item": st.one_of(ident, junk, st.sampled_from(UNSTORABLE)),
                "item_kind": st.one_of(junk, st.text(max_size=40)),
            },
        ),
    ),
    what=st.sampled_from(["opened", "clicked"]),
)
def test_inbox_tracking_never_fails_with_5xx(db, message, body, what):
    client = client_for(UserFactory(username="root", superuser=True))
    resp = _post(client, f"/api/customers/c1/inbox/{message}/{what}/", json.dumps(body))
    _assert_error_shape(resp)  # there is no such message: 400 for a bad body, else 404
    assert resp.status_code in (400, 404)


@pytest.mark.django_db
@pytest.mark.parametrize("at", [0, 1, 2])
def test_an_integer_beyond_float_range_beside_decimal_amounts_is_named_not_a_500(key_client, at):
    """Found by the fuzzer: 10**400 as a purchase's amount, in a batch whose other amounts are floats,
    made building the batch's frame overflow (500) before any field was checked."""
    rows = [
        {
            "external_id": f"big-{i}",
            "customer": f"kim-{i}",
            "item": "tent",
            "type": "purchase",
            "value": 1,
            "amount": 19.99,
            "occurred_at": "2026-11-01T10:00:00Z",
        }
        for i in range(2)
    ]
    rows.insert(at, {**rows[0], "external_id": "big-x", "amount": 10**400})
    before = _counts()
    resp = _post(key_client, "/api/events/", rows)
    body = _assert_error_shape(resp)
    assert resp.status_code == 400
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(at, "amount")], body
    assert _counts() == before
