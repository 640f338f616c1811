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
    services.events_ingest(
        rows=pd.DataFrame(
            [
                {
                    "external_id": f"b{i}",
                    "customer": f"c{i % 4}",
                    "item": f"i{i % 3}",
                    "type": ["view", "purchase"][i % 2],
                    "value": 2 if i % 2 else None,
                    "occurred_at": now - timedelta(hours=i),
                    "context": {"order_id": f"o{i}"} if i % 2 else {},
                }
                for i in range(40)
            ]
        )
    )
    services.items_upsert(rows=pd.DataFrame([{"external_id": f"i{i}", "category": f'Cat, "{i}"'} for i in range(3)]))


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
    frame = pd.DataFrame(
        {
            "kind": ["product", "post"],
            "external_id": ["a", "a"],
            "title": ["A", "A post"],
            "category": ["x", "y"],
            "attributes": [{"k": 1}, {}],
            "active": [True, False],
            "created_at": [timezone.now()] * 2,
        }
    )
    assert bulk_insert(Item, frame, json_columns=("attributes",)) == 2
    frame["title"] = ["A2", "A post 2"]
    bulk_upsert(Item, frame, key=["kind", "external_id"], json_columns=("attributes",))
    assert dict(Item.objects.values_list("kind", "title")) == {"product": "A2", "post": "A post 2"}
    assert Item.objects.get(kind="product").attributes == {"k": 1}
    assert connection.vendor in {"sqlite", "postgresql"}


def _typed_rows():
    services.customers_upsert(
        rows=pd.DataFrame(
            [{"external_id": f"t{i}", "consent_in_app": i % 2 == 0, "consent_email": i % 3 == 0} for i in range(6)]
        )
    )
    services.items_upsert(
        rows=pd.DataFrame(
            [{"external_id": "p1", "price": "9.90", "active": True}, {"external_id": "p2", "active": False}]
        )
    )
    now = timezone.now()
    kinds = [("p1", "view", None), ("p2", "rating", 4.5), (None, "search", None)]  # a search names no item
    services.events_ingest(
        rows=pd.DataFrame(
            [
                {
                    "external_id": f"e{i}",
                    "customer": f"t{i % 6}",
                    "item": kinds[i % 3][0],
                    "type": kinds[i % 3][1],
                    "value": kinds[i % 3][2],
                    "occurred_at": now - timedelta(hours=i),
                }
                for i in range(12)
            ]
        )
    )


def _check_typed_frame():
    from django.db.models import BooleanField, Case, Count, Exists, FloatField, OuterRef, Value, When
    from django.db.models.functions import Cast

    from profiles.models import Customer

    people = Customer.objects.order_by("id").annotate(
        has_events=Exists(Event.objects.filter(customer=OuterRef("pk"))),
        n_events=Count("events"),
        rated=Case(When(external_id="t1", then=Value(True)), default=None, output_field=BooleanField()),
    )
    columns = ["id", "consent_in_app", "consent_email", "has_events", "n_events", "rated"]
    frame = read_frame(people, columns)
    assert frame.dtypes.astype(str).tolist() == ["int64", "bool", "bool", "bool", "int64", "boolean"]
    expected = list(people.values_list(*columns))
    rows = [tuple(None if v is pd.NA else v for v in row) for row in frame.itertuples(index=False, name=None)]
    assert rows == expected

    items = Item.objects.order_by("id").annotate(price_f=Cast("price", FloatField()))
    frame = read_frame(items, ["id", "active", "price", "price_f", "title"])
    assert frame.dtypes.astype(str).tolist() == ["int64", "bool", "float64", "float64", "object"]
    assert frame["active"].tolist() == [True, False]
    assert frame["price"].iloc[0] == pytest.approx(9.9) and frame["price"].isna().tolist() == [False, True]

    frame = read_frame(Event.objects.order_by("id"), ["customer_id", "item_id", "value", "item__active"])
    # an item-less event: the integer column holds a NULL (NaN), the joined boolean too (NA)
    assert frame.dtypes.astype(str).tolist() == ["int64", "float64", "float64", "boolean"]
    assert frame["item_id"].isna().sum() == 4 and frame["item__active"].isna().sum() == 4
    assert frame["value"].dropna().eq(4.5).all() and frame["value"].isna().sum() == 8


@pytest.mark.django_db(transaction=True)
def test_read_frame_types_columns_the_same_on_every_database_outside_a_transaction(db):
    """Booleans as bool, integers as int64, decimals and floats as float64: SQLite's 0/1 and
    PostgreSQL's t/f never reach the callers (on PostgreSQL this is the psql stream)."""
    _typed_rows()
    _check_typed_frame()


@pytest.mark.django_db
def test_read_frame_types_columns_the_same_inside_a_transaction(db):
    _typed_rows()  # on PostgreSQL: psycopg's COPY stream
    _check_typed_frame()
