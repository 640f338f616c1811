"""python manage.py import_events: generic CSV, the two dataset adapters, bad rows, resends."""

import csv
import gzip
from datetime import timedelta
from io import StringIO

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum
from django.utils import timezone

from profiles.models import Customer, Event, Item

pytestmark = pytest.mark.django_db

HEADER = ["external_id", "customer", "item_kind", "item", "type", "value", "amount", "occurred_at", "context"]


def _write_csv(path, rows, *, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _rows(n, start=0):
    base = timezone.now() - timedelta(days=10)
    out = []
    for i in range(start, start + n):
        kind = "purchase" if i % 4 == 0 else "view"
        out.append(
            [
                f"e{i}",
                f"cust{i % 50}",
                "product",
                f"sku{i % 30}",
                kind,
                "1" if kind == "purchase" else "",
                "19.99" if kind == "purchase" else "",
                (base + timedelta(minutes=i)).isoformat(),
                '{"channel": "web"}',
            ]
        )
    return out


def _run(*args):
    out, err = StringIO(), StringIO()
    call_command("import_events", *map(str, args), "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_generic_gzip_file_imports_in_chunks_and_twice_is_harmless(tmp_path):
    path = _write_csv(tmp_path / "events.csv.gz", _rows(2500), gz=True)
    out, _ = _run(path, "--chunk-size", 400)
    assert "2500 events created" in out
    assert Event.objects.count() == 2500
    assert Customer.objects.count() == 50 and Item.objects.count() == 30
    out, _ = _run(path, "--chunk-size", 700)
    assert "0 events created, 2500 duplicates skipped" in out
    assert Event.objects.count() == 2500
    assert float(Event.objects.filter(type="purchase").aggregate(s=Sum("amount"))["s"]) == pytest.approx(625 * 19.99)


def test_a_bad_row_stops_the_import_and_its_chunk_is_not_written(tmp_path):
    rows = _rows(1000)
    rows[650][4] = "levitate"  # file line 652: header is line 1, first row line 2
    path = _write_csv(tmp_path / "events.csv", rows)
    with pytest.raises(CommandError, match="Stopped at a chunk with bad rows"):
        _run(path, "--chunk-size", 300)
    # chunks 1-2 (600 rows) were written; chunk 3 (rows 600-899) holds the bad row and was not.
    assert Event.objects.count() == 600
    assert not Event.objects.filter(external_id="e600").exists()


def test_bad_row_is_reported_with_its_line_number(tmp_path):
    rows = _rows(10)
    rows[4][7] = "yesterday"
    path = _write_csv(tmp_path / "events.csv", rows)
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_events", str(path), "--no-progress", stdout=StringIO(), stderr=err)
    assert "line 6: occurred_at: not a valid ISO 8601 date and time" in err.getvalue()
    assert Event.objects.count() == 0


def test_skip_invalid_writes_valid_rows_and_rejects_the_rest_with_reasons(tmp_path):
    rows = _rows(1000)
    rows[12][5] = "-3"  # a purchase of a negative quantity
    rows[500][1] = ""  # no customer
    rows[999][7] = "2031-01-01T00:00:00+00:00"  # far future
    path = _write_csv(tmp_path / "events.csv", rows)
    rejects = tmp_path / "bad.csv"
    out, _ = _run(path, "--chunk-size", 300, "--skip-invalid", "--rejects", rejects)
    assert "997 events created" in out and "3 invalid" in out
    assert Event.objects.count() == 997
    bad = pd.read_csv(rejects, dtype=str)
    assert bad["line"].astype(int).tolist() == [14, 502, 1001]
    assert bad["errors"].tolist()[0] == "value: a quantity must be positive"
    assert "customer: is required" in bad["errors"].tolist()[1]
    assert "future" in bad["errors"].tolist()[2]
    assert bad["external_id"].tolist() == ["e12", "e500", "e999"]  # the original row is kept for fixing


def test_invalid_utf8_is_a_bad_row_not_a_crash(tmp_path):
    path = tmp_path / "events.csv"
    _write_csv(path, _rows(3))
    data = path.read_bytes().replace(b"cust1,", b"cust\xff\xfe1,", 1)
    path.write_bytes(data)
    rejects = tmp_path / "bad.csv"
    out, _ = _run(path, "--skip-invalid", "--rejects", rejects)
    assert "2 events created" in out
    assert "invalid UTF-8" in pd.read_csv(rejects)["errors"][0]


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("who,what\nx,y\n")
    with pytest.raises(CommandError, match="missing: customer, type, occurred_at; unknown: who, what"):
        _run(path)


def test_naive_timestamps_need_a_zone(tmp_path):
    rows = _rows(5)
    for r in rows:
        r[7] = "2025-03-30 01:30:00"
    path = _write_csv(tmp_path / "events.csv", rows)
    with pytest.raises(CommandError):
        _run(path)
    _run(path, "--assume-timezone", "Europe/Paris")
    assert Event.objects.first().occurred_at.isoformat() == "2025-03-30T00:30:00+00:00"


@pytest.mark.datasets
@pytest.mark.slow
def test_movielens_adapter_reproduces_the_dataset(datasets_dir):
    out, _ = _run(datasets_dir / "ml-100k", "--format", "movielens")
    assert Customer.objects.count() == 943
    assert Item.objects.count() == 1682
    assert Event.objects.filter(type="rating").count() == 100_000
    per_value = dict(Event.objects.values_list("value").annotate(n=Count("id")).values_list("value", "n"))
    assert per_value == {1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}
    toy_story = Item.objects.get(external_id="1")
    assert toy_story.title == "Toy Story (1995)" and toy_story.category == "Animation"
    assert toy_story.attributes["genres"] == ["Animation", "Children's", "Comedy"]
    first = Event.objects.order_by("occurred_at").first()
    assert first.occurred_at.isoformat().startswith("1997-09-20")
    out, _ = _run(datasets_dir / "ml-100k", "--format", "movielens")
    assert "0 events created, 100000 duplicates skipped" in out


@pytest.mark.datasets
@pytest.mark.slow
def test_online_retail_adapter_reproduces_the_published_counts(datasets_dir):
    """541,909 lines; 135,080 without CustomerID are left out; 4,372 customers.

    Of the 406,829 attributable lines, the 8,905 on cancellation invoices become returns.
    """
    out, _ = _run(datasets_dir / "online-retail" / "online_retail.csv.gz", "--format", "online-retail")
    assert "135080 left out by the format" in out
    assert Customer.objects.count() == 4372
    assert Item.objects.count() == 3684  # distinct StockCodes on lines with a customer
    assert Event.objects.count() == 541_909 - 135_080
    assert Event.objects.filter(type="return").count() == 8905
    assert Event.objects.filter(type="purchase").count() == 397_924
    # Customer 12346 bought 74,215 units for 77,183.60 on one invoice, and returned them all.
    c = Customer.objects.get(external_id="12346")
    events = list(c.events.order_by("occurred_at").values_list("type", "value", "amount", "context"))
    assert [(t, v, str(a)) for t, v, a, _ in events] == [
        ("purchase", 74215.0, "77183.60"),
        ("return", 74215.0, "77183.60"),
    ]
    assert events[0][3]["order_id"] == "541431" and events[1][3]["order_id"] == "C541433"
    assert c.attributes["country"] == "United Kingdom"
    # InvoiceDate is UK local time: 2011-01-18 10:01 in January is 10:01 UTC.
    first = c.events.order_by("occurred_at").first()
    assert first.occurred_at.isoformat() == "2011-01-18T10:01:00+00:00"
    out, _ = _run(datasets_dir / "online-retail" / "online_retail.csv.gz", "--format", "online-retail")
    assert "0 events created, 406829 duplicates skipped" in out


@pytest.mark.django_db(transaction=True)
def test_import_outside_a_transaction_writes_through_the_writer_thread(tmp_path):
    """The command as an operator runs it: chunks are written by a writer thread with its own connection."""
    rows = _rows(1200)
    rows[1100][4] = "warp"
    path = _write_csv(tmp_path / "events.csv", rows)
    with pytest.raises(CommandError):
        _run(path, "--chunk-size", 250)
    # chunks of 250: lines 2-1001 (rows 0-999) written; the chunk holding row 1100 was not.
    assert Event.objects.count() == 1000
    out, _ = _run(path, "--chunk-size", 250, "--skip-invalid", "--rejects", tmp_path / "r.csv")
    assert "199 events created, 1000 duplicates skipped, 1 invalid" in out
    assert Event.objects.count() == 1199
