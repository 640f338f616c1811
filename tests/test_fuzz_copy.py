"""Property-based fuzzing of every COPY path with text made of COPY's own markers (issue #12, finding 2).

On PostgreSQL the bulk writes go through COPY and the bulk reads through COPY ... TO STDOUT; on
SQLite the same services take ORM inserts and plain cursors (the properties hold there trivially,
CI runs them on PostgreSQL). Hypothesis builds strings out of backslashes, quotes, tabs, commas,
newlines, carriage returns, the NULL marker `\\N`, the end-of-data marker `\\.` and any unicode
(no NUL, no lone surrogates: no database stores those), and pushes them through:

- REST ingestion (`POST /api/events/`) and its resend;
- the file import (`events_import_file`, COPY straight into the table) and its rerun (the
  conflict-tolerant COPY into a temporary table);
- customer and item upserts, then the profiles run (items' categories go into the profiles COPY);
- the bulk reads (`read_frame`, through psycopg's COPY and through psql);
- the derived writes that carry operator or customer text: suggestion reasons, impressions'
  source, deliveries (the COPY of a snapshot and the COPY that sets rendered texts and errors).

The property: every value reads back equal, with `""` and NULL kept apart.
"""

import csv
import json
from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection, transaction
from django.db.models.fields.json import KT
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.models import Campaign, Delivery
from campaigns.services import _update_rows
from common.bulk import bulk_insert, bulk_upsert, read_frame
from profiles import services
from profiles.models import Customer, Event, Item, Profile
from recommendations.models import Impression, Recommendation, RecommenderRun
from recommendations.services import _write as write_suggestions

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

FUZZ = settings(
    deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

MARKERS = [
    "\\N",
    "\\.",
    "\\",
    "\\\\N",
    "\\.\n",
    "N",
    ".",
    '"',
    "'",
    "\t",
    ",",
    ";",
    "|",
    "\n",
    "\r",
    "\r\n",
    " ",
    "NULL",
    "null",
]
# whole values that a hand-built COPY text would read as something else
WHOLE = ["\\N", "\\.", "\\", "\\\\N", '"', '""', "NULL", "\\N\n\\.", "a\tb", "a,b", "x\r\ny"]

# the file reader marks undecodable bytes and NULs with U+FFFD and U+FDD0 and refuses those rows
pieces = st.one_of(
    st.sampled_from(MARKERS), st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffd\ufdd0")
)
hostile = st.one_of(st.sampled_from(WHOLE), st.lists(pieces, min_size=1, max_size=10).map("".join))
# what the ingestion validation keeps as it is: no surrounding blanks, and no control characters in ids
text_field = hostile.filter(lambda s: s == s.strip() and s != "")
id_field = text_field.filter(lambda s: not any(ord(c) < 32 or c == "\x7f" for c in s))


class _Rollback(Exception):
    pass


def _rolled_back(check):
    """Run `check` in a savepoint that is rolled back, so examples do not see each other's rows."""
    try:
        with transaction.atomic():
            check()
            raise _Rollback
    except _Rollback:
        pass


def _event(external_id, customer, item, minutes, context):
    return {
        "external_id": external_id,
        "customer": customer,
        "item": item,
        "type": "purchase",
        "value": 1,
        "amount": "9.90",
        "occurred_at": (timezone.now() - timedelta(days=1, minutes=minutes)).isoformat(),
        "context": context,
    }


def _same_frame(frame: pd.DataFrame, expected: list[tuple]) -> None:
    got = [tuple(None if v is None or v != v else v for v in row) for row in frame.itertuples(index=False, name=None)]
    assert got == expected


@FUZZ
@given(
    event_ids=st.lists(id_field, min_size=3, max_size=3, unique=True),
    customer_id=id_field,
    item_id=id_field,
    texts=st.lists(text_field, min_size=4, max_size=4),
)
def test_ingestion_paths_keep_every_value(api, tmp_path, event_ids, customer_id, item_id, texts):
    event_id, *file_ids = event_ids
    name, title, category, note = texts

    def check():
        services.customers_upsert(
            rows=pd.DataFrame([{"external_id": customer_id, "name": name[:200], "attributes": {"note": note}}])
        )
        services.items_upsert(
            rows=pd.DataFrame(
                [{"kind": "product", "external_id": item_id, "title": title[:300], "category": category[:120]}]
            )
        )
        context = {"order_id": note, "texts": texts}
        # REST, then the same batch again: one row, stored verbatim
        batch = [_event(event_id, customer_id, item_id, 0, context)]
        for _ in range(3):
            resp = api.post("/api/events/", batch, format="json")
            assert resp.status_code == 201, resp.content
        # the file import, then the same file again (the conflict-tolerant COPY)
        path = tmp_path / "events.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["external_id", "customer", "item_kind", "item", "type", "value", "amount", "occurred_at", "context"]
            )
            for i, eid in enumerate(file_ids):
                row = _event(eid, customer_id, item_id, i + 1, context)
                writer.writerow(
                    [
                        row["external_id"],
                        row["customer"],
                        "product",
                        row["item"],
                        "purchase",
                        "1",
                        "9.90",
                        row["occurred_at"],
                        json.dumps(context),
                    ]
                )
        first = services.events_import_file(path=path, fmt="generic")
        again = services.events_import_file(path=path, fmt="generic")
        assert (first.created, again.created, again.duplicates) == (2, 0, 2)

        stored = sorted(
            Event.objects.values_list("external_id", "customer__external_id", "item__external_id", "context")
        )
        assert stored == sorted((e, customer_id, item_id, context) for e in event_ids)
        customer = Customer.objects.get()
        item = Item.objects.get()
        assert (customer.external_id, customer.name, customer.attributes) == (
            customer_id,
            name[:200].strip(),
            {"note": note},
        )
        assert (item.external_id, item.title, item.category) == (item_id, title[:300].strip(), category[:120].strip())

        # the bulk reads: the psycopg COPY stream here (a transaction is open), psql's in the test below
        qs = Event.objects.order_by("id").annotate(order_id=KT("context__order_id"))
        columns = [
            "external_id",
            "customer__external_id",
            "customer__name",
            "item__title",
            "item__category",
            "order_id",
            "type",
        ]
        _same_frame(read_frame(qs, columns), list(qs.values_list(*columns)))

        # the profiles run: the item's category is the customer's top category
        assert services.profiles_compute(now=timezone.now())["profiles_written"] == 1
        profile = Profile.objects.get()
        assert (profile.top_category, profile.top_categories) == (item.category, [item.category])
        assert list(profile.interests) == [item.category]

    _rolled_back(check)


