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

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, models, transaction


def read_frame(queryset: models.QuerySet, columns: list[str], *, parse_dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """Evaluate `queryset.values_list(*columns)` into a DataFrame with those column names."""
    qs = queryset.values_list(*columns)
    sql, params = qs.query.sql_with_params()
    # psql reads in a session of its own: inside a transaction it would not see this one's writes.
    if connection.vendor == "postgresql" and not connection.in_atomic_block and _psql_available():
        frame = _read_with_psql(sql, params, columns)
    elif connection.vendor == "postgresql":
        buf = io.BytesIO()
        with connection.cursor() as cur:
            with cur.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                for block in copy:
                    buf.write(block)
        buf.seek(0)
        if buf.getbuffer().nbytes == 0:
            frame = pd.DataFrame(columns=columns)
        else:
            frame = pd.read_csv(buf, header=None, names=columns, keep_default_na=False, na_values=[""], low_memory=False)
    else:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            frame = pd.DataFrame.from_records(cur.fetchall(), columns=columns)
    for col in parse_dates:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def _psql_available() -> bool:
    return settings.BULK_READ_WITH_PSQL and shutil.which("psql") is not None


def _read_with_psql(sql: str, params, columns: list[str]) -> pd.DataFrame:
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
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", db.get("HOST") or "localhost", "-p", str(db.get("PORT") or 5432),
           "-U", db.get("USER") or "postgres", "-d", db["NAME"], "-c", f"COPY ({literal_sql}) TO STDOUT WITH (FORMAT csv)"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        frame = pd.read_csv(proc.stdout, header=None, names=columns, keep_default_na=False, na_values=[""], low_memory=False)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=columns)
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise RuntimeError(f"psql COPY failed: {err.strip()}")
    return frame


def _csv_value_frame(frame: pd.DataFrame, json_columns: tuple[str, ...]) -> pd.DataFrame:
    out = frame.copy()
    for col in json_columns:
        out[col] = out[col].map(lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            values = out[col].dt.tz_convert("UTC").to_numpy(dtype="datetime64[us]")
            text = np.datetime_as_string(values, unit="us", timezone="UTC").astype(object)
            text[pd.isna(values)] = None
            out[col] = text
        elif pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map({True: "t", False: "f"})
    return out


COPY_SLICE_ROWS = 100_000


def _copy_in(table: str, frame: pd.DataFrame, json_columns: tuple[str, ...]) -> None:
    """One COPY, fed slice by slice, so the CSV text of a million rows never sits in memory at once."""
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    with connection.cursor() as cur:
        with cur.cursor.copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
            for start in range(0, len(frame), COPY_SLICE_ROWS):
                data = _csv_value_frame(frame.iloc[start : start + COPY_SLICE_ROWS], json_columns)
                buf = io.StringIO()
                data.to_csv(buf, index=False, header=False, na_rep="\\N")
                copy.write(buf.getvalue())


def _records(frame: pd.DataFrame) -> list[dict]:
    clean = frame.astype(object).where(frame.notna(), None)
    rows = clean.to_dict("records")
    return rows


def bulk_insert(model: type[models.Model], frame: pd.DataFrame, *, json_columns: tuple[str, ...] = (), batch_size: int = 5000) -> int:
    """Insert every row of `frame` (columns are the model's column names, e.g. `customer_id`)."""
    if frame.empty:
        return 0
    if connection.vendor == "postgresql":
        _copy_in(model._meta.db_table, frame, json_columns)
    else:
        model.objects.bulk_create([model(**row) for row in _records(frame)], batch_size=batch_size)
    return len(frame)


def bulk_upsert(
    model: type[models.Model], frame: pd.DataFrame, *, key: list[str], json_columns: tuple[str, ...] = (), batch_size: int = 5000
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
                cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT ({keys}) DO UPDATE SET {sets}")
                cur.execute(f"DROP TABLE {temp}")
    else:
        field_of = {f.column: f.name for f in model._meta.concrete_fields}
        objs = [model(**row) for row in _records(frame)]
        model.objects.bulk_create(
            objs, batch_size=batch_size, update_conflicts=True,
            unique_fields=[field_of[k] for k in key], update_fields=[field_of[c] for c in update],
        )
    return len(frame)
