"""
Vectorised validation of event, customer and item batches.

Every entry point (REST, CSV import, dataset adapters, the demo seeder) turns its input into a
pandas DataFrame with the canonical columns below and passes it through these functions, so the
rules and the error messages are the same everywhere. A function returns the rows that passed,
normalised to their storage types, and one `RowError` per problem, naming the row (its index in
the frame: a position in a JSON array or a line number in a file), the field and the reason.
"""

from __future__ import annotations

import functools
import json
import math
import re
import zoneinfo
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pandas._libs import lib

from .models import CONSENT_FIELDS, EventType, ItemKind

EVENT_COLUMNS = ["external_id", "customer", "item_kind", "item", "type", "value", "amount", "occurred_at", "context"]
CUSTOMER_COLUMNS = [
    "external_id",
    "name",
    "email",
    "time_zone",
    *CONSENT_FIELDS.values(),
    "attributes",
    "created_at",
]
ITEM_COLUMNS = ["kind", "external_id", "title", "category", "price", "attributes", "active", "created_at"]
# Columns that hold text (a number is taken as its text, as for an id; an object or a boolean is refused).
EVENT_TEXT_COLUMNS = frozenset({"external_id", "customer", "item_kind", "item", "type", "occurred_at"})
CUSTOMER_TEXT_COLUMNS = frozenset({"external_id", "name", "email", "time_zone", "created_at"})
ITEM_TEXT_COLUMNS = frozenset({"kind", "external_id", "title", "category", "created_at"})

EVENT_TYPES = frozenset(t.value for t in EventType)
ITEM_KINDS = frozenset(k.value for k in ItemKind)
# Every event type names an item, except a search (it names a query, in context) and what
# happens to a campaign's message (the message may carry no item; context names the campaign).
TYPES_WITHOUT_ITEM = frozenset(
    {
        EventType.SEARCH.value,
        EventType.MESSAGE_DELIVERED.value,
        EventType.MESSAGE_OPENED.value,
        EventType.MESSAGE_CLICKED.value,
    }
)
QUANTITY_TYPES = frozenset({EventType.PURCHASE.value, EventType.ADD_TO_CART.value, EventType.RETURN.value})
MAX_ID_LENGTH = 128
MAX_AMOUNT = 10**12  # DecimalField(max_digits=14, decimal_places=2)
MAX_PRICE = 10**10  # Item.price: DecimalField(max_digits=12, decimal_places=2)
MAX_EMAIL_LENGTH = 254  # Customer.email: EmailField's max_length
MAX_JSON_DEPTH = 32  # context and attributes: deeper nesting is refused, not stored
RATING_MIN, RATING_MAX = 0.0, 10.0
EARLIEST = pd.Timestamp("1990-01-01", tz="UTC")
# An ISO 8601 timestamp that carries its offset (Z or +hh:mm / +hhmm / +hh).
_OFFSET_RE = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
_EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# Lone UTF-16 surrogates ("\ud800" in JSON) are not characters: no database encoding can hold them.
_SURROGATE_RE = "[\ud800-\udfff]"
NUL_REASON = "contains a NUL character"
SURROGATE_REASON = "contains invalid Unicode (a lone surrogate, e.g. \\ud800)"


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.reason}"


class _Errors:
    """Collects errors as (row index array, field, reason) blocks, vectorised."""

    def __init__(self, index: pd.Index):
        self.index = index
        self.bad = np.zeros(len(index), dtype=bool)
        self._blocks: list[tuple[np.ndarray, str, object]] = []

    def add(self, mask, field: str, reason) -> None:
        """Record `reason` for every row where `mask` is true; `reason` may be a Series of texts."""
        mask = np.asarray(mask, dtype=bool) & ~self.bad  # one error per row is enough to refuse it
        if mask.any():
            self.bad |= mask
            self._blocks.append((mask, field, reason))

    def rows(self) -> list[RowError]:
        out: list[RowError] = []
        for mask, field, reason in self._blocks:
            rows = self.index[mask]
            if isinstance(reason, pd.Series):
                texts = reason.to_numpy()[mask]
                out.extend(RowError(int(r), field, str(t)) for r, t in zip(rows, texts, strict=False))
            else:
                out.extend(RowError(int(r), field, reason) for r in rows)
        out.sort(key=lambda e: e.row)
        return out


