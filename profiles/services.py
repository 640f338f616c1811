"""
The verbs that change customers, items and events.

`events_ingest` is the one service behind every way events come in (REST, CSV import, dataset
adapters, the demo seeder): it validates a batch, resolves customers and items by their external
ids (creating unknown ones or refusing them), and writes the events in bulk, skipping any whose
`external_id` is already stored, so a resend is harmless.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from .models import CONSENT_FIELDS, Customer, Event, Item
from .validation import (
    RowError,
    validate_customers,
    validate_events,
    validate_items,
)

LOOKUP_CHUNK = 5000


class IngestRefused(Exception):
    """A batch was refused as a whole; `errors` lists every bad row."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{len(errors)} invalid row(s); first: {errors[0]}" if errors else "invalid batch")


@dataclass
class IngestResult:
    received: int = 0
    created: int = 0
    duplicates: int = 0
    invalid: int = 0
    customers_created: int = 0
    items_created: int = 0
    errors: list[RowError] = field(default_factory=list)

    def merge(self, other: IngestResult) -> None:
        self.received += other.received
        self.created += other.created
        self.duplicates += other.duplicates
        self.invalid += other.invalid
        self.customers_created += other.customers_created
        self.items_created += other.items_created
        self.errors.extend(other.errors)

    def as_dict(self) -> dict:
        return {
            "received": self.received, "created": self.created, "duplicates": self.duplicates,
            "invalid": self.invalid, "customers_created": self.customers_created,
            "items_created": self.items_created,
        }


@dataclass
class UpsertResult:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"received": self.received, "created": self.created, "updated": self.updated, "unchanged": self.unchanged}


# --- customers and items -----------------------------------------------------------------------


