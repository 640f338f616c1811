"""The plain path for small REST batches (issue #19) gives the frame path's answers.

`validation.plain_event_rows` validates a batch of JSON objects without pandas and only says yes:
whatever it accepts, `validate_events` accepts too, with the same normalised values; whatever else
(any bad row, an unusual value) it hands back, and the frame path decides with its own messages.
`services.events_ingest_plain` then stores what it accepted: the same rows, customers and items as
`events_ingest` would, and the same result. Checked here on the REST fuzz corpus (tests/test_fuzz_api.py)
and on hand-picked values at the edges of what either path reads.
"""

import math
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles import services
from profiles.models import Customer, Event, Item
from profiles.validation import plain_event_rows, records_frame, validate_events
from tests.test_fuzz_api import bad_event, good_event

MAX_FUTURE = timedelta(seconds=300)
FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def _frame_rows(records, now):
    """What the frame path makes of a batch: its normalised rows as plain tuples, and its errors."""
    frame, shape_errors = records_frame(records)
    valid, errors = validate_events(frame, now=now, max_future=MAX_FUTURE)

    def plain(v):
        return None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v

    rows = [
        (
            plain(r.external_id),
            r.customer,
            plain(r.item_kind),
            plain(r.item),
            r.type,
            plain(r.value),
            plain(r.amount),
            r.occurred_at.to_pydatetime(),
            r.context,
        )
        for r in valid.itertuples(index=False)
    ]
    return rows, shape_errors + errors


def _agree(records, now) -> bool:
    """Assert the plain path agrees with the frame path on this batch; True when it took the batch."""
    plain = plain_event_rows(records, now=now, max_future=MAX_FUTURE)
    if plain is None:
        return False
    rows, errors = _frame_rows(records, now)
    assert errors == [], "the plain path took a batch the frame path refuses"
    assert len(plain) == len(rows)
    for mine, theirs in zip(plain, rows, strict=True):
        assert mine == theirs
        assert [type(v) for v in mine[:7]] == [type(v) for v in theirs[:7]]
    return True


@FUZZ
@given(rows=st.lists(st.integers(0, 10**6).flatmap(lambda i: good_event(i)), min_size=1, max_size=8))
def test_clean_fuzz_batches_take_the_plain_path_with_the_frame_paths_values(rows):
    # the corpus's clean batches are plain (text, JSON numbers, short decimals as text, offsets)
    assert _agree(rows, timezone.now())


@FUZZ
@given(data=st.data(), n=st.integers(min_value=1, max_value=6))
def test_a_batch_with_any_bad_row_is_handed_to_the_frame_path(data, n):
    rows = [data.draw(good_event(i)) for i in range(n)]
    bad, _ = data.draw(bad_event(n))
    rows.insert(data.draw(st.integers(0, n)), bad)
    now = timezone.now()
    assert plain_event_rows(rows, now=now, max_future=MAX_FUTURE) is None
    assert _frame_rows(rows, now)[1], "the frame path refuses it, with its own messages"


EDGES = [
    # (field, value): each put in an otherwise clean purchase
    ("value", "1"),
    ("value", " 2 "),
    ("value", "2.50"),
    ("value", "-0"),
    ("value", "1e3"),
    ("value", "123456789012345.6"),
    ("value", "0.1000000000000001"),
    ("value", 3.0000000000000004),
    ("value", 2**53),
    ("value", 2**53 + 1),
    ("value", 10**20),
    ("value", ""),
    ("value", "  "),
    ("value", None),
    ("value", True),
    ("amount", "1.005"),
    ("amount", 0.285),
    ("amount", 2.675),
    ("amount", "0.125"),
    ("amount", 999999999999.994),
    ("amount", 999999999999.995),
    ("amount", -0.0),
    ("amount", "-0.001"),
    ("amount", 1e-9),
    ("occurred_at", "2024-05-01T12:00:00Z"),
    ("occurred_at", "2024-05-01T12:00:00z"),
    ("occurred_at", "2024-05-01T12:00:00.5+02:00"),
    ("occurred_at", "2024-05-01T12:00:00.123456789+02:00"),
    ("occurred_at", "2024-05-01T12:00:00+0200"),
    ("occurred_at", "2024-05-01T12:00:00+14:00"),
    ("occurred_at", "2024-05-01T12:00:00-12:30"),
    ("occurred_at", "2024-05-01 12:00:00+02:00"),
    ("occurred_at", " 2024-05-01T12:00:00+00:00 "),
    ("occurred_at", "2024-02-30T12:00:00+00:00"),
    ("occurred_at", "2024-05-01T24:00:00+00:00"),
    ("occurred_at", "1990-01-01T00:00:00+00:00"),
    ("occurred_at", "1990-01-01T00:30:00+01:00"),
    ("occurred_at", "1989-12-31T23:59:59.999999+00:00"),
    ("occurred_at", "2024-05-01T12:00:00"),
    ("customer", "  padded  "),
    ("customer", "tab\tinside"),
    ("customer", "\x1fseparator-stripped\x1f"),
    ("customer", "c" * 128),
    ("customer", "c" * 129),
    ("customer", "\ufeffbom"),
    ("customer", "\u200b"),
    ("customer", 42),
    ("item", ""),
    ("item", "  "),
    ("item_kind", "PRODUCT"),
    ("item_kind", " post "),
    ("item_kind", ""),
    ("item_kind", None),
    ("item_kind", "spaceship"),
    ("type", " Purchase "),
    ("type", "PURCHASE"),
    ("external_id", ""),
    ("external_id", None),
    ("external_id", "  x  "),
    ("context", ""),
    ("context", None),
    ("context", {}),
    ("context", '{"a": 1}'),
    ("context", {"a": float("nan")}),
    ("context", {"\x00": 1}),
    ("context", {"deep": {"deeper": [1, 2, {"x": "y"}]}}),
]


