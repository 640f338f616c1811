"""Text that looks like a COPY marker is stored as that text (issue #12, finding 2).

The bulk writes on PostgreSQL go through COPY. When they were built as CSV text with `NULL '\\N'`,
the two characters `\\N` in any value became NULL: an item whose category was `\\N` broke every
profiles run (NotNullViolation on top_category), and an event whose external_id was `\\N` was
stored without an id, so each resend stored it again. On SQLite the same paths are ORM inserts; the
tests run there too (and pass trivially), CI runs them on PostgreSQL.
"""

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.test import override_settings
from django.utils import timezone

from common.bulk import bulk_insert, bulk_upsert, read_frame
from profiles import services
from profiles.models import Customer, Event, Item, Profile

MARKERS = ["\\N", "\\.", "\\", "\\\\N", '"', '""', "a,b", "a\tb", "a\nb", "a\r\nb", "\\N\n\\.", "", " "]
# ids refuse control characters (tab, newline) and surrounding blanks: those go in other fields
IDS = [m for m in MARKERS if m.strip() == m and m and not any(c in m for c in "\t\r\n")]


def _event(external_id, *, customer="c-1", item="p-1", kind="purchase", minutes=0, context=None):
    return {
        "external_id": external_id,
        "customer": customer,
        "item": item,
        "type": kind,
        "value": 1 if kind == "purchase" else None,
        "amount": "9.90" if kind == "purchase" else None,
        "occurred_at": (timezone.now() - timedelta(days=1, minutes=minutes)).isoformat(),
        "context": context or {},
    }


@pytest.mark.django_db
def test_an_event_id_that_is_the_null_marker_is_stored_once_however_often_it_is_sent(api):
    for _ in range(3):
        resp = api.post("/api/events/", [_event("\\N")], format="json")
        assert resp.status_code == 201, resp.content
    assert list(Event.objects.values_list("external_id", flat=True)) == ["\\N"]
    assert resp.json()["created"] == 0 and resp.json()["duplicates"] == 1


@pytest.mark.django_db
def test_marker_like_event_fields_arrive_verbatim(api):
    rows = [
        _event(m, customer=m, item=m, minutes=i, context={"order_id": m, "note": MARKERS}) for i, m in enumerate(IDS)
    ]
    assert api.post("/api/events/", rows, format="json").status_code == 201
    stored = {e.external_id: e for e in Event.objects.select_related("customer", "item")}
    for row in rows:
        event = stored[row["external_id"]]
        assert (event.customer.external_id, event.item.external_id, event.context) == (
            row["customer"],
            row["item"],
            row["context"],
        )


def _profiles_with_category(category, *, with_psql):
    services.items_upsert(
        rows=pd.DataFrame([{"kind": "product", "external_id": "p-1", "title": "Mug", "category": category}])
    )
    services.events_ingest(rows=pd.DataFrame([_event(f"buy-{i}", minutes=i) for i in range(3)]))
    with override_settings(BULK_READ_WITH_PSQL=with_psql):
        counts = services.profiles_compute(now=timezone.now())
    assert counts["profiles_written"] == 1
    profile = Profile.objects.get(customer__external_id="c-1")
    assert profile.top_category == category
    assert profile.top_categories == [category]


@pytest.mark.django_db
@pytest.mark.parametrize("category", ["\\N", "\\.", "a\\tb", '"quoted", with comma'])
def test_a_category_that_is_the_null_marker_does_not_break_the_profiles_run(category):
    _profiles_with_category(category, with_psql=False)


@pytest.mark.django_db(transaction=True)
def test_a_category_that_is_the_null_marker_survives_the_psql_read_too():
    """Outside a transaction the events are read through psql's COPY stream (PostgreSQL)."""
    _profiles_with_category("\\N", with_psql=True)


@pytest.mark.django_db
@pytest.mark.parametrize("with_psql", [False, True])
def test_bulk_writes_and_reads_keep_marker_text_and_tell_empty_from_null(with_psql):
    now = timezone.now()
    titles = [m or "" for m in MARKERS]
    frame = pd.DataFrame(
        {
            "kind": "product",
            "external_id": [f"x{i}" for i in range(len(titles))],
            "title": titles,
            "category": ["01", "1e3", "NaN", "inf", *titles[4:]],
            "attributes": [{"t": t} for t in titles],
            "active": True,
            "created_at": now,
        }
    )
    assert bulk_insert(Item, frame, json_columns=("attributes",)) == len(frame)
    frame["title"] = [t + "!" for t in titles]
    bulk_upsert(Item, frame, key=["kind", "external_id"], json_columns=("attributes",))
    stored = {i.external_id: i for i in Item.objects.all()}
    for row in frame.itertuples():
        assert (
            stored[row.external_id].title,
            stored[row.external_id].category,
            stored[row.external_id].attributes,
        ) == (row.title, row.category, row.attributes)
    # the read side: text comes back as the same text, "" stays "", NULL (an event without id) is None
    services.events_ingest(
        rows=pd.DataFrame(
            [
                _event(None, item="x0"),
                _event("", item="x1", minutes=1),
                _event("no item", item=None, kind="search", minutes=2),
            ]
            + [_event(t, item=f"x{i}", minutes=i + 3) for i, t in enumerate(IDS)]
            + [_event(f"r{i}", item=f"x{i}", minutes=i + 20) for i in range(len(titles))]
        )
    )
    with override_settings(BULK_READ_WITH_PSQL=with_psql):
        read = read_frame(
            Event.objects.order_by("occurred_at").reverse(), ["external_id", "item__category", "item__title"]
        )
    expected = list(
        Event.objects.order_by("occurred_at").reverse().values_list("external_id", "item__category", "item__title")
    )
    got = [tuple(None if v is None or v != v else v for v in row) for row in read.itertuples(index=False, name=None)]
    assert got == expected
    assert Customer.objects.count() == 1


JSON_VALUES = [
    {f"key {m}": m for m in MARKERS},
    {"nested": [{"a": 1.5, "b": None, "c": True}, [], {}], "unicode": "é ✓ 漢字 \u2028 \x00 \x1f"},
    {1: "int key", "big": 2**70, "neg": -(2**63)},
    {"numpy": np.float64(0.1) + np.float64(0.2), "share": np.float64(1 / 3)},
    ["lone surrogate \ud800 stays text"],
    [0.1, 1e-300, 1.7976931348623157e308, -0.0, 123456789012345678],
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
def test_json_text_is_the_same_json_as_the_json_module(value):
    """The COPY paths' JSON text (orjson, the json module for what orjson refuses) reads back as
    exactly what the json module writes: same keys, same values, floats to the last bit."""
    from common.bulk import json_text

    expected = json.loads(json.dumps(value, ensure_ascii=False))
    got = json.loads(json_text(value))
    assert got == expected and repr(got) == repr(expected)