def _text(series: pd.Series) -> pd.Series:
    """Strings stripped, with missing values (None, NaN, '') as <NA>."""
    if series.dtype == object and lib.is_string_array(series.to_numpy(dtype=object), skipna=False):
        # Only text (every file import): stripped in one pass of str.strip, the same function pandas'
        # .str.strip calls, without its per-operation machinery; '' becomes <NA> as below.
        stripped = [v.strip() or None for v in series.to_numpy(dtype=object)]
        return pd.Series(pd.array(stripped, dtype="string"), index=series.index)
    s = series.astype("string").str.strip()
    return s.mask(s == "")


def _present(series: pd.Series) -> np.ndarray:
    return series.notna().to_numpy()


def _numbers(series: pd.Series, errors: _Errors, field: str) -> pd.Series:
    """Parse numbers; a non-empty value that is not a finite number is an error."""
    all_text = series.dtype == object and lib.is_string_array(series.to_numpy(dtype=object), skipna=False)
    if all_text:  # a file's column: no booleans, and blank texts found in one pass of str.strip
        raw = series.where(np.array([bool(v.strip()) for v in series.to_numpy(dtype=object)], dtype=bool), None)
    elif series.dtype == object:
        is_bool = series.map(lambda v: isinstance(v, bool)).to_numpy()
        errors.add(is_bool, field, "expected a number, got a boolean")
        raw = series.where(series.astype("string").str.strip() != "", None)
    else:
        if pd.api.types.is_bool_dtype(series):  # every row gave true or false
            errors.add(series.notna().to_numpy(dtype=bool), field, "expected a number, got a boolean")
        raw = series
    try:
        nums = pd.to_numeric(raw, errors="coerce").astype("float64")
    except (OverflowError, TypeError, ValueError):
        # An integer beyond float range (JSON allows any) defeats the vectorised path; such a batch
        # is hostile or broken anyway, so convert it value by value and let the checks below name it.
        nums = pd.Series([_to_float(v) for v in raw], index=raw.index, dtype="float64")
    given = raw.notna().to_numpy()
    errors.add(given & nums.isna().to_numpy(), field, "not a number")
    errors.add(given & ~np.isfinite(nums.fillna(0).to_numpy()), field, "not a finite number")
    return nums


def _to_float(value) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if str(value).strip()[:1] != "-" else -math.inf
    except (TypeError, ValueError):
        return math.nan