@pytest.mark.parametrize(("field", "value"), EDGES, ids=[f"{f}={v!r}"[:60] for f, v in EDGES])
def test_values_at_the_edges_are_read_alike_or_handed_over(field, value):
    now = timezone.now()
    row = {
        "external_id": "e-1",
        "customer": "c-1",
        "item": "sku-1",
        "type": "purchase",
        "value": 2,
        "amount": "19.99",
        "occurred_at": (now - timedelta(days=1)).isoformat(),
        "context": {"order": "o-1"},
    }
    row[field] = value
    for batch in ([row], [row, {**row, "external_id": "e-2", "type": "view", "value": None, "amount": None}]):
        _agree(batch, now)  # taken with equal values, or handed over


def test_search_and_message_events_need_no_item_and_keep_no_kind():
    now = timezone.now()
    rows = [
        {"customer": "c", "type": "search", "occurred_at": now.isoformat(), "context": {"q": "shoes"}},
        {"customer": "c", "type": "message_opened", "item_kind": "post", "occurred_at": now.isoformat()},
        {"customer": "c", "type": "search", "item": "sku", "occurred_at": now.isoformat()},
    ]
    assert _agree(rows, now)


def test_a_large_batch_and_an_empty_one_go_the_frame_path():
    now = timezone.now()
    assert plain_event_rows([], now=now, max_future=MAX_FUTURE) is None
    row = {"customer": "c", "type": "view", "item": "i", "occurred_at": now.isoformat()}
    big = [{**row, "external_id": str(i)} for i in range(services.events.PLAIN_MAX_ROWS + 1)]
    assert services.events_ingest_plain(records=big) is None


# --- stored alike --------------------------------------------------------------------------------


def _stored():
    events = sorted(
        Event.objects.values_list(
            "external_id",
            "customer__external_id",
            "item__kind",
            "item__external_id",
            "type",
            "value",
            "amount",
            "occurred_at",
            "context",
        ),
        key=repr,
    )
    customers = list(Customer.objects.order_by("id").values_list("external_id", "name"))
    items = list(Item.objects.order_by("id").values_list("kind", "external_id", "title"))
    return events, customers, items


def _both_ways(records, **kwargs):
    """The batch through each path from the same starting state (rolled back after each)."""
    outcomes = []
    for way in ("plain", "frame"):
        with transaction.atomic():
            sid = transaction.savepoint()
            if way == "plain":
                result = services.events_ingest_plain(records=records, **kwargs)
                assert result is not None, "the plain path should take this batch"
            else:
                frame, shape_errors = records_frame(records)
                assert shape_errors == []
                result = services.events_ingest(rows=frame, **kwargs)
            outcomes.append((result.as_dict(), result.errors, _stored()))
            transaction.savepoint_rollback(sid)
    return outcomes


@pytest.mark.django_db
def test_the_plain_path_stores_what_the_frame_path_stores():
    if connection.vendor != "postgresql":
        pytest.skip("the plain path is PostgreSQL's (elsewhere every batch goes the frame path)")
    now = timezone.now()
    Customer.objects.create(external_id="known", created_at=now)
    Item.objects.create(kind="product", external_id="sku-known", title="Known", created_at=now)
    Event.objects.create(
        external_id="stored-before",
        customer=Customer.objects.get(external_id="known"),
        type="view",
        occurred_at=now,
        received_at=now,
        context={},
    )
    t = (now - timedelta(hours=3)).isoformat()
    records = [
        {"external_id": "a", "customer": "known", "item": "sku-known", "type": "view", "occurred_at": t},
        {"external_id": "b", "customer": "new-1", "item": "sku-new", "type": "purchase", "value": "2",
         "amount": "2.675", "occurred_at": t, "context": {"order": "o-1", "note": "héllo\ttab"}},
        {"external_id": "a", "customer": "known", "item": "sku-known", "type": "view", "occurred_at": t},
        {"external_id": "stored-before", "customer": "known", "type": "search", "occurred_at": t},
        {"customer": "new-2", "item": "p-1", "item_kind": "POST", "type": "like", "occurred_at": t},
        {"customer": "new-2", "type": "search", "occurred_at": "2024-05-01T12:00:00.5+02:00",
         "context": {"q": "Robert'); DELETE FROM profiles_customer;--"}},
        {"external_id": "r", "customer": "new-1", "item": "sku-new", "type": "rating", "value": 4.5,
         "occurred_at": t},
    ]  # fmt: skip
    plain, frame = _both_ways(records, create_unknown=True)
    assert plain == frame
    assert plain[0] == {
        "received": 7,
        "created": 5,
        "duplicates": 2,
        "invalid": 0,
        "customers_created": 2,
        "items_created": 2,
    }


@pytest.mark.django_db
def test_unknown_references_without_create_unknown_and_forgotten_customers_go_the_frame_path():
    if connection.vendor != "postgresql":
        pytest.skip("the plain path is PostgreSQL's")
    from profiles.privacy import customer_forget

    now = timezone.now()
    row = {"customer": "nobody", "item": "sku", "type": "view", "occurred_at": now.isoformat()}
    assert services.events_ingest_plain(records=[row], create_unknown=False) is None
    gone = Customer.objects.create(external_id="gone", created_at=now)
    customer_forget(customer=gone)
    assert services.events_ingest_plain(records=[{**row, "customer": "gone"}], create_unknown=True) is None
    assert Event.objects.count() == 0 and not Customer.objects.filter(external_id="nobody").exists()
