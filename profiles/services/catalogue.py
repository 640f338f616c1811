"""
The catalogue: customers and items created or updated in bulk, and customers' consents.

Both upserts take a frame, validate every row (`profiles.validation`) and write in bulk in one
transaction; with `all_or_nothing`, one bad row refuses the whole batch (`IngestRefused`). Every
change of a consent is stamped on the customer and recorded (`ConsentChange`, one audit entry a
call). The look-ups of stored customers and items by external id live here too: the event write
path (`services.events`) resolves each event's customer and item through them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from ..models import CONSENT_FIELDS, Customer, Item
from ..validation import RowError, validate_customers, validate_items

CONSENT_CHANNELS = {field: channel for channel, field in CONSENT_FIELDS.items()}  # consent column -> channel

LOOKUP_CHUNK = 5000

# The fields an upsert copies from a row (a missing or null value keeps the stored one).
_CUSTOMER_FIELDS = [
    "name",
    "email",
    "time_zone",
    "consent_in_app",
    "consent_email",
    "consent_push",
    "attributes",
    "created_at",
]
_CONSENT_FIELDS = list(CONSENT_FIELDS.values())
_ITEM_FIELDS = ["title", "category", "price", "attributes", "active", "created_at"]


class IngestRefused(Exception):
    """A batch was refused as a whole; `errors` lists every bad row."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{len(errors)} invalid row(s); first: {errors[0]}" if errors else "invalid batch")


@dataclass
class UpsertResult:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


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


# --- consent -----------------------------------------------------------------------------------


