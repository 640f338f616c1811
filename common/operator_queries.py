"""
A statement timeout for the queries an operator starts, so one of them cannot hold the database.

Previews, member lists, refreshes started from the admin, campaign reports, audience counts and
the dashboard's reports run inside `operator_query_timeout()`: on PostgreSQL, a transaction (a
savepoint when one is open already) with `SET LOCAL statement_timeout = OPERATOR_QUERY_TIMEOUT_MS`.
A statement that runs longer is cancelled by the server and comes out as `OperatorQueryTimeout`,
which the API answers with 503 (common/api_errors.py) and the admin shows as a message. The
savepoint is rolled back, so the connection and any outer transaction go on; after a block that
succeeds the previous timeout is put back, so nothing after the block runs under it.

SQLite has no statement timeout: there the block is a no-op. Pipeline work (recomputations,
refreshes of every rule segment, sends) never runs under it.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled (by statement_timeout)


class OperatorQueryTimeout(Exception):
    """An operator's query ran longer than OPERATOR_QUERY_TIMEOUT_MS and was cancelled."""

    def __init__(self, ms: int, hint: str = ""):
        self.ms = ms
        self.hint = hint
        super().__init__(
            f"The query took longer than {ms / 1000:g} s (OPERATOR_QUERY_TIMEOUT_MS) and was stopped"
            + (f"; {hint}." if hint else ".")
        )


def _cancelled(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return getattr(cause, "sqlstate", None) == QUERY_CANCELED or getattr(cause, "pgcode", None) == QUERY_CANCELED


@contextmanager
def operator_query_timeout(*, ms: int | None = None, hint: str = "", using: str = DEFAULT_DB_ALIAS):
    """Run the block's queries under a statement timeout of `ms` (default OPERATOR_QUERY_TIMEOUT_MS; 0 = none).

    Raises `OperatorQueryTimeout` when the server cancelled a statement for it. `hint` ends the
    message (e.g. "narrow the rule"). Querysets are lazy: evaluate them inside the block.
    """
    ms = int(settings.OPERATOR_QUERY_TIMEOUT_MS if ms is None else ms)
    connection = connections[using]
    if ms <= 0 or connection.vendor != "postgresql":
        yield
        return
    try:
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                # set_config(..., true) is SET LOCAL: it ends with the transaction or the savepoint's rollback.
                cursor.execute(
                    "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)", [f"{ms}"]
                )
                previous = cursor.fetchone()[0]
            yield
            # Released savepoints keep SET LOCAL until the outer transaction ends: put the old value back.
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except OperationalError as exc:
        if _cancelled(exc):
            raise OperatorQueryTimeout(ms, hint) from exc
        raise


def operator_query(hint: str = ""):
    """Decorate a view method (or any function) so that its queries run under `operator_query_timeout`."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with operator_query_timeout(hint=hint):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
