"""Property-based fuzzing of `python manage.py import_events` for each --format (issue #7, section 3).

Hypothesis writes files (plain or gzip, with or without a byte order mark) that mix valid rows with
bad ones: too many fields, garbage numbers, bad and naive dates, latin-1 bytes, NUL, blank lines.
The properties:

- the command never dies with an unhandled exception: it finishes, or stops with a CommandError;
- by default, a file with a bad row stops with an error naming that row's line, and nothing of its
  chunk is written (here one chunk: nothing at all);
- with --skip-invalid, exactly the valid rows are stored and the reject file lists every bad line,
  each with a reason;
- an empty file is a clear error; a header alone imports nothing.
"""

import csv
import gzip
import io
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.models import Customer, Event, Item

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

FUZZ = settings(
    deadline=None, max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
HEADER = ["external_id", "customer", "item_kind", "item", "type", "value", "amount", "occurred_at", "context"]
RETAIL_HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
INJECTIONS = ["'; DROP TABLE profiles_event; --", "{{ settings.SECRET_KEY }}", "<b>x</b>", "Ω≈ç√ 👩‍👩‍👧"]


def _csv_line(fields) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue().encode("utf-8")


class _Rollback(Exception):
    pass


def _run(path, *args):
    """Run the command in a savepoint that is rolled back; return (outcome, stdout, stderr, events stored)."""
    out, err = StringIO(), StringIO()
    result = {}
    try:
        with transaction.atomic():
            try:
                call_command("import_events", str(path), "--no-progress", *map(str, args), stdout=out, stderr=err)
                result["outcome"] = "ok"
            except CommandError as exc:
                result["outcome"] = f"error: {exc}"
            result["events"] = set(Event.objects.values_list("external_id", flat=True))
            result["counts"] = (Customer.objects.count(), Item.objects.count())
            raise _Rollback
    except _Rollback:
        pass
    return result["outcome"], out.getvalue(), err.getvalue(), result["events"], result["counts"]


# --- generic ---------------------------------------------------------------------------------------

BAD_GENERIC = {
    # kind of bad row: (fields or raw bytes, words the reason must contain)
    "unknown type": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "levitate", "", "", ts, ""], "unknown event type"),
    "garbage value": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "purchase", "lots", "", ts, ""], "not a number"),
    "negative amount": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "purchase", "1", "-9.99", ts, ""], "negative"),
    "bad date": (
        lambda i, ts: [f"g{i}", "c1", "product", "p1", "view", "", "", "2024-02-30T25:00:00Z", ""],
        "ISO 8601",
    ),
    "naive date": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "view", "", "", ts[:19], ""], "no time zone"),
    "future date": (
        lambda i, ts: [f"g{i}", "c1", "product", "p1", "view", "", "", "2999-01-01T00:00:00Z", ""],
        "future",
    ),
    "bad context": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "view", "", "", ts, "{not json"], "JSON"),
    "nul context": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "view", "", "", ts, '{"a": "\\u0000"}'], "NUL"),
    "too many fields": (lambda i, ts: [f"g{i}", "c1", "product", "p1", "view", "", "", ts, "", "extra"], "more fields"),
    "latin-1 bytes": (
        lambda i, ts: _csv_line([f"g{i}", "c1", "product", "p1", "view", "", "", ts, ""]).replace(
            b"c1", "cé".encode("latin-1")
        ),
        "UTF-8",
    ),
    "NUL byte": (
        lambda i, ts: _csv_line([f"g{i}", "c1", "product", "p1", "view", "", "", ts, ""]).replace(b"c1", b"c\x001"),
        "NUL",
    ),
}


@st.composite
def generic_file(draw):
    now = timezone.now()
    n = draw(st.integers(min_value=0, max_value=12))
    lines: list[bytes] = []
    valid, bad = set(), {}  # external ids stored; file line -> expected words
    for i in range(n):
        ts = (now - timedelta(days=draw(st.integers(min_value=1, max_value=900)))).isoformat()
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            kind = draw(st.sampled_from(sorted(BAD_GENERIC)))
            make, words = BAD_GENERIC[kind]
            row = make(i, ts)
            lines.append(row if isinstance(row, bytes) else _csv_line(row))
            bad[len(lines) + 1] = words
        else:
            etype = draw(st.sampled_from(["view", "purchase", "rating", "like"]))
            value = {"purchase": "2", "rating": "4"}.get(etype, "")
            amount = "19.99" if etype == "purchase" else ""
            lines.append(
                _csv_line(
                    [
                        f"g{i}",
                        draw(st.sampled_from(["c1", "c2"] + INJECTIONS)),
                        "product",
                        draw(st.sampled_from(["p1", "p2", "sku-ü"])),
                        etype,
                        value,
                        amount,
                        ts,
                        '{"note": "%s"}' % draw(st.sampled_from(["x", "{{ y }}"])),
                    ]
                )
            )
            valid.add(f"g{i}")
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            lines.append(b"\n")  # a blank line: left out, and the line numbers after it stay true
    bom = draw(st.booleans())
    body = (b"\xef\xbb\xbf" if bom else b"") + _csv_line(HEADER) + b"".join(lines)
    return body, valid, bad


