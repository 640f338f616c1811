"""
Importing a file of events (`manage.py import_events`): the format's reader (`profiles.importers`)
yields chunks of canonical rows, and each chunk goes the event write path (`services.events`) in
its own transaction.

Reading and validating a chunk (CPU) overlaps with writing the previous one (database): a writer
thread with its own connection stores chunk n while this thread reads chunk n + 1. On PostgreSQL,
which takes writers side by side, this thread also prepares the next chunk (its new customers and
items committed); SQLite takes one writer at a time, so there the writer thread prepares and
stores each chunk. Inside a caller's transaction (tests, a wrapping atomic block) a second
connection could not see its rows, so all the work stays in the caller's thread.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from ..importers import READERS, ImportChunk, ImportFormatError
from ..validation import RowError
from .catalogue import IngestRefused, _customer_ids, _item_ids, customers_upsert, items_upsert
from .events import IngestResult, PreparedEvents, events_prepare, events_validate, events_write


@dataclass
class ImportReport(IngestResult):
    skipped: int = 0  # rows the format leaves out on purpose (e.g. retail lines without a customer)
    chunks: int = 0
    stopped: bool = False  # the import stopped at a chunk with a bad row (that chunk was not written)
    rejects_written: int = 0

    def as_dict(self) -> dict:
        return {
            **super().as_dict(),
            "skipped": self.skipped,
            "chunks": self.chunks,
            "stopped": self.stopped,
            "rejects_written": self.rejects_written,
        }


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
    if fmt not in READERS:
        raise ImportFormatError(f"unknown format {fmt!r} (expected one of: {', '.join(READERS)})")
    path = Path(path)
    if not path.exists():
        raise ImportFormatError(f"{path}: no such file or folder")
    chunk_size = chunk_size or settings.INGEST_CHUNK_SIZE
    if rejects_path is not None:
        Path(rejects_path).unlink(missing_ok=True)
    run = _FileImport(
        skip_invalid=skip_invalid, rejects_path=rejects_path, create_unknown=create_unknown, assume_tz=assume_tz
    )
    try:
        for chunk in READERS[fmt](path, chunk_size=chunk_size, progress=progress):
            if not run.take(chunk):
                break
        run.collect_pending()
    finally:
        run.close()
    return run.report


class _FileImport:
    """One file import under way: its report, and the chunk the writer thread is storing."""

    def __init__(self, *, skip_invalid: bool, rejects_path, create_unknown: bool | None, assume_tz: str | None):
        self.skip_invalid = skip_invalid
        self.rejects_path = rejects_path
        self.rejects_header = True
        self.create_unknown = create_unknown
        self.assume_tz = assume_tz
        self.report = ImportReport()
        self.pipelined = not connection.in_atomic_block  # a writer thread (see the module docstring)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") if self.pipelined else None
        self.ahead = connection.vendor == "postgresql"  # the next chunk is prepared here, beside the writer
        self.pending: Future | None = None
        self.pending_chunk: ImportChunk | None = None
        # A first import of a file meets no stored event: skip the look-up of stored ids until a chunk
        # reports a duplicate (a second import, overlapping exports), then look them up first.
        self.duplicates_seen = False

    def take(self, chunk: ImportChunk) -> bool:
        """Validate a chunk, prepare it, collect the previous one and hand this one to the writer;
        False when the import must stop (a bad row without `skip_invalid`, here or in the previous chunk)."""
        self.report.chunks += 1
        now = timezone.now()
        valid, errors = events_validate(rows=chunk.events, assume_tz=self.assume_tz or chunk.assume_tz, now=now)
        prepared = refused = None
        if errors and not self.skip_invalid:
            refused = errors
        elif self.ahead or not self.pipelined:
            try:
                prepared = self.prepare(chunk, valid, errors, now)
            except IngestRefused as exc:
                refused = exc.errors
        if not self.collect_pending():
            return False
        if refused is not None:
            self.refuse(refused, chunk)
            return False
        if self.pipelined:
            job = (
                (lambda p=prepared: self.write(p))
                if prepared is not None
                else (lambda c=chunk, v=valid, e=errors, n=now: self.write(self.prepare(c, v, e, n)))
            )
            self.pending, self.pending_chunk = self.pool.submit(job), chunk
        else:
            self.collect(self.write(prepared), chunk)
        return True

    def prepare(self, chunk: ImportChunk, valid: pd.DataFrame, errors: list[RowError], now) -> PreparedEvents:
        """The chunk's customers and items, then its events resolved (and, for a first import on
        PostgreSQL, their COPY rows built)."""
        created_customers = created_items = 0
        # A file names the same customers and items chunk after chunk: only those not stored yet are
        # validated and created (a stored one is never updated by an import, and the upserts' other
        # figures are not reported).
        customers, items = _not_stored(chunk.customers, chunk.items)
        if customers is not None and len(customers):
            created_customers = customers_upsert(
                rows=customers,
                now=now,
                update_existing=False,
                all_or_nothing=False,
                source="import",
                recreate_forgotten=False,
            ).created
        if items is not None and len(items):
            created_items = items_upsert(rows=items, now=now, update_existing=False, all_or_nothing=False).created
        prepared = events_prepare(
            valid=valid,
            errors=errors,
            received=len(chunk.events),
            create_unknown=self.create_unknown,
            all_or_nothing=not self.skip_invalid,
            now=now,
            expect_new=not self.duplicates_seen,
        )
        prepared.result.customers_created += created_customers
        prepared.result.items_created += created_items
        return prepared

    def write(self, prepared: PreparedEvents) -> IngestResult:
        try:
            result = events_write(prepared)
            if result.duplicates:
                self.duplicates_seen = True
            return result
        finally:
            if self.pipelined:
                connections.close_all()  # the writer thread's own connection

    def collect_pending(self) -> bool:
        """Wait for the chunk the writer is storing, if any, and merge it; False when the import must stop."""
        if self.pending is None:
            return True
        pending, self.pending = self.pending, None
        return self.collect(pending, self.pending_chunk)

    def collect(self, future_or_result: Future | IngestResult, chunk: ImportChunk) -> bool:
        """Merge a stored chunk into the report; False when the import must stop."""
        try:
            result = future_or_result.result() if isinstance(future_or_result, Future) else future_or_result
        except IngestRefused as exc:
            self.refuse(exc.errors, chunk)
            return False
        self.report.skipped += chunk.skipped
        self.report.merge(result)
        if result.errors and self.rejects_path is not None:
            self.report.rejects_written += _write_rejects(
                self.rejects_path, chunk.raw, result.errors, self.rejects_header
            )
            self.rejects_header = False
        return True

    def refuse(self, errors: list[RowError], chunk: ImportChunk) -> None:
        # The chunk's transaction rolled back (or never started): nothing of it is written.
        self.report.errors.extend(errors)
        self.report.invalid += len({e.row for e in errors})
        self.report.received += len(chunk.events)
        self.report.stopped = True

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _not_stored(
    customers: pd.DataFrame | None, items: pd.DataFrame | None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The chunk's customers and items without those already stored (looked up by their ids as given)."""
    if customers is not None and len(customers) and customers["external_id"].map(type).eq(str).all():
        stored = _customer_ids(customers["external_id"].tolist())
        if stored:
            customers = customers[~customers["external_id"].isin(stored.keys())]
    if items is not None and len(items) and items["external_id"].map(type).eq(str).all():
        if "kind" in items.columns and items["kind"].map(type).eq(str).all():
            stored = _item_ids(items[["kind", "external_id"]].set_axis(["item_kind", "item"], axis=1))
            if stored:
                keys = pd.MultiIndex.from_arrays([items["kind"], items["external_id"]])
                items = items[~keys.isin(list(stored)).astype(bool)]
    return customers, items


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
