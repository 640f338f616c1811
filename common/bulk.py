"""
Set-based reads and writes between the database and pandas, for the recomputation steps.

PostgreSQL gets COPY both ways (several times faster than row-by-row cursors and multi-row
INSERTs); other databases (SQLite for the demo) get the portable equivalents. Callers hand over a
queryset or a DataFrame and never loop over rows themselves.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

import numpy as np
import orjson
import pandas as pd
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models.expressions import RawSQL

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_text(value) -> str:
    """Compact JSON text of a value, for a JSON column in a COPY: orjson (several times faster than
    the json module on the millions of values a full profiles run writes), and the json module for
    what orjson refuses (integers beyond 64 bits, a string with a lone surrogate), so the result is
    the same JSON either way. Not-a-number and infinities become null (JSON has neither)."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def id_subquery(ids) -> RawSQL:
    """A set of ids as a subquery for `<field>__in=`: one parameter whatever the count (an array on
    PostgreSQL, a JSON list elsewhere), so thousands of ids neither meet the limit on parameters
    nor make a statement of thousands of placeholders."""
    values = [int(v) for v in ids]
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", [values])
    return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(values)])


def read_frame(queryset: models.QuerySet, columns: list[str], *, parse_dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """Evaluate `queryset.values_list(*columns)` into a DataFrame with those column names.

    Columns are typed from the model fields (an annotation's `output_field`), the same on every
    database: booleans as bool, integers as int64, floats and decimals as float64 (an integer
    column holding a NULL or a fraction comes back as float64, with NaN for NULL; a boolean one
    holding a NULL as pandas' "boolean" with NA). Text columns come back as the stored text (never
    parsed as numbers), with NULL as NaN, on every path; see `_copy_out_sql` for how PostgreSQL's
    CSV output keeps "" and NULL apart.
    Times stay as the database gives them, unless named in `parse_dates` (then UTC datetimes).
    """
    qs = queryset.values_list(*columns)
    kinds = _column_kinds(qs)
    if connection.vendor != "postgresql":
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(sql, params)
            frame = pd.DataFrame.from_records(cur.fetchall(), columns=columns)
    else:
        sql, params, prefixed, text = _copy_out_sql(qs)
        options = {
            "header": None,
            "names": columns,
            "keep_default_na": False,
            "low_memory": False,
            # NULL is the only empty field: text that can be empty is prefixed, text that cannot be
            # NULL keeps "" as "" (CSV cannot tell a quoted "" from an unquoted one to pandas)
            "na_values": {c: [""] for i, c in enumerate(columns) if i in prefixed or i not in text},
            "dtype": {columns[i]: object for i in text},
        }
        # psql reads in a session of its own: inside a transaction it would not see this one's writes.
        if not connection.in_atomic_block and _psql_available():
            frame = _read_with_psql(sql, params, columns, options)
        else:
            buf = io.BytesIO()
            with connection.cursor() as cur:
                with cur.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                    for block in copy:
                        buf.write(block)
            buf.seek(0)
            frame = pd.read_csv(buf, **options) if buf.getbuffer().nbytes else pd.DataFrame(columns=columns)
        for i in prefixed:
            values = frame[columns[i]].to_numpy(dtype=object)  # a copy
            present = pd.notna(values)
            values[present] = pd.Series(values[present], dtype=object).str[1:].to_numpy(dtype=object)
            frame[columns[i]] = values
    for col, kind in zip(columns, kinds, strict=False):
        if kind is not None:
            frame[col] = _TYPED[kind](frame[col])
    for col in parse_dates:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def _column_kinds(qs: models.QuerySet) -> list[str | None]:
    """ "bool", "int", "float" or None (left as read) for each selected column, from its field."""
    compiler = qs.query.get_compiler(using=qs.db)
    compiler.setup_query()
    kinds: list[str | None] = []
    for expr, _, _ in compiler.select:
        try:
            field = expr.output_field
        except Exception:  # an expression of mixed types: left as read
            kinds.append(None)
            continue
        while field.is_relation and getattr(field, "target_field", None) not in (None, field):
            field = field.target_field  # a foreign key's column holds the key it points to
        if isinstance(field, models.BooleanField):
            kinds.append("bool")
        elif isinstance(field, models.IntegerField):
            kinds.append("int")
        elif isinstance(field, (models.FloatField, models.DecimalField)):
            kinds.append("float")
        else:
            kinds.append(None)
    return kinds


def _bool_column(values: pd.Series) -> pd.Series:
    # SQLite gives True/False (0/1 for an expression); PostgreSQL's CSV gives t/f.
    if pd.api.types.is_bool_dtype(values) and not isinstance(values.dtype, pd.BooleanDtype):
        return values
    present = values.notna()
    truth = values.astype(str).str.lower().isin(["1", "1.0", "t", "true"])
    return truth if present.all() else truth.astype("boolean").where(present, pd.NA)


def _int_column(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values)
    if pd.api.types.is_integer_dtype(numbers):
        return numbers.astype(np.int64, copy=False)
    # NULLs, or fractions from an expression declared an integer (PostgreSQL's EXTRACT(epoch ...))
    whole = numbers.notna().all() and (numbers % 1 == 0).all()
    return numbers.astype(np.int64 if whole else np.float64, copy=False)


def _float_column(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values).astype(np.float64, copy=False)


_TYPED = {"bool": _bool_column, "int": _int_column, "float": _float_column}


def _copy_out_sql(qs: models.QuerySet) -> tuple[str, list, set[int], set[int]]:
    """The query for `COPY (...) TO STDOUT WITH (FORMAT csv)`, which text columns it prefixes, and
    which columns are text.

    CSV output writes NULL as an empty field and "" as a quoted empty field, but pandas' parser reads
    both as empty. So a text column that may be NULL is selected as '.' || value: a value is never
    empty, NULL stays NULL (empty), and the reader drops the first character again. Plain columns of
    the main table that cannot be NULL (an event's type) are left as they are, which keeps the
    largest reads as cheap as before.
    """
    from django.db.models.expressions import Col
    from django.db.models.sql.constants import LOUTER

    compiler = qs.query.get_compiler(using=qs.db)
    sql, params = compiler.as_sql()
    text: set[int] = set()
    prefixed: set[int] = set()
    for i, (expr, _, _) in enumerate(compiler.select):
        try:
            field = expr.output_field
        except Exception:  # an expression of mixed types: not text
            continue
        if not isinstance(field, (models.CharField, models.TextField)):
            continue
        text.add(i)
        joined = qs.query.alias_map.get(getattr(expr, "alias", None))
        if not (isinstance(expr, Col) and not expr.target.null and getattr(joined, "join_type", None) != LOUTER):
            prefixed.add(i)
    if prefixed:
        names = [f"c{i}" for i in range(len(compiler.select))]
        outer = ", ".join(f"'.' || {n}" if i in prefixed else n for i, n in enumerate(names))
        sql = f"SELECT {outer} FROM ({sql}) AS _rows ({', '.join(names)})"
    return sql, list(params), prefixed, text


def _psql_available() -> bool:
    return settings.BULK_READ_WITH_PSQL and shutil.which("psql") is not None


def _read_with_psql(sql: str, params, columns: list[str], options: dict) -> pd.DataFrame:
    """Stream `COPY (sql) TO STDOUT` through PostgreSQL's own client into pandas' CSV parser.

    libpq hands COPY output over one row at a time; read from Python that costs several
    microseconds a row (minutes for tens of millions of events). psql does the same loop in C
    and pandas parses the stream in C. Parameters are bound client-side by psycopg's own quoting.
    The read runs in its own session, so it is used only outside a transaction (the steps read
    committed data between their own transactions).
    """
    from psycopg import ClientCursor

    with connection.cursor() as cur:
        literal_sql = ClientCursor(cur.connection).mogrify(sql, params)
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or "", "PGCONNECT_TIMEOUT": "10"}
    cmd = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        db.get("HOST") or "localhost",
        "-p",
        str(db.get("PORT") or 5432),
        "-U",
        db.get("USER") or "postgres",
        "-d",
        db["NAME"],
        "-c",
        f"COPY ({literal_sql}) TO STDOUT WITH (FORMAT csv)",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        frame = pd.read_csv(proc.stdout, **options)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=columns)
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise RuntimeError(f"psql COPY failed: {err.strip()}")
    return frame


