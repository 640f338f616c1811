"""python manage.py import_events FILE --format generic|online-retail|movielens"""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from profiles import services
from profiles.importers import FORMATS, ImportFormatError

SHOW_ERRORS = 20


class Command(BaseCommand):
    help = (
        "Import behaviour events from a CSV file (gzip accepted) or the MovieLens 100K folder, in chunks, "
        "validating every row. Importing the same file twice creates no duplicates."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="The file (or, for movielens, the ml-100k folder).")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, default="generic")
        parser.add_argument("--chunk-size", type=int, default=None, help="Rows per chunk (default: INGEST_CHUNK_SIZE).")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Write the valid rows and send the bad ones to the reject file, instead of stopping at the first bad "
            "chunk.",
        )
        parser.add_argument(
            "--rejects", default=None, help="Where bad rows go with --skip-invalid (default: FILE.rejects.csv)."
        )
        unknown = parser.add_mutually_exclusive_group()
        unknown.add_argument(
            "--create-unknown",
            dest="create_unknown",
            action="store_true",
            default=None,
            help="Create customers and items the events name but the platform does not know.",
        )
        unknown.add_argument(
            "--reject-unknown",
            dest="create_unknown",
            action="store_false",
            help="Treat events naming unknown customers or items as bad rows.",
        )
        parser.add_argument(
            "--assume-timezone",
            default=None,
            help="IANA zone for timestamps without an offset (otherwise such rows are bad).",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self,
        *args,
        path,
        fmt,
        chunk_size,
        skip_invalid,
        rejects,
        create_unknown,
        assume_tz=None,
        no_progress=False,
        **options,
    ):
        assume_tz = options.get("assume_timezone") or assume_tz
        source = Path(path)
        rejects_path = Path(rejects) if rejects else (Path(f"{source}.rejects.csv") if skip_invalid else None)
        bar = tqdm(
            total=0, unit="B", unit_scale=True, desc=f"import {source.name}", disable=no_progress, file=self.stderr._out
        )
        last = [0]

        def progress(position: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(position - last[0])
            last[0] = position

        started = time.monotonic()
        try:
            report = services.events_import_file(
                path=source,
                fmt=fmt,
                chunk_size=chunk_size,
                skip_invalid=skip_invalid,
                rejects_path=rejects_path,
                create_unknown=create_unknown,
                assume_tz=assume_tz,
                progress=progress,
            )
        except ImportFormatError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        elapsed = time.monotonic() - started
        rate = report.created / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"{report.created} events created, {report.duplicates} duplicates skipped, {report.invalid} invalid, "
            f"{report.skipped} left out by the format; {report.customers_created} customers and "
            f"{report.items_created} items created; {elapsed:.1f} s ({rate:,.0f} events/s)."
        )
        if report.errors:
            for err in report.errors[:SHOW_ERRORS]:
                self.stderr.write(f"  line {err.row}: {err.field}: {err.reason}")
            if len(report.errors) > SHOW_ERRORS:
                self.stderr.write(f"  ... and {len(report.errors) - SHOW_ERRORS} more")
        if report.rejects_written:
            self.stdout.write(f"{report.rejects_written} bad rows written to {rejects_path} with their reasons.")
        if report.stopped:
            raise CommandError(
                "Stopped at a chunk with bad rows; that chunk was not written (earlier chunks were, and a rerun skips "
                "them). "
                "Fix the rows, or rerun with --skip-invalid to write the valid rows and collect the bad ones."
            )