@FUZZ
@given(texts=st.lists(hostile, min_size=4, max_size=4), maybe_empty=st.sampled_from(["", None, "\\N"]))
def test_derived_writes_keep_operator_and_customer_text(texts, maybe_empty):
    reason, source, body, error = texts

    def check():
        now = timezone.now()
        customer = Customer.objects.create(external_id="c1", name=body[:200])
        item = Item.objects.create(external_id="p1", title=reason[:300], category=error[:120])
        # suggestions: the reason in words carries the item's title
        run = RecommenderRun.objects.create()
        write_suggestions(
            Recommendation,
            pd.DataFrame(
                {
                    "run_id": [run.pk],
                    "customer_id": [customer.pk],
                    "item_id": [item.pk],
                    "kind": ["product"],
                    "rank": [1],
                    "score": [0.5],
                    "reason": ["basket"],
                    "reason_item_id": pd.array([item.pk], dtype="Int64"),
                    "reason_text": [f"because you put {reason} in your basket"[:300]],
                }
            ),
        )
        assert Recommendation.objects.get().reason_text == f"because you put {reason} in your basket"[:300]
        bulk_insert(
            Impression,
            pd.DataFrame(
                {"customer_id": [customer.pk], "item_id": [item.pk], "shown_at": [now], "source": [source[:60]]}
            ),
        )
        assert Impression.objects.get().source == source[:60]
        # deliveries: a snapshot's COPY, then the COPY that sets the rendered texts and the error
        campaign = Campaign.objects.create(name="Fuzz", title_template="Hi", body_template="News")
        bulk_insert(
            Delivery,
            pd.DataFrame(
                {
                    "campaign_id": [campaign.pk],
                    "customer_id": [customer.pk],
                    "is_control": [False],
                    "status": ["queued"],
                    "reason": [""],
                    "title": [reason[:500]],
                    "body": [body],
                    "items": [[item.pk]],
                    "claim": [maybe_empty or ""],
                    "attempts": [0],
                    "error": [error[:500]],
                    "created_at": [pd.Timestamp(now)],
                }
            ),
            json_columns=("items",),
        )
        delivery = Delivery.objects.get()
        assert (delivery.title, delivery.body, delivery.error, delivery.claim) == (
            reason[:500],
            body,
            error[:500],
            maybe_empty or "",
        )
        _update_rows(
            pd.DataFrame(
                {
                    "id": [delivery.pk],
                    "title": [body[:500]],
                    "body": [reason],
                    "error": [source[:500]],
                    "provider_key": [maybe_empty],
                    "items": [[texts]],
                }
            ),
            ["title", "body", "error", "provider_key", "items"],
            json_columns=("items",),
        )
        delivery.refresh_from_db()
        assert (delivery.title, delivery.body, delivery.error, delivery.provider_key, delivery.items) == (
            body[:500],
            reason,
            source[:500],
            maybe_empty,
            [texts],
        )
        # an upsert through a temporary table, and the read back of text that is "", NULL or a marker
        frame = pd.DataFrame(
            {
                "kind": "product",
                "external_id": ["p1", "p2"],
                "title": [body[:300], maybe_empty or ""],
                "category": [maybe_empty or "", source[:120]],
                "attributes": [{"t": texts}, {}],
                "active": True,
                "created_at": now,
            }
        )
        bulk_upsert(Item, frame, key=["kind", "external_id"], json_columns=("attributes",))
        stored = {i.external_id: (i.title, i.category, i.attributes) for i in Item.objects.all()}
        assert stored == {
            "p1": (body[:300], maybe_empty or "", {"t": texts}),
            "p2": (maybe_empty or "", source[:120], {}),
        }
        qs = Delivery.objects.order_by("id")
        columns = ["title", "body", "error", "provider_key", "claim", "customer__name"]
        _same_frame(read_frame(qs, columns), list(qs.values_list(*columns)))

    _rolled_back(check)


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(texts=st.lists(hostile, min_size=3, max_size=3))
@override_settings(BULK_READ_WITH_PSQL=True)
def test_the_psql_read_gives_back_every_text(texts):
    """Outside a transaction PostgreSQL's bulk reads stream through psql (its own session)."""
    try:
        customers = [Customer.objects.create(external_id=f"c{i}", name=t[:200]) for i, t in enumerate(texts)]
        Customer.objects.create(external_id="c-empty", name="")
        qs = Customer.objects.order_by("id")
        columns = ["external_id", "name", "email", "time_zone"]
        assert connection.in_atomic_block is False
        _same_frame(read_frame(qs, columns), list(qs.values_list(*columns)))
        assert len(customers) == 3
    finally:
        Customer.objects.all().delete()
