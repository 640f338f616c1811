"""Bulk reads and writes between the database and pandas give the same frames on every path."""
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from common.bulk import bulk_insert, bulk_upsert, read_frame
from profiles import services
from profiles.models import Event, Item

COLUMNS = ["customer_id", "type", "value", "occurred_at", "item__category"]


def _events():
    now = timezone.now()
    services.events_ingest(rows=pd.DataFrame([
        {"external_id": f"b{i}", "customer": f"c{i % 4}", "item": f"i{i % 3}", "type": ["view", "purchase"][i % 2],
         "value": 2 if i % 2 else None, "occurred_at": now - timedelta(hours=i), "context": {"order_id": f"o{i}"} if i % 2 else {}}
        for i in range(40)
    ]))
    services.items_upsert(rows=pd.DataFrame([{"external_id": f"i{i}", "category": f"Cat, \"{i}\""} for i in range(3)]))


@pytest.mark.django_db(transaction=True)
def test_read_frame_outside_a_transaction_matches_the_orm(db):
    """On PostgreSQL this takes the psql stream (a separate session); elsewhere the cursor path."""
    _events()
    qs = Event.objects.order_by("id")
    frame = read_frame(qs, COLUMNS, parse_dates=("occurred_at",))
    expected = pd.DataFrame.from_records(qs.values_list(*COLUMNS), columns=COLUMNS)
    assert len(frame) == 40
    assert frame["customer_id"].tolist() == expected["customer_id"].tolist()
    assert frame["type"].tolist() == expected["type"].tolist()
    assert frame["item__category"].tolist() == expected["item__category"].tolist()  # quotes and commas survive
    assert frame["value"].isna().sum() == 20 and frame["value"].dropna().eq(2).all()
    assert (frame["occurred_at"] - pd.to_datetime(expected["occurred_at"], utc=True)).abs().max() < pd.Timedelta("1ms")


@pytest.mark.django_db(transaction=True)
@override_settings(BULK_READ_WITH_PSQL=False)
def test_read_frame_without_psql_gives_the_same_frame(db):
    _events()
    frame = read_frame(Event.objects.order_by("id"), COLUMNS, parse_dates=("occurred_at",))
    assert len(frame) == 40 and frame["item__category"].iloc[0].startswith("Cat, ")


@pytest.mark.django_db
def test_bulk_upsert_inserts_then_updates_by_key(db):
    frame = pd.DataFrame({"kind": ["product", "post"], "external_id": ["a", "a"], "title": ["A", "A post"], "category": ["x", "y"],
                          "attributes": [{"k": 1}, {}], "active": [True, False], "created_at": [timezone.now()] * 2})
    assert bulk_insert(Item, frame, json_columns=("attributes",)) == 2
    frame["title"] = ["A2", "A post 2"]
    bulk_upsert(Item, frame, key=["kind", "external_id"], json_columns=("attributes",))
    assert dict(Item.objects.values_list("kind", "title")) == {"product": "A2", "post": "A post 2"}
    assert Item.objects.get(kind="product").attributes == {"k": 1}
    assert connection.vendor in {"sqlite", "postgresql"}