def _chunks(values: list, size: int = LOOKUP_CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _clean(value):
    """pandas missing markers to None, numpy scalars to Python."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


CONSENT_CHANNELS = {field: channel for channel, field in CONSENT_FIELDS.items()}  # consent column -> channel


def consent_changes_record(*, changes: list[tuple[int, str, bool]], source: str, user=None, now: datetime | None = None,
                           label: str = "") -> int:
    """Record (customer_id, consent field, granted) changes in bulk, and one audit entry for them
    (`label` names the customer when there is one)."""
    from .models import ConsentChange

    from .audit import actor_of, audit_record
    from .models import AuditAction

    now = now or timezone.now()
    operator, _ = actor_of(user)  # `user` may also be an API key's principal: then no operator account
    ConsentChange.objects.bulk_create(
        [ConsentChange(customer_id=cid, channel=CONSENT_CHANNELS[field], granted=bool(granted), source=source, changed_by=operator, at=now)
         for cid, field, granted in changes],
        batch_size=1000,
    )
    if changes:
        # One audit entry per call (a bulk upsert may change thousands): how many, per channel.
        summary: dict[str, dict[str, int]] = {}
        for _, consent_field, granted in changes:
            counts = summary.setdefault(CONSENT_CHANNELS[consent_field], {"granted": 0, "withdrawn": 0})
            counts["granted" if granted else "withdrawn"] += 1
        customers = {cid for cid, _, _ in changes}
        one = next(iter(customers)) if len(customers) == 1 else None
        audit_record(action=AuditAction.CONSENT_CHANGED, actor=user, source=source, target_type="profiles.customer",
                     target_id=str(one) if one else "", target_label=label if one and label else f"{len(customers):,} customers",
                     changes={"channels": summary})
    return len(changes)


def customer_consent_set(*, customer: Customer, source: str, user=None, **consents: bool) -> list[str]:
    """Change a customer's consents (consent_email=False, ...), stamping and recording each change."""
    now = timezone.now()
    changed = [f for f, v in consents.items() if f in CONSENT_CHANNELS and getattr(customer, f) != bool(v)]
    if not changed:
        return []
    with transaction.atomic():
        for f in changed:
            setattr(customer, f, bool(consents[f]))
        customer.consent_updated_at = now
        customer.save(update_fields=[*changed, "consent_updated_at"])
        consent_changes_record(changes=[(customer.pk, f, consents[f]) for f in changed], source=source, user=user, now=now,
                               label=customer.external_id)
    return changed


def customers_upsert(
    *, rows: pd.DataFrame, now: datetime | None = None, update_existing: bool = True, all_or_nothing: bool = True,
    source: str = "api", actor=None, recreate_forgotten: bool = True,
) -> UpsertResult:
    """Create customers that are new and update the given fields of those that exist.

    Fields missing from a row keep their stored value. A change of any consent stamps
    `consent_updated_at`. With `all_or_nothing`, one bad row refuses the whole batch.

    The shop's own upsert (`POST /api/customers/`) is how a forgotten customer who signs up again
    is created again, as a new row. Callers that only pass customers along with their events (file
    imports) set `recreate_forgotten=False`: a forgotten customer's row is then an error.
    """
    now = now or timezone.now()
    valid, errors = validate_customers(rows, now=now)
    if not recreate_forgotten and not valid.empty:
        ids = valid["external_id"].tolist()
        stored = set(_customer_ids(ids))
        forgotten = _forgotten([e for e in dict.fromkeys(ids) if e not in stored])
        if forgotten:
            gone = valid["external_id"].isin(forgotten).to_numpy()
            errors = sorted(errors + [RowError(int(idx), "external_id", _FORGOTTEN_REASON.format(valid.at[idx, "external_id"]))
                                      for idx in valid.index[gone]], key=lambda e: e.row)
            valid = valid[~gone]
    result = UpsertResult(received=len(rows), errors=errors)
    if errors and all_or_nothing:
        raise IngestRefused(errors)
    if valid.empty:
        return result
    fields = ["name", "email", "time_zone", "consent_in_app", "consent_email", "consent_push", "attributes", "created_at"]
    consent_fields = ["consent_in_app", "consent_email", "consent_push"]
    with transaction.atomic():
        ids = valid["external_id"].tolist()
        existing: dict[str, Customer] = {}
        for part in _chunks(ids):
            existing.update({c.external_id: c for c in Customer.objects.filter(external_id__in=part)})
        new_objs: list[Customer] = []
        changed: list[Customer] = []
        changed_fields: set[str] = set()
        consent_log: list[tuple[Customer, str, bool]] = []
        for rec in valid.to_dict("records"):
            rec = {k: _clean(v) for k, v in rec.items()}
            obj = existing.get(rec["external_id"])
            if obj is None:
                kwargs = {k: rec[k] for k in fields if rec.get(k) is not None}
                if any(rec.get(c) is not None for c in consent_fields):
                    kwargs["consent_updated_at"] = now
                obj = Customer(external_id=rec["external_id"], **kwargs)
                new_objs.append(obj)
                consent_log.extend((obj, c, rec[c]) for c in consent_fields if rec.get(c) is not None)
                continue
            if not update_existing:
                continue
            dirty = [k for k in fields if k != "created_at" and rec.get(k) is not None and getattr(obj, k) != rec[k]]
            if dirty:
                for k in dirty:
                    setattr(obj, k, rec[k])
                if any(k in consent_fields for k in dirty):
                    obj.consent_updated_at = now
                    consent_log.extend((obj, k, rec[k]) for k in dirty if k in consent_fields)
                    dirty.append("consent_updated_at")
                changed.append(obj)
                changed_fields.update(dirty)
        Customer.objects.bulk_create(new_objs, batch_size=1000)
        if changed:
            Customer.objects.bulk_update(changed, sorted(changed_fields), batch_size=1000)
        if consent_log:
            if any(obj.pk is None for obj, _, _ in consent_log):  # backends that return no ids from bulk_create
                ids = _customer_ids([o.external_id for o, _, _ in consent_log if o.pk is None])
                for obj, _, _ in consent_log:
                    obj.pk = obj.pk or ids.get(obj.external_id)
            consent_changes_record(changes=[(o.pk, f, g) for o, f, g in consent_log], source=source, now=now, user=actor)
    result.created = len(new_objs)
    result.updated = len(changed)
    result.unchanged = len(valid) - result.created - result.updated
    return result


def items_upsert(
    *, rows: pd.DataFrame, now: datetime | None = None, update_existing: bool = True, all_or_nothing: bool = True
) -> UpsertResult:
    """Create items that are new and update the given fields of those that exist, keyed by (kind, external_id)."""
    now = now or timezone.now()
    valid, errors = validate_items(rows, now=now)
    result = UpsertResult(received=len(rows), errors=errors)
    if errors and all_or_nothing:
        raise IngestRefused(errors)
    if valid.empty:
        return result
    fields = ["title", "category", "price", "attributes", "active", "created_at"]
    with transaction.atomic():
        existing: dict[tuple[str, str], Item] = {}
        for kind, group in valid.groupby("kind"):
            for part in _chunks(group["external_id"].tolist()):
                existing.update({(i.kind, i.external_id): i for i in Item.objects.filter(kind=kind, external_id__in=part)})
        new_objs: list[Item] = []
        changed: list[Item] = []
        changed_fields: set[str] = set()
        for rec in valid.to_dict("records"):
            rec = {k: _clean(v) for k, v in rec.items()}
            if rec.get("price") is not None:
                rec["price"] = Decimal(str(rec["price"])).quantize(Decimal("0.01"))
            obj = existing.get((rec["kind"], rec["external_id"]))
            if obj is None:
                kwargs = {k: rec[k] for k in fields if rec.get(k) is not None}
                new_objs.append(Item(kind=rec["kind"], external_id=rec["external_id"], **kwargs))
                continue
            if not update_existing:
                continue
            dirty = [k for k in fields if k != "created_at" and rec.get(k) is not None and getattr(obj, k) != rec[k]]
            if dirty:
                for k in dirty:
                    setattr(obj, k, rec[k])
                changed.append(obj)
                changed_fields.update(dirty)
        Item.objects.bulk_create(new_objs, batch_size=1000)
        if changed:
            Item.objects.bulk_update(changed, sorted(changed_fields), batch_size=1000)
    result.created = len(new_objs)
    result.updated = len(changed)
    result.unchanged = len(valid) - result.created - result.updated
    return result


# --- events ------------------------------------------------------------------------------------


def pg_text_array(values: list[str]) -> str:
    """A PostgreSQL array literal of texts, for `= ANY(%s::text[])`: one parameter, which the
    driver passes as it is (it quotes a Python list element by element, slowly), and whose length
    the planner sees (unlike a set-returning function's, which it guesses)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _ids_by_external_id(table: str, external_ids: list[str], *, where: str = "", params: tuple = ()) -> dict[str, int]:
    """{external_id: id} of the rows of `table` with these external ids, in one query.

    On PostgreSQL the ids travel as one array parameter and the rows come back as plain tuples: a
    file import asks this for some 20,000 ids per chunk, where the ORM's IN lists and row handling
    cost more than the lookups themselves."""
    if not external_ids:
        return {}
    if connection.vendor != "postgresql":
        model = Customer if table == Customer._meta.db_table else Item
        found: dict[str, int] = {}
        for part in _chunks(external_ids):
            qs = model.objects.filter(external_id__in=part)
            if params:
                qs = qs.filter(kind=params[0])
            found.update(qs.values_list("external_id", "id"))
        return found
    with connection.cursor() as cur:
        cur.execute(f"SELECT external_id, id FROM {table} WHERE external_id = ANY(%s::text[]){where}",
                    [pg_text_array(external_ids), *params])
        return dict(cur.fetchall())


def _customer_ids(external_ids: list[str]) -> dict[str, int]:
    return _ids_by_external_id(Customer._meta.db_table, external_ids)


def _item_ids(keys: pd.DataFrame) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for kind, group in keys.groupby("item_kind"):
        ids = _ids_by_external_id(Item._meta.db_table, group["item"].tolist(), where=" AND kind = %s", params=(kind,))
        found.update({(kind, ext): pk for ext, pk in ids.items()})
    return found


_FORGOTTEN_REASON = ("customer {!r} was forgotten (erased) and is not created again by events; if the same person "
                     "signed up again, create them first through POST /api/customers/")


def _forgotten(external_ids: list[str]) -> set[str]:
    """Which of these ids (of customers not stored) belong to forgotten customers."""
    from .privacy import forgotten_among

    return forgotten_among(external_ids) if external_ids else set()


def _resolve(valid: pd.DataFrame, *, create_unknown: bool, now: datetime) -> tuple[pd.DataFrame, list[RowError], int, int]:
    """Attach customer_id and item_id; create or refuse unknown references."""
    customers = valid["customer"].drop_duplicates().tolist()
    customer_map = _customer_ids(customers)
    missing_customers = [c for c in customers if c not in customer_map]
    errors: list[RowError] = []
    forgotten = _forgotten(missing_customers)
    if forgotten:
        # Events never bring an erased customer back, whatever create_unknown says (profiles.privacy).
        gone = valid["customer"].isin(forgotten).to_numpy()
        errors.extend(RowError(int(idx), "customer", _FORGOTTEN_REASON.format(valid.at[idx, "customer"])) for idx in valid.index[gone])
        missing_customers = [c for c in missing_customers if c not in forgotten]
        valid = valid[~gone]
    has_item = valid["item"].notna()
    item_keys = valid.loc[has_item, ["item_kind", "item"]].drop_duplicates()
    item_map = _item_ids(item_keys)
    key_tuples = list(zip(item_keys["item_kind"], item_keys["item"]))
    missing_items = [k for k in key_tuples if k not in item_map]
    customers_created = items_created = 0
    if missing_customers or missing_items:
        if create_unknown:
            if missing_customers:
                Customer.objects.bulk_create(
                    [Customer(external_id=c, created_at=now) for c in missing_customers], batch_size=1000, ignore_conflicts=True
                )
                customers_created = len(missing_customers)
                customer_map.update(_customer_ids(missing_customers))
            if missing_items:
                Item.objects.bulk_create(
                    [Item(kind=k, external_id=e, title=e, created_at=now) for k, e in missing_items], batch_size=1000, ignore_conflicts=True
                )
                items_created = len(missing_items)
                item_map.update(_item_ids(pd.DataFrame(missing_items, columns=["item_kind", "item"])))
        else:
            unknown_c = valid["customer"].isin(set(missing_customers)).to_numpy()
            for idx in valid.index[unknown_c]:
                errors.append(RowError(int(idx), "customer", f"unknown customer {valid.at[idx, 'customer']!r}"))
            if missing_items:
                missing_set = set(missing_items)
                pairs = pd.Series(list(zip(valid["item_kind"], valid["item"])), index=valid.index)
                unknown_i = (pairs.isin(missing_set) & has_item).to_numpy() & ~unknown_c
                for idx in valid.index[unknown_i]:
                    errors.append(RowError(int(idx), "item", f"unknown {valid.at[idx, 'item_kind']} {valid.at[idx, 'item']!r}"))
            errors.sort(key=lambda e: e.row)
            return valid, errors, 0, 0
    out = valid.copy()
    out["customer_id"] = out["customer"].map(customer_map).astype("int64")
    item_index = pd.MultiIndex.from_tuples(list(item_map.keys()), names=["item_kind", "item"]) if item_map else None
    if item_index is not None:
        lookup = pd.Series(list(item_map.values()), index=item_index)
        keys = pd.MultiIndex.from_arrays([out["item_kind"].fillna(""), out["item"].fillna("")])
        out["item_id"] = lookup.reindex(keys).to_numpy()
    else:
        out["item_id"] = np.nan
    out["item_id"] = out["item_id"].astype("Int64")
    return out, errors, customers_created, items_created


def _split_duplicates(resolved: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows whose external_id repeats within the batch or is already stored."""
    with_id = resolved["external_id"].notna()
    repeat = resolved["external_id"].duplicated(keep="first") & with_id
    fresh = resolved[~repeat]
    ids = fresh.loc[fresh["external_id"].notna(), "external_id"].tolist()
    stored: set[str] = set()
    for part in _chunks(ids):
        stored.update(Event.objects.filter(external_id__in=part).values_list("external_id", flat=True))
    if stored:
        fresh = fresh[~fresh["external_id"].isin(stored)]
    return fresh, int(repeat.sum()) + len(stored)


def _insert_bulk_create(rows: pd.DataFrame, received_at: datetime) -> int:
    objs = [
        Event(
            external_id=_clean(r.external_id),
            customer_id=int(r.customer_id),
            item_id=_clean(r.item_id),
            type=r.type,
            value=_clean(r.value),
            amount=None if _clean(r.amount) is None else Decimal(str(r.amount)).quantize(Decimal("0.01")),
            occurred_at=r.occurred_at.to_pydatetime(),
            context=r.context,
            received_at=received_at,
        )
        for r in rows.itertuples(index=False)
    ]
    Event.objects.bulk_create(objs, batch_size=2000, ignore_conflicts=True)
    return len(objs)


EVENT_COPY_COLUMNS = ["external_id", "customer_id", "item_id", "type", "value", "amount", "occurred_at", "context", "received_at"]


def _json_texts(values: pd.Series) -> np.ndarray:
    """Each value as compact JSON; values that are the same object (validation shares the parse of
    repeated texts) are serialised once."""
    codes, firsts = pd.factorize(values.map(id).to_numpy())
    objects = values.to_numpy(dtype=object)
    first_at = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    texts = np.array([json.dumps(objects[i], ensure_ascii=False, separators=(",", ":")) for i in first_at], dtype=object)
    return texts[codes] if len(codes) else np.array([], dtype=object)


def _copy_rows(rows: pd.DataFrame, received_at: datetime) -> list[tuple]:
    """The rows as value tuples in EVENT_COPY_COLUMNS order, for psycopg's `Copy.write_row` (which
    encodes each value for the COPY text format; see `common.bulk.copy_values`)."""
    from common.bulk import copy_values

    n = len(rows)
    columns = [
        copy_values(rows["external_id"]),
        copy_values(rows["customer_id"].astype("Int64")),
        copy_values(rows["item_id"].astype("Int64")),
        copy_values(rows["type"]),
        copy_values(rows["value"]),
        copy_values(rows["amount"].round(2)),
        copy_values(rows["occurred_at"]),
        _json_texts(rows["context"]),
        np.full(n, received_at.isoformat(), dtype=object),
    ]
    return list(zip(*columns))


def _write_rows(copy, rows: list[tuple]) -> None:
    for row in rows:
        copy.write_row(row)


def _stored_event_ids(cur, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    cur.execute(f"SELECT external_id FROM {Event._meta.db_table} WHERE external_id = ANY(%s::text[])", [pg_text_array(ids)])
    return {r[0] for r in cur.fetchall()}


def _insert_copy(rows: pd.DataFrame, received_at: datetime, *, check_stored: bool = True, values: list[tuple] | None = None) -> int:
    """PostgreSQL: COPY the batch straight into the events table, leaving out ids already stored.

    COPY is several times faster than multi-row INSERT. The ids already stored are found first (one
    index probe per id); if a concurrent sender stores one of the rest in between, the COPY fails on
    the unique index, its savepoint rolls back, and the batch goes through a temporary table and
    INSERT ... ON CONFLICT DO NOTHING instead, which takes what is new and skips the rest.
    """
    table = Event._meta.db_table
    columns = ", ".join(EVENT_COPY_COLUMNS)
    ids = rows["external_id"].dropna().tolist()
    with connection.cursor() as cur:
        stored = _stored_event_ids(cur, ids) if check_stored else set()
        if stored:
            rows = rows[~rows["external_id"].isin(stored)]
        if rows.empty:
            return 0
        if values is None or stored:
            values = _copy_rows(rows, received_at)
        try:
            with transaction.atomic():
                with cur.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    _write_rows(copy, values)
            return len(rows)
        except (IntegrityError, connection.Database.IntegrityError):  # the driver's own, from the raw COPY
            pass  # raced: fall back to the conflict-tolerant path
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _event_load (external_id text, customer_id bigint, item_id bigint, "
            "type text, value double precision, amount numeric(14,2), occurred_at timestamptz, context jsonb, "
            "received_at timestamptz) ON COMMIT DELETE ROWS"
        )
        with cur.cursor.copy("COPY _event_load FROM STDIN") as copy:
            _write_rows(copy, values)
        cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _event_load ON CONFLICT DO NOTHING")
        inserted = cur.rowcount
        cur.execute("TRUNCATE _event_load")
    return inserted


def events_validate(
    *, rows: pd.DataFrame, assume_tz: str | None = None, now: datetime | None = None
) -> tuple[pd.DataFrame, list[RowError]]:
    """The valid rows of a batch, normalised, and an error for each bad one. Touches no database."""
    now = now or timezone.now()
    max_future = timedelta(seconds=settings.INGEST_MAX_FUTURE_SKEW_SECONDS)
    return validate_events(rows, now=now, max_future=max_future, assume_tz=assume_tz)


@dataclass
class PreparedEvents:
    """A batch resolved and ready to write (see `events_prepare`)."""

    result: IngestResult
    fresh: pd.DataFrame  # the rows to insert: references resolved, repeats within the batch removed
    now: datetime
    expect_new: bool
    copy_rows: list[tuple] | None = None  # PostgreSQL, expect_new: the COPY rows, built ahead of the write


def events_prepare(
    *,
    valid: pd.DataFrame,
    errors: list[RowError] | None = None,
    received: int | None = None,
    create_unknown: bool | None = None,
    all_or_nothing: bool = True,
    now: datetime | None = None,
    expect_new: bool = False,
) -> PreparedEvents:
    """Resolve a validated batch's customers and items (creating unknown ones, or refusing them) and
    drop ids repeated within the batch. `events_write` then stores it. Run inside the writer's
    transaction for all or nothing (as `events_store` does); a file import runs it ahead, while the
    previous chunk is written, so customers and items it creates are committed on their own.

    `expect_new` (a file import that has met no duplicate yet) skips the look-up of stored ids on
    PostgreSQL and lets the unique index find a duplicate: the batch then goes the slower,
    conflict-tolerant way, and the result is the same.
    """
    now = now or timezone.now()
    errors = list(errors or [])
    create_unknown = settings.INGEST_CREATE_UNKNOWN if create_unknown is None else create_unknown
    result = IngestResult(received=len(valid) + len({e.row for e in errors}) if received is None else received)
    with transaction.atomic():
        resolved, ref_errors, result.customers_created, result.items_created = _resolve(valid, create_unknown=create_unknown, now=now)
        if ref_errors:
            if all_or_nothing:
                raise IngestRefused(sorted(errors + ref_errors, key=lambda e: e.row))
            bad_rows = {e.row for e in ref_errors}
            valid = valid[~valid.index.isin(bad_rows)]
            resolved, _, more_customers, more_items = _resolve(valid, create_unknown=False, now=now)
            result.customers_created += more_customers  # (those the first pass created are found now: none)
            result.items_created += more_items
    result.errors = sorted(errors + ref_errors, key=lambda e: e.row)
    result.invalid = len({e.row for e in result.errors})
    prepared = PreparedEvents(result=result, fresh=resolved, now=now, expect_new=expect_new)
    if connection.vendor == "postgresql":
        # ON CONFLICT DO NOTHING skips stored ids; its row count tells how many were new.
        repeat = resolved["external_id"].duplicated(keep="first") & resolved["external_id"].notna()
        prepared.fresh, result.duplicates = resolved[~repeat], int(repeat.sum())
        if expect_new and len(prepared.fresh):
            prepared.copy_rows = _copy_rows(prepared.fresh, now)
    return prepared


def events_write(prepared: PreparedEvents) -> IngestResult:
    """Insert a prepared batch in bulk, skipping ids already stored; returns its result."""
    result, now = prepared.result, prepared.now
    with transaction.atomic():
        if connection.vendor == "postgresql":
            fresh = prepared.fresh
            result.created = _insert_copy(fresh, now, check_stored=not prepared.expect_new, values=prepared.copy_rows) if len(fresh) else 0
        else:
            fresh, result.duplicates = _split_duplicates(prepared.fresh)
            result.created = _insert_bulk_create(fresh, now) if len(fresh) else 0
        if len(fresh):
            # Stored before (found by the look-up or the unique index), or by a concurrent sender.
            result.duplicates += len(fresh) - result.created
    return result


def events_store(
    *,
    valid: pd.DataFrame,
    errors: list[RowError] | None = None,
    received: int | None = None,
    create_unknown: bool | None = None,
    all_or_nothing: bool = True,
    now: datetime | None = None,
) -> IngestResult:
    """Store validated events in one transaction: resolve references, skip duplicates, insert in bulk.

    `errors` are the validation errors of the same batch (reported back in the result).
    With `all_or_nothing`, an unknown customer or item (when `create_unknown` is off) refuses the
    whole batch with `IngestRefused`; otherwise those rows are left out and reported.
    """
    with transaction.atomic():
        prepared = events_prepare(valid=valid, errors=errors, received=received, create_unknown=create_unknown,
                                  all_or_nothing=all_or_nothing, now=now)
        return events_write(prepared)


def events_ingest(
    *,
    rows: pd.DataFrame,
    create_unknown: bool | None = None,
    all_or_nothing: bool = True,
    assume_tz: str | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Validate and store a batch of events (canonical columns, see `validation.EVENT_COLUMNS`).

    With `all_or_nothing` (the REST contract), any bad row refuses the whole batch: `IngestRefused`
    is raised with every error and nothing is written. Without it, the valid rows are stored and the
    bad ones are returned in `result.errors`.
    Events whose `external_id` is already stored, or repeats within the batch, are skipped and
    counted as duplicates.
    """
    now = now or timezone.now()
    valid, errors = events_validate(rows=rows, assume_tz=assume_tz, now=now)
    if errors and all_or_nothing:
        raise IngestRefused(errors)
    return events_store(
        valid=valid, errors=errors, received=len(rows), create_unknown=create_unknown, all_or_nothing=all_or_nothing, now=now
    )


# --- files -------------------------------------------------------------------------------------


@dataclass
class ImportReport(IngestResult):
    skipped: int = 0  # rows the format leaves out on purpose (e.g. retail lines without a customer)
    chunks: int = 0
    stopped: bool = False  # the import stopped at a chunk with a bad row (that chunk was not written)
    rejects_written: int = 0

    def as_dict(self) -> dict:
        return {**super().as_dict(), "skipped": self.skipped, "chunks": self.chunks, "stopped": self.stopped,
                "rejects_written": self.rejects_written}


def _write_rejects(path, raw: pd.DataFrame | None, errors: list[RowError], header: bool) -> int:
    by_row: dict[int, list[str]] = {}
    for e in errors:
        by_row.setdefault(e.row, []).append(f"{e.field}: {e.reason}")
    if not by_row:
        return 0
    if raw is not None:
        rows = raw.loc[raw.index.intersection(list(by_row))].copy()
    else:
        rows = pd.DataFrame(index=sorted(by_row))
    rows.insert(0, "line", rows.index)
    rows.insert(1, "errors", ["; ".join(by_row[i]) for i in rows.index])
    rows.to_csv(path, mode="a", header=header, index=False)
    return len(rows)


def events_import_file(
    *,
    path,
    fmt: str,
    chunk_size: int | None = None,
    skip_invalid: bool = False,
    rejects_path=None,
    create_unknown: bool | None = None,
    assume_tz: str | None = None,
    progress=None,
) -> ImportReport:
    """Import a file of events chunk by chunk; each chunk is written in its own transaction.

    By default the first chunk holding a bad row stops the import and is not written (chunks
    before it are, and a rerun skips them as duplicates). With `skip_invalid`, valid rows are
    written and bad ones appended to `rejects_path` with their line number and reasons.
    """
    from pathlib import Path

    from .importers import READERS, ImportChunk, ImportFormatError

    if fmt not in READERS:
        raise ImportFormatError(f"unknown format {fmt!r} (expected one of: {', '.join(READERS)})")
    path = Path(path)
    if not path.exists():
        raise ImportFormatError(f"{path}: no such file or folder")
    chunk_size = chunk_size or settings.INGEST_CHUNK_SIZE
    report = ImportReport()
    rejects_header = True
    if rejects_path is not None:
        Path(rejects_path).unlink(missing_ok=True)
    # Reading and validating a chunk (CPU) overlaps with writing the previous one (database) in a
    # writer thread with its own connection. Inside a caller's transaction (tests, a wrapping
    # atomic block) a second connection could not see its rows, so the work stays in this thread.
    pipelined = not connection.in_atomic_block
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") if pipelined else None
    pending: Future | None = None
    pending_chunk: ImportChunk | None = None
    # A first import of a file meets no stored event: skip the look-up of stored ids until a chunk
    # reports a duplicate (a second import, overlapping exports), then look them up first.
    duplicates_seen = [False]
    # PostgreSQL takes writers side by side: the next chunk is prepared here (its new customers and
    # items committed) while the writer stores this one. SQLite takes one writer at a time, so there
    # the writer thread prepares and stores each chunk.
    ahead = connection.vendor == "postgresql"

    def prepare(chunk, valid, errors, now) -> PreparedEvents:
        """The chunk's customers and items, then its events resolved (and, for a first import on
        PostgreSQL, their COPY rows built)."""
        created_customers = created_items = 0
        if chunk.customers is not None and len(chunk.customers):
            created_customers = customers_upsert(rows=chunk.customers, now=now, update_existing=False, all_or_nothing=False,
                                                 source="import", recreate_forgotten=False).created
        if chunk.items is not None and len(chunk.items):
            created_items = items_upsert(rows=chunk.items, now=now, update_existing=False, all_or_nothing=False).created
        prepared = events_prepare(valid=valid, errors=errors, received=len(chunk.events), create_unknown=create_unknown,
                                  all_or_nothing=not skip_invalid, now=now, expect_new=not duplicates_seen[0])
        prepared.result.customers_created += created_customers
        prepared.result.items_created += created_items
        return prepared

    def write(prepared: PreparedEvents) -> IngestResult:
        try:
            result = events_write(prepared)
            if result.duplicates:
                duplicates_seen[0] = True
            return result
        finally:
            if pipelined:
                connections.close_all()  # the writer thread's own connection

    def collect(future_or_result, chunk) -> bool:
        """Merge a stored chunk into the report; False when the import must stop."""
        nonlocal rejects_header
        try:
            result = future_or_result.result() if isinstance(future_or_result, Future) else future_or_result
        except IngestRefused as exc:
            _refuse(exc.errors, chunk)
            return False
        report.skipped += chunk.skipped
        report.merge(result)
        if result.errors and rejects_path is not None:
            report.rejects_written += _write_rejects(rejects_path, chunk.raw, result.errors, rejects_header)
            rejects_header = False
        return True

    def _refuse(errors, chunk):
        # The chunk's transaction rolled back (or never started): nothing of it is written.
        report.errors.extend(errors)
        report.invalid += len({e.row for e in errors})
        report.received += len(chunk.events)
        report.stopped = True

    try:
        for chunk in READERS[fmt](path, chunk_size=chunk_size, progress=progress):
            report.chunks += 1
            now = timezone.now()
            valid, errors = events_validate(rows=chunk.events, assume_tz=assume_tz or chunk.assume_tz, now=now)
            prepared = refused = None
            if errors and not skip_invalid:
                refused = errors
            elif ahead or not pipelined:
                try:
                    prepared = prepare(chunk, valid, errors, now)
                except IngestRefused as exc:
                    refused = exc.errors
            if pending is not None:
                ok = collect(pending, pending_chunk)
                pending = None
                if not ok:
                    break
            if refused is not None:
                _refuse(refused, chunk)
                break
            if pipelined:
                job = (lambda p=prepared: write(p)) if prepared is not None else \
                    (lambda c=chunk, v=valid, e=errors, n=now: write(prepare(c, v, e, n)))
                pending, pending_chunk = pool.submit(job), chunk
            else:
                collect(write(prepared), chunk)
        if pending is not None:
            collect(pending, pending_chunk)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return report


# --- profiles ----------------------------------------------------------------------------------

PROFILE_FIELDS = [
    "recency_days", "frequency", "monetary", "avg_order_value", "r_score", "f_score", "m_score", "rfm_code",
    "interests", "top_categories", "top_category", "median_price", "price_band", "active_days", "first_seen",
    "last_seen", "events_30d", "n_events", "community_posts", "community_comments", "community_likes",
    "orders_total", "first_purchase_at", "last_purchase_at", "lifecycle",
]


def _profile_params() -> dict:
    weights = {**settings.EVENT_WEIGHTS, "rating": "explicit"}
    return {
        "window_days": settings.PROFILE_WINDOW_DAYS,
        "weights": weights,
        "half_life_days": settings.EVENT_DECAY_HALF_LIFE_DAYS,
        "new_days": settings.LIFECYCLE_NEW_DAYS,
        "active_days": settings.LIFECYCLE_ACTIVE_DAYS,
        "at_risk_days": settings.LIFECYCLE_AT_RISK_DAYS,
        "recent_days": settings.PROFILE_RECENT_DAYS,
    }


def profiles_compute(*, step=None, incremental: bool = False, now: datetime | None = None, progress=None) -> dict:
    """Compute every customer's profile from events (or, incrementally, those with new events).

    Events are read in chunks of customers (PROFILE_CHUNK_CUSTOMERS) so memory stays bounded; the
    RFM quintiles are then scored over the whole population and all profiles are written in one
    transaction, so readers see either the previous profiles or the new ones. A run whose start is
    older than an already stored newer run's does not overwrite it.
    """
    from .features import catalogue_price_cuts, compute_features, score_rfm
    from .models import PipelineStep, Profile, StepStatus

    started = time.monotonic()
    now = now or timezone.now()
    progress = progress or (lambda fraction, message="": None)
    max_event_id = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    watermark = None
    if incremental:
        previous = (
            PipelineStep.objects.filter(name="profiles", status=StepStatus.SUCCEEDED, counts__has_key="max_event_id")
            .order_by("-finished_at").first()
        )
        if previous is None:
            incremental = False  # nothing to build on: compute everyone
        else:
            watermark = int(previous.counts["max_event_id"])
    if incremental:
        changed = (
            Event.objects.filter(id__gt=watermark, id__lte=max_event_id).order_by().values_list("customer_id", flat=True).distinct()
        )
        customer_ids = np.unique(np.fromiter(changed.iterator(chunk_size=50_000), dtype=np.int64))
        customer_ids = np.union1d(customer_ids, np.fromiter(
            Customer.objects.filter(profile__isnull=True).values_list("id", flat=True).iterator(chunk_size=50_000), dtype=np.int64
        ))
    else:
        customer_ids = np.fromiter(Customer.objects.order_by("id").values_list("id", flat=True).iterator(chunk_size=50_000), dtype=np.int64)

    prices = Item.objects.filter(kind="product", price__isnull=False).values_list("price", flat=True)
    cuts = catalogue_price_cuts(np.array([float(p) for p in prices], dtype=float)) if prices.exists() else None
    params = _profile_params()
    items = _items_frame()
    chunk = settings.PROFILE_CHUNK_CUSTOMERS
    parts: list[pd.DataFrame] = []
    n_events = 0
    read_s = compute_s = 0.0
    for start in range(0, len(customer_ids), chunk):
        ids = customer_ids[start : start + chunk]
        t0 = time.monotonic()
        # A range keeps the query small and uses the (customer, time) index; the ids in the range
        # that are not asked for (incremental runs) are dropped after reading.
        frame = _events_frame_range(int(ids[0]), int(ids[-1]), items=items)
        if incremental:
            frame = frame[frame["customer_id"].isin(ids)]
        t1 = time.monotonic()
        feats = compute_features(frame, now=now, price_cuts=cuts, customer_ids=ids, **params)
        compute_s += time.monotonic() - t1
        read_s += t1 - t0
        n_events += len(frame)
        parts.append(feats)
        progress((start + len(ids)) / max(len(customer_ids), 1) * 0.8, f"{start + len(ids):,} of {len(customer_ids):,} customers")
    features = pd.concat(parts) if parts else pd.DataFrame(columns=PROFILE_FIELDS)

    if incremental and len(features):
        # Quintiles are over the whole population: the others' stored figures join the scoring.
        from common.bulk import read_frame

        others = read_frame(Profile.objects.order_by(), ["customer_id", "recency_days", "frequency", "monetary"]).set_index("customer_id")
        others = others.apply(pd.to_numeric, errors="coerce")
        others = others.drop(index=features.index, errors="ignore")
        scored = score_rfm(pd.concat([features[["recency_days", "frequency", "monetary"]], others]))
        for col in ("r_score", "f_score", "m_score", "rfm_code"):
            features[col] = scored.loc[features.index, col]
    elif len(features):
        features = score_rfm(features)

    progress(0.85, "writing profiles")
    t2 = time.monotonic()
    written = _profiles_write(features, step=step, now=now, replace_all=not incremental) if len(features) else 0
    write_s = time.monotonic() - t2
    progress(1.0, f"{written:,} profiles written")
    lifecycle = features["lifecycle"].value_counts().to_dict() if len(features) else {}
    recent = {}
    if len(features) and not incremental:
        # Cheap figures for the dashboard, so it never counts the events table on page load.
        recent = {"events_30d": int(features["events_30d"].sum()), "customers_active_30d": int((features["events_30d"] > 0).sum())}
    return {
        **recent,
        "customers": int(len(customer_ids)),
        "profiles_written": int(written),
        "events_read": int(n_events),
        "incremental": incremental,
        "watermark": watermark,
        "max_event_id": int(max_event_id),
        "lifecycle": {str(k): int(v) for k, v in lifecycle.items()},
        "seconds": {"read": round(read_s, 2), "compute": round(compute_s, 2), "write": round(write_s, 2),
                    "total": round(time.monotonic() - started, 2)},
    }


def _items_frame() -> pd.DataFrame:
    """Category, price and kind of every item, indexed by id (the catalogue is small next to events)."""
    from django.db.models import FloatField
    from django.db.models.functions import Cast

    from common.bulk import read_frame

    items = read_frame(Item.objects.order_by().annotate(price_f=Cast("price", FloatField())), ["id", "category", "price_f", "kind"])
    items = items.set_index("id").rename(columns={"price_f": "item_price", "kind": "item_kind"})
    items["category"] = items["category"].astype("string").replace("", pd.NA).astype("category")
    items["item_kind"] = items["item_kind"].astype("category")
    items["item_price"] = pd.to_numeric(items["item_price"], errors="coerce")
    return items


def _events_frame_range(lo: int, hi: int, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """The events of customers lo..hi, with their item's category, price and kind.

    The read is kept lean because it is the largest part of the profiles step: item fields are
    joined in pandas from the small catalogue frame, the order id is extracted from the JSON
    context only for purchases, and on PostgreSQL the time travels as epoch seconds (a number
    parses far faster than a timestamp text).
    """
    from django.db.models import Case, FloatField, When
    from django.db.models.fields.json import KT
    from django.db.models.functions import Cast, Extract

    from common.bulk import read_frame

    items = _items_frame() if items is None else items
    epoch = connection.vendor == "postgresql"
    qs = (
        # a delivered message is something the shop did, not the customer: it is no activity
        Event.objects.filter(customer_id__gte=lo, customer_id__lte=hi).exclude(type="message_delivered")
        .order_by()
        .annotate(
            amount_f=Cast("amount", FloatField()),
            order_id=Case(When(type="purchase", then=KT("context__order_id")), default=None),
            **({"t": Extract("occurred_at", "epoch")} if epoch else {}),
        )
    )
    cols = ["customer_id", "type", "value", "amount_f", "t" if epoch else "occurred_at", "item_id", "order_id"]
    frame = read_frame(qs, cols, parse_dates=() if epoch else ("occurred_at",)).rename(columns={"amount_f": "amount"})
    if epoch:
        frame["occurred_at"] = pd.to_datetime(pd.to_numeric(frame.pop("t")), unit="s", utc=True)
    frame["type"] = frame["type"].astype("category")
    frame["order_id"] = frame["order_id"].astype("string")
    for col in ("value", "amount"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    item_id = pd.to_numeric(frame.pop("item_id"), errors="coerce")
    joined = items.reindex(item_id.to_numpy())
    frame["category"] = joined["category"].astype("string").to_numpy()
    frame["item_price"] = joined["item_price"].to_numpy()
    frame["item_kind"] = joined["item_kind"].astype("object").to_numpy()
    return frame


def _profiles_write(features: pd.DataFrame, *, step, now: datetime, replace_all: bool = False) -> int:
    from common.bulk import bulk_insert, bulk_upsert

    from .models import PipelineStep, Profile, StepStatus

    frame = features.reset_index().rename(columns={"index": "customer_id"})
    out = pd.DataFrame({"customer_id": frame["customer_id"].astype("int64")})
    out["run_id"] = step.pk if step is not None else None
    out["computed_at"] = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    for col in PROFILE_FIELDS:
        if col == "top_category":
            out[col] = frame["top_categories"].map(lambda cats: cats[0] if isinstance(cats, list) and cats else "")
        elif col in frame.columns:
            out[col] = frame[col].to_numpy()
    out["interests"] = out["interests"].map(lambda d: d if isinstance(d, dict) else {})
    out["top_categories"] = out["top_categories"].map(lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else [])
    out["price_band"] = out["price_band"].fillna("")
    for col in ("frequency", "active_days", "events_30d", "n_events", "community_posts", "community_comments",
                "community_likes", "orders_total", "r_score", "f_score", "m_score"):
        out[col] = out[col].fillna(0).astype("int64")
    out["monetary"] = out["monetary"].fillna(0.0).astype(float)
    for col in ("first_seen", "last_seen", "first_purchase_at", "last_purchase_at"):
        out[col] = pd.to_datetime(out[col], utc=True)
    with transaction.atomic():
        if step is not None:
            newer = PipelineStep.objects.filter(
                name="profiles", status=StepStatus.SUCCEEDED, started_at__gt=step.started_at
            ).exists()
            if newer:
                # A later run already wrote fresher profiles; this one's result is stale.
                return 0
        if replace_all:
            # A full run rewrites every profile: deleting and inserting is about twice as fast as
            # an upsert, and readers keep seeing the old rows until the commit (MVCC).
            Profile.objects.all().delete()
            return bulk_insert(Profile, out, json_columns=("interests", "top_categories"))
        return bulk_upsert(Profile, out, key=["customer_id"], json_columns=("interests", "top_categories"))