def copy_values(series: pd.Series, *, as_json: bool = False) -> np.ndarray:
    """A column as the Python values psycopg's `Copy.write_row` takes: None for a missing value,
    compact JSON text for a JSON column, ISO 8601 text for a time (vectorised, and exact to the
    microsecond), plain Python numbers, booleans and strings for the rest."""
    if as_json:
        return np.array([json_text(v) for v in series], dtype=object)
    if pd.api.types.is_datetime64_any_dtype(series):
        values = (series.dt.tz_convert("UTC") if series.dt.tz is not None else series).to_numpy(dtype="datetime64[us]")
        text = np.datetime_as_string(values, unit="us", timezone="UTC").astype(object)
        text[pd.isna(values)] = None
        return text
    return series.to_numpy(dtype=object, na_value=None)


COPY_SLICE_ROWS = 100_000


def copy_rows(table: str, rows: Iterable[tuple], *, columns: Sequence[str] | None = None) -> None:
    """One COPY (text format) into `table` of these value tuples (see `copy_values`), in `columns`'
    order or the table's, each encoded by psycopg's `write_row`.

    psycopg escapes every value for the COPY text format (backslash, tab, newline and carriage
    return) and writes None as the NULL marker `\\N`, so no text, whatever it holds, can be read
    as NULL, as a column or row boundary, or as the end of the data.
    """
    cols = " ({})".format(", ".join(f'"{c}"' for c in columns)) if columns else ""
    with connection.cursor() as cur, cur.cursor.copy(f"COPY {table}{cols} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _copy_in(table: str, frame: pd.DataFrame, json_columns: tuple[str, ...]) -> None:
    """One COPY of a frame's rows (`copy_rows`), their values made slice by slice."""

    def rows():
        for start in range(0, len(frame), COPY_SLICE_ROWS):
            part = frame.iloc[start : start + COPY_SLICE_ROWS]
            yield from zip(*(copy_values(part[c], as_json=c in json_columns) for c in part.columns), strict=False)

    copy_rows(table, rows(), columns=list(frame.columns))


def _records(frame: pd.DataFrame) -> list[dict]:
    clean = frame.astype(object).where(frame.notna(), None)
    rows = clean.to_dict("records")
    return rows


def bulk_insert(
    model: type[models.Model], frame: pd.DataFrame, *, json_columns: tuple[str, ...] = (), batch_size: int = 5000
) -> int:
    """Insert every row of `frame` (columns are the model's column names, e.g. `customer_id`)."""
    if frame.empty:
        return 0
    if connection.vendor == "postgresql":
        _copy_in(model._meta.db_table, frame, json_columns)
    else:
        model.objects.bulk_create([model(**row) for row in _records(frame)], batch_size=batch_size)
    return len(frame)


def bulk_upsert(
    model: type[models.Model],
    frame: pd.DataFrame,
    *,
    key: list[str],
    json_columns: tuple[str, ...] = (),
    batch_size: int = 5000,
) -> int:
    """Insert rows, or update every other column of the row with the same `key`."""
    if frame.empty:
        return 0
    update = [c for c in frame.columns if c not in key]
    if connection.vendor == "postgresql":
        table = model._meta.db_table
        temp = f"_upsert_{table}"
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in update)
        keys = ", ".join(f'"{c}"' for c in key)
        # The temporary table lives only inside this transaction (ON COMMIT DROP).
        with transaction.atomic():
            with connection.cursor() as cur:
                # Only the frame's columns, with their types and no constraints (ids come from the table).
                cur.execute(f"DROP TABLE IF EXISTS {temp}")
                cur.execute(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA")
            _copy_in(temp, frame, json_columns)
            with connection.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT ({keys}) DO UPDATE SET {sets}"
                )
                cur.execute(f"DROP TABLE {temp}")
    else:
        field_of = {f.column: f.name for f in model._meta.concrete_fields}
        objs = [model(**row) for row in _records(frame)]
        model.objects.bulk_create(
            objs,
            batch_size=batch_size,
            update_conflicts=True,
            unique_fields=[field_of[k] for k in key],
            update_fields=[field_of[c] for c in update],
        )
    return len(frame)