def _assert_rejects(rejects, bad: dict[int, str]) -> None:
    """The reject file lists exactly the bad lines, each with its reason."""
    table = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    reasons = dict(zip(table["line"].astype(int), table["errors"], strict=False))
    assert set(reasons) == set(bad), (reasons, bad)
    for line, words in bad.items():
        assert words in reasons[line], (line, reasons[line], words)


def _write(tmp_path, body: bytes, gz: bool, name="events.csv") -> Path:
    path = tmp_path / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


@FUZZ
@given(spec=generic_file(), gz=st.booleans(), skip=st.booleans())
def test_generic_files_import_exactly_the_valid_rows_or_stop_naming_the_line(tmp_path_factory, spec, gz, skip):
    body, valid, bad = spec
    tmp = tmp_path_factory.mktemp("generic")
    path = _write(tmp, body, gz)
    rejects = tmp / "rejects.csv"
    args = ["--skip-invalid", "--rejects", rejects] if skip else []
    outcome, out, err, stored, _ = _run(path, *args)
    if skip or not bad:
        assert outcome == "ok", (outcome, err)
        assert stored == valid
        if bad:
            _assert_rejects(rejects, bad)
            assert f"{len(bad)} invalid" in out
    else:
        assert outcome.startswith("error: Stopped at a chunk with bad rows"), outcome
        assert stored == set()  # one chunk: the bad row's chunk is the whole file
        first = min(bad)
        assert f"line {first}: " in err and bad[first] in err.split(f"line {first}: ", 1)[1].splitlines()[0], err


def test_empty_file_is_a_clear_error_and_a_header_alone_imports_nothing(tmp_path):
    empty = _write(tmp_path, b"", False, "empty.csv")
    outcome, *_ = _run(empty)
    assert outcome.startswith("error: empty.csv: the file is empty")
    header_only = _write(tmp_path, b"\xef\xbb\xbf" + _csv_line(HEADER), True, "header.csv")
    outcome, out, _, stored, _ = _run(header_only)
    assert outcome == "ok" and "0 events created" in out and stored == set()
    wrong_header = _write(tmp_path, _csv_line(["customer", "type", "when"]), False, "wrong.csv")
    outcome, *_ = _run(wrong_header)
    assert "missing: occurred_at" in outcome and "unknown: when" in outcome


def test_first_row_with_a_field_too_many_is_reported_not_cut(tmp_path):
    # pandas' parser would take the first row's width as the file's and cut the row silently
    ts = timezone.now().isoformat()
    body = (
        _csv_line(HEADER)
        + _csv_line(["a", "c1", "product", "p1", "view", "", "", ts, "", "surplus"])
        + _csv_line(["b", "c1", "product", "p1", "view", "", "", ts, ""])
    )
    path = _write(tmp_path, body, False)
    outcome, _, err, stored, _ = _run(path)
    assert (
        outcome.startswith("error: Stopped")
        and "line 2: (row): more fields than the 9 columns" in err
        and stored == set()
    )
    outcome, _, _, stored, _ = _run(path, "--skip-invalid", "--rejects", tmp_path / "r.csv")
    assert outcome == "ok" and stored == {"b"}


# --- online retail ---------------------------------------------------------------------------------


@st.composite
def retail_file(draw):
    n = draw(st.integers(min_value=1, max_value=10))
    lines, valid, bad, no_customer = [], set(), {}, 0
    for i in range(n):
        line_no = len(lines) + 2
        base = [
            f"5{i:05d}",
            f"SKU{i % 3}",
            "WHITE T-LIGHT HOLDER",
            "6",
            "2010-12-01 08:26:00",
            "2.55",
            f"{17000 + i % 4}",
            "United Kingdom",
        ]
        kind = draw(st.sampled_from(["ok", "ok", "ok", "qty", "price", "date", "neg", "latin", "nocust", "fields"]))
        if kind == "ok":
            valid.add(f"online-retail:L{line_no}")
        elif kind == "qty":
            base[3] = draw(st.sampled_from(["lots", "0", ""]))
            bad[line_no] = "Quantity is empty" if base[3] == "" else "value"
        elif kind == "price":
            base[5] = draw(st.sampled_from(["abc", "1e400"]))
            bad[line_no] = "amount"
        elif kind == "neg":
            base[5] = "-2.55"
            bad[line_no] = "negative"
        elif kind == "date":
            base[4] = draw(st.sampled_from(["31/31/2010 99:00", "soon", "2999-01-01 00:00:00"]))
            bad[line_no] = "occurred_at"
        elif kind == "nocust":
            base[6] = ""
            no_customer += 1
        elif kind == "fields":
            base.append("surplus")
            bad[line_no] = "more fields"
        line = _csv_line(base)
        if kind == "latin":
            line = line.replace(b"WHITE", "BLANC É".encode("latin-1"))
            bad[line_no] = "UTF-8"
        lines.append(line)
    return _csv_line(RETAIL_HEADER) + b"".join(lines), valid, bad, no_customer