def _json_problem(value) -> str | None:
    """Why a parsed JSON value cannot be stored, or None. Iterative: hostile depth cannot blow the stack."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return NUL_REASON
            if _has_surrogate(node):
                return SURROGATE_REASON
        elif isinstance(node, float):
            if not math.isfinite(node):
                return "contains a number that is not finite (NaN or Infinity)"
        elif isinstance(node, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"is nested deeper than {MAX_JSON_DEPTH} levels"
            items = node.items() if isinstance(node, dict) else ((None, v) for v in node)
            for key, child in items:
                if key is not None:
                    stack.append((key, depth))
                stack.append((child, depth + 1))
    return None


def per_object(objects: np.ndarray, func) -> np.ndarray:
    """`func` of each value of an object array, called once per distinct object (by identity) and
    shared by the rows holding that same object."""
    if not len(objects):
        return np.array([], dtype=object)
    codes, uniques = pd.factorize(np.fromiter(map(id, objects), dtype=np.int64, count=len(objects)))
    first_at = np.empty(len(uniques), dtype=np.int64)
    first_at[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    results = np.empty(len(uniques), dtype=object)
    results[:] = [func(objects[i]) for i in first_at]
    return results[codes]


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _contexts(series: pd.Series, errors: _Errors, field: str = "context") -> pd.Series:
    """Each context is a JSON object (a dict, or a JSON text of one); missing means {}."""

    def parse(value):
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return {}
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                return _Bad(f"not valid JSON ({exc.msg})")
            except RecursionError:
                return _Bad(f"is nested deeper than {MAX_JSON_DEPTH} levels")
            if not isinstance(value, dict):
                return _Bad("must be a JSON object")
            problem = _json_problem(value)  # escapes such as \u0000 only appear once parsed
            return value if problem is None else _Bad(problem)
        return _Bad("must be a JSON object")

    # Contexts repeat (a file has a handful of distinct ones): each distinct text is parsed once.
    texts = series.map(lambda v: v if isinstance(v, str) else None)
    if texts.notna().all():
        codes, uniques = pd.factorize(texts)
        parsed = pd.Series(np.array([parse(u) for u in uniques] + [None], dtype=object)[codes], index=series.index)
    else:
        parsed = series.map(parse)
    bad = parsed.map(lambda v: isinstance(v, _Bad))
    if bad.any():
        errors.add(bad.to_numpy(), field, parsed.map(lambda v: v.reason if isinstance(v, _Bad) else ""))
    return parsed


class _Bad:
    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _ids(series: pd.Series, errors: _Errors, field: str, *, required: bool) -> pd.Series:
    ids = _text(series)
    if required:
        errors.add(~_present(ids), field, "is required")
    too_long = ids.str.len().fillna(0).to_numpy() > MAX_ID_LENGTH
    errors.add(too_long, field, f"longer than {MAX_ID_LENGTH} characters")
    # one search over the whole column first; the per-row search only if it finds one
    present = ids.dropna().tolist()
    if _PLAIN_CONTROL_RE.search("".join(present)):
        has_control = ids.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False).to_numpy(dtype=bool)
        errors.add(has_control, field, "contains control characters")
    return ids


def parse_timestamps(
    series: pd.Series,
    errors: _Errors,
    field: str,
    *,
    now: datetime,
    max_future: timedelta,
    assume_tz: str | None = None,
    required: bool = True,
) -> pd.Series:
    """ISO 8601 texts (or datetimes) to UTC timestamps.

    A timestamp without an offset is refused unless `assume_tz` names the zone it is in: guessing
    would shift every event by hours. Timestamps before 1990 or beyond `now + max_future` are refused.
    """
    limit = pd.Timestamp(now).tz_convert("UTC") + max_future
    if pd.api.types.is_datetime64_any_dtype(series):
        ts = series
        if ts.dt.tz is None:
            if assume_tz is None:
                errors.add(_present(ts), field, "has no time zone offset")
                ts = ts.dt.tz_localize("UTC")
            else:
                ts = ts.dt.tz_localize(assume_tz, ambiguous="NaT", nonexistent="shift_forward")
        ts = ts.dt.tz_convert("UTC")
        if required:
            errors.add(~_present(ts), field, "is required")
    else:
        text = _text(series)
        given = _present(text)
        has_offset = text.str.contains(_OFFSET_RE, regex=True).fillna(False).to_numpy(dtype=bool)
        if assume_tz is None:
            ts = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
            errors.add(
                given & ~has_offset & ts.notna().to_numpy(),
                field,
                "has no time zone offset (e.g. 2024-05-01T12:00:00+02:00)",
            )
        else:
            ts = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
            if has_offset.any():
                ts[has_offset] = pd.to_datetime(text[has_offset], format="ISO8601", utc=True, errors="coerce")
            naive = given & ~has_offset
            if naive.any():
                local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
                ts[naive] = local.dt.tz_localize(assume_tz, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert(
                    "UTC"
                )
        unparsed = given & ts.isna().to_numpy()
        if unparsed.any():
            # Years pandas cannot hold (past 2262) would otherwise read as "not a valid" date.
            year = pd.to_numeric(text.str.extract(r"^([+-]?\d{4,})-", expand=False), errors="coerce").to_numpy(
                dtype=float
            )
            errors.add(unparsed & (year > 2261), field, f"is in the future (after {limit:%Y-%m-%dT%H:%M:%SZ})")
            errors.add(unparsed & (year < 1990), field, "is before 1990")
            errors.add(unparsed, field, "not a valid ISO 8601 date and time")
        if required:
            errors.add(~given, field, "is required")
    ts = ts.astype("datetime64[ns, UTC]")
    valid = ts.notna().to_numpy()
    errors.add(
        valid & (ts > limit).fillna(False).to_numpy(dtype=bool),
        field,
        f"is in the future (after {limit:%Y-%m-%dT%H:%M:%SZ})",
    )
    errors.add(valid & (ts < EARLIEST).fillna(False).to_numpy(dtype=bool), field, "is before 1990")
    return ts


_TYPE_NAMES = {dict: "a JSON object", list: "a JSON array", bool: "a boolean"}


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reject_unstorable(df: pd.DataFrame, errors: _Errors, text_columns: frozenset[str]) -> None:
    """Values no column can hold make their row bad, with the reason.

    A text field given an object, an array or a boolean (JSON lets a client send anything) would
    otherwise be stored as its Python repr; NUL characters and lone surrogates cannot be stored at
    all (PostgreSQL text and JSON refuse NUL, no UTF-8 encoder takes a surrogate).
    """
    for col in df.columns:
        series = df[col]
        if col in text_columns and pd.api.types.is_bool_dtype(series):  # every row gave true or false
            errors.add(series.notna().to_numpy(dtype=bool), col, "expected text, got a boolean")
        if series.dtype != object:
            continue
        if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
            # The common case (every file import): only text. One pass in C finds whether any
            # value holds a NUL or a lone surrogate; the per-row search runs only if one does.
            is_str = series.notna().to_numpy(dtype=bool)
            is_json = np.zeros(len(series), dtype=bool)
        else:
            kinds = series.map(type)
            if col in text_columns:
                for kind, name in _TYPE_NAMES.items():
                    errors.add((kinds == kind).to_numpy(dtype=bool), col, f"expected text, got {name}")
            is_str = (kinds == str).to_numpy(dtype=bool)  # noqa: E721 (elementwise, on a Series of types)
            is_json = kinds.isin([dict, list]).to_numpy(dtype=bool)
        if is_str.any():
            strings = series[is_str].astype(str)
            joined = "".join(strings.tolist())
            for pattern, regex, reason, present in (
                ("\x00", False, NUL_REASON, "\x00" in joined),
                (_SURROGATE_RE, True, SURROGATE_REASON, not _encodable(joined)),
            ):
                if not present:
                    continue
                mask = np.zeros(len(series), dtype=bool)
                mask[is_str] = strings.str.contains(pattern, regex=regex).to_numpy(dtype=bool)
                errors.add(mask, col, reason)
        if is_json.any():
            # Readers share one object between the rows that carry the same value (an invoice's lines):
            # each distinct object is checked once.
            problems = pd.Series(None, index=series.index, dtype=object)
            problems[is_json] = per_object(series.to_numpy(dtype=object)[is_json], _json_problem)
            errors.add(problems.notna().to_numpy(dtype=bool), col, problems.fillna(""))


def _ensure_columns(
    df: pd.DataFrame, columns: list[str], errors: _Errors, text_columns: frozenset[str] = frozenset()
) -> pd.DataFrame:
    _reject_unstorable(df, errors, text_columns)
    unknown = [c for c in df.columns if c not in columns]
    if unknown and len(df):
        for col in unknown:
            errors.add(df[col].notna().to_numpy(), col, f"unknown field (expected one of: {', '.join(columns)})")
    for col in columns:
        if col not in df.columns:
            df[col] = None
    return df


def validate_events(
    df: pd.DataFrame, *, now: datetime, max_future: timedelta, assume_tz: str | None = None
) -> tuple[pd.DataFrame, list[RowError]]:
    """Validate an events frame (canonical columns). Returns the valid rows, normalised, and the errors."""
    df = df.copy()
    errors = _Errors(df.index)
    if "_invalid" in df.columns:
        # A reader's own verdict on a row (e.g. bytes that are not UTF-8) comes first.
        reasons = df.pop("_invalid")
        errors.add(reasons.notna().to_numpy(), "(row)", reasons.astype("string").fillna(""))
    df = _ensure_columns(df, EVENT_COLUMNS, errors, EVENT_TEXT_COLUMNS)

    external_id = _ids(df["external_id"], errors, "external_id", required=False)
    customer = _ids(df["customer"], errors, "customer", required=True)

    etype = _text(df["type"]).str.lower()
    errors.add(~_present(etype), "type", "is required")
    unknown_type = _present(etype) & ~etype.isin(EVENT_TYPES).fillna(False).to_numpy(dtype=bool)
    errors.add(unknown_type, "type", "unknown event type (expected one of: " + ", ".join(sorted(EVENT_TYPES)) + ")")

    item = _ids(df["item"], errors, "item", required=False)
    needs_item = ~etype.isin(TYPES_WITHOUT_ITEM).fillna(False).to_numpy(dtype=bool)
    errors.add(needs_item & ~_present(item), "item", "is required for this event type")

    kind = _text(df["item_kind"]).str.lower().fillna(ItemKind.PRODUCT.value)
    errors.add(
        ~kind.isin(ITEM_KINDS).to_numpy(dtype=bool),
        "item_kind",
        "unknown item kind (expected one of: " + ", ".join(sorted(ITEM_KINDS)) + ")",
    )

    value = _numbers(df["value"], errors, "value")
    is_rating = (etype == EventType.RATING.value).fillna(False).to_numpy(dtype=bool)
    errors.add(is_rating & value.isna().to_numpy(), "value", "a rating needs a value")
    out_of_scale = is_rating & ((value < RATING_MIN) | (value > RATING_MAX)).fillna(False).to_numpy(dtype=bool)
    errors.add(out_of_scale, "value", f"a rating must be between {RATING_MIN:g} and {RATING_MAX:g}")
    is_qty = etype.isin(QUANTITY_TYPES).fillna(False).to_numpy(dtype=bool)
    errors.add(is_qty & (value <= 0).fillna(False).to_numpy(dtype=bool), "value", "a quantity must be positive")
    # A purchase, cart or return without a quantity counts one unit.
    value = value.mask(is_qty & value.isna().to_numpy(), 1.0)

    amount = _numbers(df["amount"], errors, "amount")
    errors.add(
        (amount < 0).fillna(False).to_numpy(dtype=bool), "amount", "must not be negative (a refund is a 'return' event)"
    )
    amount = amount.round(2)  # the check below is on what would be stored
    errors.add(
        (amount.abs() >= MAX_AMOUNT).fillna(False).to_numpy(dtype=bool),
        "amount",
        f"is too large (at most {MAX_AMOUNT - 0.01:.2f})",
    )

    occurred_at = parse_timestamps(
        df["occurred_at"], errors, "occurred_at", now=now, max_future=max_future, assume_tz=assume_tz
    )
    context = _contexts(df["context"], errors)

    out = pd.DataFrame(
        {
            "external_id": external_id,
            "customer": customer,
            "item_kind": kind.where(pd.Series(needs_item, index=df.index) | item.notna(), None),
            "item": item,
            "type": etype,
            "value": value,
            "amount": amount,
            "occurred_at": occurred_at,
            "context": context,
        },
        index=df.index,
    )
    return out[~errors.bad], errors.rows()


@functools.cache
def _time_zones() -> frozenset[str]:
    """The IANA zone names (reading them walks the zone files: once per process)."""
    return frozenset(zoneinfo.available_timezones())


def _booleans(series: pd.Series, errors: _Errors, field: str) -> pd.Series:
    """True/False, 1/0, yes/no, or missing (<NA>)."""
    mapping = {"true": True, "1": True, "yes": True, "y": True, "false": False, "0": False, "no": False, "n": False}

    def parse(v):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)) and v in (0, 1):
            return bool(v)
        if isinstance(v, str):
            if v.strip() == "":
                return None
            return mapping.get(v.strip().lower(), _Bad("expected true or false"))
        return _Bad("expected true or false")

    parsed = series.map(parse)
    bad = parsed.map(lambda v: isinstance(v, _Bad)).to_numpy(dtype=bool)
    errors.add(bad, field, "expected true or false")
    return parsed.where(~bad, None).astype("boolean")


def _dicts(series: pd.Series, errors: _Errors, field: str) -> pd.Series:
    return _contexts(series, errors, field)


def validate_customers(df: pd.DataFrame, *, now: datetime) -> tuple[pd.DataFrame, list[RowError]]:
    """Validate a customers frame. Missing optional fields stay <NA> (an upsert keeps what is stored)."""
    df = df.copy()
    errors = _Errors(df.index)
    df = _ensure_columns(df, CUSTOMER_COLUMNS, errors, CUSTOMER_TEXT_COLUMNS)
    external_id = _ids(df["external_id"], errors, "external_id", required=True)
    name = _text(df["name"])
    errors.add(name.str.len().fillna(0).to_numpy() > 200, "name", "longer than 200 characters")
    email = _text(df["email"])
    bad_email = _present(email) & ~email.str.match(_EMAIL_RE).fillna(False).to_numpy(dtype=bool)
    errors.add(bad_email, "email", "not a valid email address")
    errors.add(
        email.str.len().fillna(0).to_numpy() > MAX_EMAIL_LENGTH, "email", f"longer than {MAX_EMAIL_LENGTH} characters"
    )
    tz = _text(df["time_zone"])
    zones = _time_zones()
    errors.add(
        _present(tz) & ~tz.isin(zones).fillna(False).to_numpy(dtype=bool),
        "time_zone",
        "unknown time zone (use an IANA name such as Europe/Paris)",
    )
    consents = {c: _booleans(df[c], errors, c) for c in CONSENT_FIELDS.values()}
    given_attrs = df["attributes"].notna()
    attributes = _dicts(df["attributes"], errors, "attributes").where(given_attrs, None)
    created_at = parse_timestamps(
        df["created_at"], errors, "created_at", now=now, max_future=timedelta(days=1), required=False
    )
    dup = external_id.duplicated(keep="last").to_numpy() & _present(external_id)
    errors.add(dup, "external_id", "appears again later in the same batch")
    out = pd.DataFrame(
        {
            "external_id": external_id,
            "name": name,
            "email": email,
            "time_zone": tz,
            **consents,
            "attributes": attributes,
            "created_at": created_at,
        },
        index=df.index,
    )
    return out[~errors.bad], errors.rows()


def validate_items(df: pd.DataFrame, *, now: datetime) -> tuple[pd.DataFrame, list[RowError]]:
    """Validate an items frame, keyed by (kind, external_id)."""
    df = df.copy()
    errors = _Errors(df.index)
    df = _ensure_columns(df, ITEM_COLUMNS, errors, ITEM_TEXT_COLUMNS)
    kind = _text(df["kind"]).str.lower().fillna(ItemKind.PRODUCT.value)
    errors.add(
        ~kind.isin(ITEM_KINDS).to_numpy(dtype=bool),
        "kind",
        "unknown item kind (expected one of: " + ", ".join(sorted(ITEM_KINDS)) + ")",
    )
    external_id = _ids(df["external_id"], errors, "external_id", required=True)
    title = _text(df["title"])
    errors.add(title.str.len().fillna(0).to_numpy() > 300, "title", "longer than 300 characters")
    category = _text(df["category"])
    errors.add(category.str.len().fillna(0).to_numpy() > 120, "category", "longer than 120 characters")
    price = _numbers(df["price"], errors, "price")
    errors.add((price < 0).fillna(False).to_numpy(dtype=bool), "price", "must not be negative")
    price = price.round(2)
    errors.add(
        (price >= MAX_PRICE).fillna(False).to_numpy(dtype=bool),
        "price",
        f"is too large (at most {MAX_PRICE - 0.01:.2f})",
    )
    given_attrs = df["attributes"].notna()
    attributes = _dicts(df["attributes"], errors, "attributes").where(given_attrs, None)
    active = _booleans(df["active"], errors, "active")
    created_at = parse_timestamps(
        df["created_at"], errors, "created_at", now=now, max_future=timedelta(days=1), required=False
    )
    key = kind + "\x00" + external_id.fillna("")
    errors.add(
        key.duplicated(keep="last").to_numpy() & _present(external_id),
        "external_id",
        "appears again later in the same batch",
    )
    out = pd.DataFrame(
        {
            "kind": kind,
            "external_id": external_id,
            "title": title,
            "category": category,
            "price": price.round(2),
            "attributes": attributes,
            "active": active,
            "created_at": created_at,
        },
        index=df.index,
    )
    return out[~errors.bad], errors.rows()


def records_frame(records: list, *, start: int = 0) -> tuple[pd.DataFrame, list[RowError]]:
    """A JSON array of objects as a frame indexed by position; a non-object element is an error."""
    errors = [
        RowError(start + i, "(row)", "expected a JSON object") for i, r in enumerate(records) if not isinstance(r, dict)
    ]
    bad = {e.row - start for e in errors}
    rows = [r if isinstance(r, dict) else {} for r in records]
    try:
        df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    except OverflowError:
        # an integer beyond float range beside floats in one column (JSON allows any): keep every
        # column as objects and let the field checks name the row (the numbers check converts it)
        df = pd.DataFrame(rows, dtype=object)
    df.index = pd.RangeIndex(start, start + len(rows))
    if bad:
        df = df.drop(index=[start + i for i in bad])
    return df, errors


# --- small clean batches without pandas ---------------------------------------------------------
#
# pandas costs tens of microseconds per operation whatever the size, and validating a frame takes
# a few hundred operations: some 20 ms for a REST batch of 100 rows. `plain_event_rows` checks a
# batch of JSON objects in plain Python instead, but only says yes: it accepts a batch when every
# value is of a plain, unambiguous form that `validate_events` accepts too and normalises the same
# way (text as text, numbers as JSON numbers or short decimals, contexts as objects, timestamps as ISO 8601 with an
# offset, nothing near a limit), and returns None for anything else (an error anywhere, a number
# as text, a timestamp in another form...). The caller then validates the batch with
# `validate_events`, so every error message, and every reading of an unusual value, comes from one
# place. tests/profiles/test_plain_events.py checks both agree on the fuzz corpus.

_PLAIN_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-](?:0\d|1[0-4]):[0-5]\d)")
_PLAIN_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_DECIMAL_RE = re.compile(r"-?\d+(?:\.\d+)?")
_PLAIN_FIELDS = frozenset(EVENT_COLUMNS)
_PLAIN_MAX_INT = 2**53  # every integer up to this is exactly a float
_EARLIEST_PLAIN = EARLIEST.to_pydatetime()


class _Decline(Exception):
    """The plain path does not take this batch: the frame path decides."""


def _plain_text(value, *, required: bool = False, check_id: bool = True) -> str | None:
    """A text field as `_text` reads it (stripped, '' as missing); declines anything but plain text."""
    if value is None:
        if required:
            raise _Decline
        return None
    if type(value) is not str or "\x00" in value or not _encodable(value):
        raise _Decline
    text = value.strip()
    if not text:
        if required:
            raise _Decline
        return None
    if check_id and (len(text) > MAX_ID_LENGTH or _PLAIN_CONTROL_RE.search(text)):
        raise _Decline
    return text


def _plain_number(value) -> float:
    """A JSON number (not a boolean, finite, exactly a float) as a float; NaN when missing."""
    if value is None:
        return math.nan
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Decline
        return value
    if kind is int and -_PLAIN_MAX_INT <= value <= _PLAIN_MAX_INT:
        return float(value)
    if kind is str and "\x00" not in value and _encodable(value):
        if not value.strip():
            return math.nan
        # a decimal of at most 15 digits, which pandas' parser reads exactly as Python does
        if _PLAIN_DECIMAL_RE.fullmatch(value) and len(value) - value.count("-") - value.count(".") <= 15:
            return float(value)
    raise _Decline


def _plain_time(value, limit: datetime) -> datetime:
    text = _plain_text(value, required=True, check_id=False)
    if not _PLAIN_TIME_RE.fullmatch(text):
        raise _Decline
    try:
        ts = datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise _Decline from None
    if ts > limit or ts < _EARLIEST_PLAIN:
        raise _Decline
    return ts


def _plain_context(value) -> dict:
    if value is None or value == "":
        return {}
    if type(value) is not dict or _json_problem(value) is not None:
        raise _Decline
    return value


def plain_event_rows(records: list, *, now: datetime, max_future: timedelta) -> list[tuple] | None:
    """The rows of a clean batch of event objects, validated and normalised as `validate_events`
    would: (external_id, customer, item_kind, item, type, value, amount, occurred_at, context),
    value and amount as floats or None, occurred_at a UTC datetime; or None when the batch is not
    plainly valid (see above: `validate_events` then decides)."""
    if not records:
        return None
    limit = now.astimezone(UTC) + max_future
    rows = []
    try:
        for record in records:
            if type(record) is not dict or not record.keys() <= _PLAIN_FIELDS:
                raise _Decline
            get = record.get
            etype = _plain_text(get("type"), required=True, check_id=False).lower()
            if etype not in EVENT_TYPES:
                raise _Decline
            item = _plain_text(get("item"))
            needs_item = etype not in TYPES_WITHOUT_ITEM
            if needs_item and item is None:
                raise _Decline
            kind = _plain_text(get("item_kind"), check_id=False)
            kind = ItemKind.PRODUCT.value if kind is None else kind.lower()
            if kind not in ITEM_KINDS:
                raise _Decline
            value = _plain_number(get("value"))
            if etype == EventType.RATING.value and not RATING_MIN <= value <= RATING_MAX:  # NaN fails too
                raise _Decline
            if etype in QUANTITY_TYPES:
                if value <= 0:
                    raise _Decline
                if math.isnan(value):
                    value = 1.0  # a purchase, cart or return without a quantity counts one unit
            amount = _plain_number(get("amount"))
            if amount < 0:
                raise _Decline
            rows.append(
                [
                    _plain_text(get("external_id")),
                    _plain_text(get("customer"), required=True),
                    kind if needs_item or item is not None else None,
                    item,
                    etype,
                    value,
                    amount,
                    _plain_time(get("occurred_at"), limit),
                    _plain_context(get("context")),
                ]
            )
    except _Decline:
        return None
    # amounts rounded as pandas rounds them (numpy's round, not Python's), and checked as stored
    amounts = np.round(np.array([r[6] for r in rows], dtype=np.float64), 2)
    if (np.abs(amounts) >= MAX_AMOUNT).any():
        return None
    for row, value, amount in zip(rows, [r[5] for r in rows], amounts.tolist(), strict=True):
        row[5] = None if math.isnan(value) else value
        row[6] = None if math.isnan(amount) else amount
    return [tuple(r) for r in rows]