def consent_changes_record(
    *, changes: list[tuple[int, str, bool]], source: str, user=None, now: datetime | None = None, label: str = ""
) -> int:
    """Record (customer_id, consent field, granted) changes in bulk, and one audit entry for them
    (`label` names the customer when there is one)."""
    from accounts.audit import actor_of, audit_record

    from ..models import ConsentChange, ProfilesAuditAction

    now = now or timezone.now()
    operator, _ = actor_of(user)  # `user` may also be an API key's principal: then no operator account
    ConsentChange.objects.bulk_create(
        [
            ConsentChange(
                customer_id=cid,
                channel=CONSENT_CHANNELS[field],
                granted=bool(granted),
                source=source,
                changed_by=operator,
                at=now,
            )
            for cid, field, granted in changes
        ],
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
        audit_record(
            action=ProfilesAuditAction.CONSENT_CHANGED,
            actor=user,
            source=source,
            target_type="profiles.customer",
            target_id=str(one) if one else "",
            target_label=label if one and label else f"{len(customers):,} customers",
            changes={"channels": summary},
        )
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
        consent_changes_record(
            changes=[(customer.pk, f, consents[f]) for f in changed],
            source=source,
            user=user,
            now=now,
            label=customer.external_id,
        )
    return changed


# --- customers and items -----------------------------------------------------------------------


def customers_upsert(
    *,
    rows: pd.DataFrame,
    now: datetime | None = None,
    update_existing: bool = True,
    all_or_nothing: bool = True,
    source: str = "api",
    actor=None,
    recreate_forgotten: bool = True,
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
        valid, errors = _refuse_forgotten_customers(valid, errors)
    result = UpsertResult(received=len(rows), errors=errors)
    if errors and all_or_nothing:
        raise IngestRefused(errors)
    if valid.empty:
        return result
    n_valid = len(valid)
    with transaction.atomic():
        existing: dict[str, Customer] = {}
        if update_existing:
            for part in _chunks(valid["external_id"].tolist()):
                existing.update({c.external_id: c for c in Customer.objects.filter(external_id__in=part)})
        else:
            # Only the new ones matter (a file import's chunks name the same customers again and again):
            # the stored ones are found by their ids alone, without loading them.
            valid = valid[~valid["external_id"].isin(_customer_ids(valid["external_id"].tolist()).keys())]
        new_objs, changed, changed_fields, consent_log = _customers_diff(
            valid, existing, now=now, update_existing=update_existing
        )
        Customer.objects.bulk_create(new_objs, batch_size=1000)
        if changed:
            Customer.objects.bulk_update(changed, sorted(changed_fields), batch_size=1000)
        if consent_log:
            if any(obj.pk is None for obj, _, _ in consent_log):  # backends that return no ids from bulk_create
                ids = _customer_ids([o.external_id for o, _, _ in consent_log if o.pk is None])
                for obj, _, _ in consent_log:
                    obj.pk = obj.pk or ids.get(obj.external_id)
            consent_changes_record(
                changes=[(o.pk, f, g) for o, f, g in consent_log], source=source, now=now, user=actor
            )
    result.created = len(new_objs)
    result.updated = len(changed)
    result.unchanged = n_valid - result.created - result.updated
    return result


def _refuse_forgotten_customers(valid: pd.DataFrame, errors: list[RowError]) -> tuple[pd.DataFrame, list[RowError]]:
    """Move the rows of forgotten customers (not stored again since) from `valid` to the errors."""
    ids = valid["external_id"].tolist()
    stored = set(_customer_ids(ids))
    forgotten = _forgotten([e for e in dict.fromkeys(ids) if e not in stored])
    if not forgotten:
        return valid, errors
    gone = valid["external_id"].isin(forgotten).to_numpy()
    errors = sorted(
        errors
        + [
            RowError(int(idx), "external_id", _FORGOTTEN_REASON.format(valid.at[idx, "external_id"]))
            for idx in valid.index[gone]
        ],
        key=lambda e: e.row,
    )
    return valid[~gone], errors


def _customers_diff(
    valid: pd.DataFrame, existing: dict[str, Customer], *, now: datetime, update_existing: bool
) -> tuple[list[Customer], list[Customer], set[str], list[tuple[Customer, str, bool]]]:
    """The customers to create, those to update and which fields, and the consents each one changes."""
    new_objs: list[Customer] = []
    changed: list[Customer] = []
    changed_fields: set[str] = set()
    consent_log: list[tuple[Customer, str, bool]] = []
    for rec in valid.to_dict("records"):
        rec = {k: _clean(v) for k, v in rec.items()}
        obj = existing.get(rec["external_id"])
        if obj is None:
            kwargs = {k: rec[k] for k in _CUSTOMER_FIELDS if rec.get(k) is not None}
            if any(rec.get(c) is not None for c in _CONSENT_FIELDS):
                kwargs["consent_updated_at"] = now
            obj = Customer(external_id=rec["external_id"], **kwargs)
            new_objs.append(obj)
            consent_log.extend((obj, c, rec[c]) for c in _CONSENT_FIELDS if rec.get(c) is not None)
            continue
        if not update_existing:
            continue
        dirty = [
            k for k in _CUSTOMER_FIELDS if k != "created_at" and rec.get(k) is not None and getattr(obj, k) != rec[k]
        ]
        if dirty:
            for k in dirty:
                setattr(obj, k, rec[k])
            if any(k in _CONSENT_FIELDS for k in dirty):
                obj.consent_updated_at = now
                consent_log.extend((obj, k, rec[k]) for k in dirty if k in _CONSENT_FIELDS)
                dirty.append("consent_updated_at")
            changed.append(obj)
            changed_fields.update(dirty)
    return new_objs, changed, changed_fields, consent_log


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
    n_valid = len(valid)
    with transaction.atomic():
        existing: dict[tuple[str, str], Item] = {}
        if update_existing:
            for kind, group in valid.groupby("kind"):
                for part in _chunks(group["external_id"].tolist()):
                    existing.update(
                        {(i.kind, i.external_id): i for i in Item.objects.filter(kind=kind, external_id__in=part)}
                    )
        else:
            # Only the new ones matter: the stored ones are found by their keys alone, without loading them.
            stored = _item_ids(valid[["kind", "external_id"]].set_axis(["item_kind", "item"], axis=1))
            keys = pd.MultiIndex.from_arrays([valid["kind"], valid["external_id"]])
            valid = valid[~keys.isin(list(stored)).astype(bool)] if stored else valid
        new_objs: list[Item] = []
        changed: list[Item] = []
        changed_fields: set[str] = set()
        for rec in valid.to_dict("records"):
            rec = {k: _clean(v) for k, v in rec.items()}
            if rec.get("price") is not None:
                rec["price"] = Decimal(str(rec["price"])).quantize(Decimal("0.01"))
            obj = existing.get((rec["kind"], rec["external_id"]))
            if obj is None:
                kwargs = {k: rec[k] for k in _ITEM_FIELDS if rec.get(k) is not None}
                new_objs.append(Item(kind=rec["kind"], external_id=rec["external_id"], **kwargs))
                continue
            if not update_existing:
                continue
            dirty = [
                k for k in _ITEM_FIELDS if k != "created_at" and rec.get(k) is not None and getattr(obj, k) != rec[k]
            ]
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
    result.unchanged = n_valid - result.created - result.updated
    return result


# --- look-ups by external id ---------------------------------------------------------------------


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
        cur.execute(
            f"SELECT external_id, id FROM {table} WHERE external_id = ANY(%s::text[]){where}",
            [pg_text_array(external_ids), *params],
        )
        return dict(cur.fetchall())


def _customer_ids(external_ids: list[str]) -> dict[str, int]:
    return _ids_by_external_id(Customer._meta.db_table, external_ids)


def _item_ids(keys: pd.DataFrame) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for kind, group in keys.groupby("item_kind"):
        ids = _ids_by_external_id(Item._meta.db_table, group["item"].tolist(), where=" AND kind = %s", params=(kind,))
        found.update({(kind, ext): pk for ext, pk in ids.items()})
    return found


_FORGOTTEN_REASON = (
    "customer {!r} was forgotten (erased) and is not created again by events; if the same person "
    "signed up again, create them first through POST /api/customers/"
)


def _forgotten(external_ids: list[str]) -> set[str]:
    """Which of these ids (of customers not stored) belong to forgotten customers."""
    from ..privacy import forgotten_among

    return forgotten_among(external_ids) if external_ids else set()