@FUZZ
@given(spec=retail_file(), gz=st.booleans())
def test_online_retail_files_skip_invalid_writes_exactly_the_valid_lines(tmp_path_factory, spec, gz):
    body, valid, bad, no_customer = spec
    tmp = tmp_path_factory.mktemp("retail")
    path = _write(tmp, body, gz, "retail.csv")
    rejects = tmp / "rejects.csv"
    outcome, out, err, stored, _ = _run(path, "--format", "online-retail", "--skip-invalid", "--rejects", rejects)
    assert outcome == "ok", (outcome, err)
    assert stored == valid
    assert f"{no_customer} left out by the format" in out
    if bad:
        _assert_rejects(rejects, bad)
    outcome, _, err, stored, counts = _run(path, "--format", "online-retail")
    if bad:
        assert outcome.startswith("error: Stopped") and f"line {min(bad)}: " in err
        assert stored == set() and counts == (0, 0)  # nor the customers and items of that chunk
    else:
        assert outcome == "ok" and stored == valid


# --- movielens -------------------------------------------------------------------------------------

GENRES = ["unknown", "Action", "Comedy"]


def _movielens(folder, data_lines: list[bytes], users: list[bytes] | None = None):
    folder.mkdir(exist_ok=True)
    (folder / "u.genre").write_bytes(b"".join(f"{g}|{i}\n".encode() for i, g in enumerate(GENRES)))
    (folder / "u.user").write_bytes(
        b"".join(users) if users is not None else b"1|24|M|technician|85711\n2|53|F|other|94043\n"
    )
    (folder / "u.item").write_bytes(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|GoldenEye (1995)|01-Jan-1995||http://y|0|1|0\n".encode(
            "latin-1"
        )
    )
    (folder / "u.data").write_bytes(b"".join(data_lines))
    return folder


@st.composite
def ratings(draw):
    now = int(timezone.now().timestamp())
    lines, valid, bad = [], set(), {}
    seen = set()
    for _ in range(draw(st.integers(min_value=1, max_value=10))):
        user, item = draw(st.integers(min_value=1, max_value=3)), draw(st.integers(min_value=1, max_value=3))
        if (user, item) in seen:
            continue
        seen.add((user, item))
        fields = [
            str(user),
            str(item),
            str(draw(st.integers(min_value=1, max_value=5))),
            str(now - draw(st.integers(min_value=100, max_value=10**8))),
        ]
        kind = draw(st.sampled_from(["ok", "ok", "ok", "rating", "ts", "huge_ts", "fields", "nul"]))
        line_no = len(lines) + 1
        if kind == "rating":
            fields[2] = draw(st.sampled_from(["11", "x", "-1"]))
            bad[line_no] = "value"
        elif kind == "ts":
            fields[3] = "yesterday"
            bad[line_no] = "timestamp"
        elif kind == "huge_ts":
            fields[3] = draw(st.sampled_from(["99999999999999999999", "1e300"]))
            bad[line_no] = "timestamp"
        elif kind == "fields":
            fields.append("x")
            bad[line_no] = "more fields"
        elif kind == "nul":
            fields[0] = fields[0] + "\x00"
            bad[line_no] = "NUL"
        else:
            valid.add(f"ml-100k:{user}:{item}")
        lines.append(("\t".join(fields) + "\n").encode("latin-1"))
    return lines, valid, bad


@FUZZ
@given(spec=ratings())
def test_movielens_ratings_skip_invalid_writes_exactly_the_valid_lines(tmp_path_factory, spec):
    lines, valid, bad = spec
    folder = _movielens(tmp_path_factory.mktemp("ml") / "ml-100k", lines)
    rejects = folder.parent / "rejects.csv"
    outcome, _, err, stored, counts = _run(folder, "--format", "movielens", "--skip-invalid", "--rejects", rejects)
    assert outcome == "ok", (outcome, err)
    assert stored == valid
    if bad:
        _assert_rejects(rejects, bad)
    outcome, _, err, stored, counts = _run(folder, "--format", "movielens")
    if bad:
        assert outcome.startswith("error: Stopped") and f"line {min(bad)}: " in err
        assert stored == set() and counts == (0, 0)
    else:
        # u.item's two films, and any other a rating names (created on the fly)
        assert (
            outcome == "ok" and stored == valid and counts[1] == len({"1", "2"} | {v.rsplit(":", 1)[1] for v in valid})
        )


def test_movielens_side_files_that_are_broken_stop_the_import_with_the_line(tmp_path):
    folder = _movielens(
        tmp_path / "ml-100k", [b"1\t1\t5\t881250949\n"], users=[b"1|24|M|technician|85711\n", b"2|old|F|other|94043\n"]
    )
    outcome, *_, stored, counts = _run(folder, "--format", "movielens")
    assert "u.user or u.item is not readable (line 2: the age 'old' is not a whole number)" in outcome
    assert stored == set() and counts == (0, 0)
