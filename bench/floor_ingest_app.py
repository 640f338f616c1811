"""Bench only (issue #19): the floor of `POST /api/events/`, a WSGI app that parses the same JSON
and COPYs the rows into profiles_event, and nothing else: no authentication, throttling,
validation, duplicate check, nor creation of customers or items (it resolves their external ids
from maps it loads once per process, so they must exist: the bench runs it after our endpoint has
stored the same events and the events table has been emptied). It is served by gunicorn from
bench/ only and is in no URLconf. `FLOOR_DATABASE_URL` names the database.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import psycopg

COLUMNS = "external_id, customer_id, item_id, type, value, amount, occurred_at, context, received_at"
_state: dict = {}


def _connection():
    if "conn" not in _state:
        conn = psycopg.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT external_id, id FROM profiles_customer")
            _state["customers"] = dict(cur.fetchall())
            cur.execute("SELECT kind, external_id, id FROM profiles_item")
            _state["items"] = {(k, e): i for k, e, i in cur.fetchall()}
        _state["conn"] = conn
    return _state["conn"]


def store(body: bytes) -> int:
    """Parse a JSON array of events and COPY them; how many rows were written."""
    records = json.loads(body)
    conn = _connection()
    customers, items = _state["customers"], _state["items"]
    now = datetime.now(UTC).isoformat()
    with conn.transaction(), conn.cursor() as cur, cur.copy(f"COPY profiles_event ({COLUMNS}) FROM STDIN") as copy:
        for r in records:
            item = r.get("item")
            copy.write_row(
                (
                    r.get("external_id"),
                    customers[r["customer"]],
                    items[(r.get("item_kind") or "product", item)] if item else None,
                    r["type"],
                    r.get("value"),
                    r.get("amount"),
                    r["occurred_at"],
                    json.dumps(r.get("context") or {}),
                    now,
                )
            )
    return len(records)


def application(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"floor"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = json.dumps({"created": store(body)}).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]
