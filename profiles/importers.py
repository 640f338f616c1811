"""
Readers that turn files into chunks of canonical rows for `services.events_ingest`.

Each reader streams its file (gzip accepted) in chunks of `chunk_size` rows, so memory stays flat
however large the file is, and yields `ImportChunk`s whose frames are indexed by the line number
in the file, so an error names the line a person can open.

Formats:
- generic: a CSV with a header and the columns of `validation.EVENT_COLUMNS`
  (external_id, customer, item_kind, item, type, value, amount, occurred_at, context);
- online-retail: the UCI Online Retail CSV (InvoiceNo, StockCode, Description, Quantity,
  InvoiceDate, UnitPrice, CustomerID, Country);
- movielens: the MovieLens 100K folder (u.user, u.item, u.genre, u.data).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas._libs import lib

from .validation import EVENT_COLUMNS

FORMATS = ("generic", "online-retail", "movielens")
RETAIL_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
RETAIL_TIME_ZONE = "Europe/London"  # InvoiceDate is UK local time


class ImportFormatError(Exception):
    """The file cannot be read as the format says (missing columns, not a MovieLens folder, ...)."""


@dataclass
class ImportChunk:
    events: pd.DataFrame  # canonical columns, indexed by line number
    customers: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    skipped: int = 0  # rows the format says to leave out (e.g. retail lines without a customer)
    assume_tz: str | None = None
    raw: pd.DataFrame | None = None  # the rows as read, for a reject file


# What the readers put in place of bytes that cannot be stored, so the row is reported, not the file:
# undecodable bytes become U+FFFD (the decoder's replacement character), and NUL, which pandas' CSV
# parser would silently cut a field at, becomes U+FDD0, a noncharacter that no real text contains.
REPLACEMENT, NUL_MARK = "\ufffd", "\ufdd0"
_BAD_LINE_RE = re.compile(r"Skipping line (\d+): ([^\n]+)")
_EXTRA = "\x00extra"  # the column past the last one: a name no header can have (NUL was replaced)


class _NulGuard(io.TextIOBase):
    """A text stream with every NUL replaced by NUL_MARK (the C parser truncates fields at NUL)."""

    def __init__(self, text: io.TextIOBase):
        self.text = text

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        return self.text.read(size).replace("\x00", NUL_MARK)

    def readline(self, size: int | None = -1) -> str:
        return self.text.readline(size).replace("\x00", NUL_MARK)

    def close(self) -> None:
        self.text.close()
        super().close()


class _Progress:
    """Tracks how far into the (possibly compressed) file the reader is, in bytes."""

    def __init__(self, raw: io.BufferedReader, total: int):
        self.raw = raw
        self.total = total

    def position(self) -> int:
        try:
            return min(self.raw.tell(), self.total)
        except (ValueError, OSError):
            return self.total


def _open_text(path: Path, encoding: str = "utf-8-sig") -> tuple[io.TextIOBase, _Progress]:
    """The file as text. utf-8-sig also reads UTF-8 with a byte order mark (as spreadsheets write it)."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the reader's finally
    total = os.fstat(raw.fileno()).st_size
    stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
    # Undecodable bytes become U+FFFD and the row is reported, instead of the whole import dying.
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    return _NulGuard(text), _Progress(raw, total)


def _row_problems(df: pd.DataFrame) -> pd.Series:
    """Per row, why the reader refuses it (bytes that are not UTF-8, a NUL), or <NA>."""
    reasons = pd.Series(pd.NA, index=df.index, dtype="object")
    for marker, reason in ((NUL_MARK, "contains a NUL character"), (REPLACEMENT, "invalid UTF-8 in this row")):
        bad = np.zeros(len(df), dtype=bool)
        for col in df.columns:
            # one pass in C over the whole column first; the per-row search only where it is needed
            if df[col].dtype == object and marker in "".join(df[col].dropna().astype(str).tolist()):
                bad |= df[col].astype(str).str.contains(marker, regex=False).to_numpy()
        reasons = reasons.mask(bad & reasons.isna().to_numpy(), reason)
    return reasons


def _csv_chunks(
    text, *, name: str, first_line: int, chunk_size: int, names: list[str] | None = None, **read_csv
) -> Iterator[tuple[pd.DataFrame, dict[int, str]]]:
    """Chunks of a CSV indexed by their line in the file, and the lines that are malformed.

    `names` are the columns (a file without them has its header read from its first line). The
    parser is given one column more than that: a row that fills it has more fields than the header.
    Checking that column, rather than trusting the parser to refuse long rows, matters: pandas' C
    parser silently cuts a long row that starts a chunk, or that is the first row of the file.
    Longer rows still are skipped with a warning naming their line. Both come back as
    {line: reason}, left out of the chunk, for the caller to report as bad rows. Blank lines are
    kept as (empty) rows so line numbers stay true; callers leave them out.
    """
    if names is None:
        header = text.readline()
        if not header.strip():
            return
        names = next(csv.reader([header]))
    too_many = f"more fields than the {len(names)} columns"
    try:
        reader = pd.read_csv(
            text,
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_size,
            on_bad_lines="warn",
            skip_blank_lines=False,
            header=None,
            names=[*names, _EXTRA],
            index_col=False,
            **read_csv,
        )
    except pd.errors.EmptyDataError:
        yield pd.DataFrame(columns=names), {}
        return
    next_line, yielded = first_line, False
    it = iter(reader)
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            chunk = next(it, None)
        bad = {int(n): too_many for w in caught for n, _ in _BAD_LINE_RE.findall(str(w.message))}
        if chunk is None:
            if bad or not yielded:  # a file of a header alone still has its columns checked
                yield pd.DataFrame(columns=names), bad
            return
        yielded = True
        n = len(chunk)
        candidates = np.arange(next_line, next_line + n + len(bad))
        lines = candidates[~np.isin(candidates, list(bad))][:n]
        chunk.index = pd.Index(lines)
        next_line = int(max([next_line - 1, *lines[-1:], *bad])) + 1
        chunk = chunk.fillna("")
        long = (chunk.pop(_EXTRA) != "").to_numpy(dtype=bool)
        bad.update(dict.fromkeys(chunk.index[long].tolist(), too_many))
        yield chunk[~long], bad


def _blank(chunk: pd.DataFrame) -> np.ndarray:
    return (chunk == "").all(axis=1).to_numpy(dtype=bool) if len(chunk.columns) else np.ones(len(chunk), dtype=bool)


def _with_bad_lines(events: pd.DataFrame, raw: pd.DataFrame, bad: dict[int, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add the lines the parser skipped as rows that fail with their reason, so they are reported."""
    if not bad:
        return events, raw
    lines = pd.Index(sorted(bad))
    if "_invalid" not in events.columns:
        events = events.assign(_invalid=None)
    events = events.astype({"_invalid": object}).reindex(events.index.append(lines)).sort_index()
    events.loc[lines, "_invalid"] = [bad[i] for i in lines]
    raw = raw.reindex(raw.index.append(lines), fill_value="").sort_index()
    return events, raw


def read_generic(
    path: Path, *, chunk_size: int, progress: Callable[[int, int], None] | None = None
) -> Iterator[ImportChunk]:
    text, prog = _open_text(path)
    try:
        first = True
        for chunk, bad in _csv_chunks(
            text, name=path.name, first_line=2, chunk_size=chunk_size
        ):  # line 1 is the header
            if first:
                missing = [c for c in ("customer", "type", "occurred_at") if c not in chunk.columns]
                unknown = [c for c in chunk.columns if c not in EVENT_COLUMNS]
                if missing or unknown:
                    raise ImportFormatError(
                        f"{path.name}: the header must name the columns {', '.join(EVENT_COLUMNS)}"
                        + (f"; missing: {', '.join(missing)}" if missing else "")
                        + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                    )
                first = False
            blank = _blank(chunk)
            chunk = chunk[~blank]
            problems = _row_problems(chunk)
            events = chunk.reindex(columns=EVENT_COLUMNS)
            if problems.notna().any():
                events["_invalid"] = problems
            events, raw = _with_bad_lines(events, chunk, bad)
            yield ImportChunk(events=events, raw=raw, skipped=int(blank.sum()))
            if progress:
                progress(prog.position(), prog.total)
        if first:
            raise ImportFormatError(
                f"{path.name}: the file is empty (expected a header naming the columns {', '.join(EVENT_COLUMNS)})"
            )
    except pd.errors.ParserError as exc:
        raise ImportFormatError(f"{path.name}: not a readable CSV ({exc})") from exc
    finally:
        text.close()


def _strip(column: pd.Series) -> pd.Series:
    """`column.str.strip()`, in one pass of str.strip when the column is all text (a chunk's columns are)."""
    values = column.to_numpy(dtype=object)
    if not lib.is_string_array(values, skipna=False):
        return column.str.strip()
    return pd.Series([v.strip() for v in values], index=column.index, dtype=object)


def _first_of_each(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's code among the distinct keys, and the position where each distinct key first appears."""
    codes, uniques = pd.factorize(keys)
    first_at = np.empty(len(uniques), dtype=np.int64)
    first_at[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return codes, first_at


def _retail_category(description: pd.Series) -> pd.Series:
    # The dataset has no categories; the last word of a description names the kind of thing
    # ("... T-LIGHT HOLDER", "... LUNCH BAG"), which is what interests by category need.
    last = description.fillna("").str.strip().str.split().str[-1].fillna("")
    return last.str.title().where(last.str.len() > 0, "Other")


def read_online_retail(
    path: Path, *, chunk_size: int, progress: Callable[[int, int], None] | None = None
) -> Iterator[ImportChunk]:
    """Invoice lines become purchases (cancellations, InvoiceNo 'C...', become returns).

    Lines without a CustomerID cannot be attributed to anyone: they are skipped and counted.
    Each event's external_id is the file's line number, so importing the file again is harmless.
    """
    text, prog = _open_text(path)
    try:
        first = True
        for chunk, bad in _csv_chunks(text, name=path.name, first_line=2, chunk_size=chunk_size):
            if first:
                missing = [c for c in RETAIL_COLUMNS if c not in chunk.columns]
                if missing:
                    raise ImportFormatError(
                        f"{path.name}: not an Online Retail file; missing columns: {', '.join(missing)}"
                    )
                first = False
            customer_ids = _strip(chunk["CustomerID"])
            has_customer = customer_ids != ""
            skipped = int((~has_customer).sum())
            rows = chunk[has_customer]
            customer_ids = customer_ids[has_customer]
            stock_codes = _strip(rows["StockCode"])
            descriptions = _strip(rows["Description"])
            invoice = _strip(rows["InvoiceNo"])
            cancelled = np.array([v.upper().startswith("C") for v in invoice], dtype=bool)
            quantity = pd.to_numeric(rows["Quantity"], errors="coerce")
            price = pd.to_numeric(rows["UnitPrice"], errors="coerce")
            qty = quantity.abs()
            # An invoice's lines share one context object (validation checks it and the writer
            # serialises it once per distinct object).
            codes, first_at = _first_of_each(invoice + "\x00" + rows["Country"])
            shared = np.empty(len(first_at), dtype=object)
            shared[:] = [
                {"order_id": inv, "country": country, "source": "online-retail"}
                for inv, country in zip(invoice.iloc[first_at], rows["Country"].iloc[first_at], strict=False)
            ]
            context = shared[codes]
            events = pd.DataFrame(
                {
                    "external_id": "online-retail:L" + rows.index.astype(str),
                    "customer": customer_ids,
                    "item_kind": "product",
                    "item": stock_codes,
                    "type": np.where(cancelled, "return", "purchase"),
                    # A zero quantity is kept as given so validation reports it.
                    "value": qty.where(quantity.notna(), rows["Quantity"]),
                    "amount": (qty * price).round(2).where(price.notna(), rows["UnitPrice"]),
                    "occurred_at": rows["InvoiceDate"],
                    "context": context,
                },
                index=rows.index,
            )
            first_seen = rows.drop_duplicates("CustomerID")
            customers = pd.DataFrame(
                {
                    "external_id": customer_ids.loc[first_seen.index],
                    "name": "",
                    "attributes": [{"country": c, "source": "online-retail"} for c in first_seen["Country"]],
                }
            )
            item_rows = rows[descriptions != ""].drop_duplicates("StockCode")
            items = pd.DataFrame(
                {
                    "kind": "product",
                    "external_id": stock_codes.loc[item_rows.index],
                    "title": descriptions.loc[item_rows.index].str.slice(0, 300),
                    "category": _retail_category(item_rows["Description"]),
                    "price": pd.to_numeric(item_rows["UnitPrice"], errors="coerce").abs(),
                }
            )
            problems = _row_problems(rows)
            # an empty Quantity would otherwise count as the default of one unit
            problems = problems.mask(problems.isna() & (_strip(rows["Quantity"]) == ""), "Quantity is empty")
            if problems.notna().any():
                events["_invalid"] = problems
                # what the reader refuses must not reach the catalogue either
                customers = customers[customers["external_id"].isin(customer_ids[problems.isna()])]
                items = items[items["external_id"].isin(stock_codes[problems.isna()])]
            events, rows = _with_bad_lines(events, rows, bad)
            yield ImportChunk(
                events=events, customers=customers, items=items, skipped=skipped, assume_tz=RETAIL_TIME_ZONE, raw=rows
            )
            if progress:
                progress(prog.position(), prog.total)
        if first:
            raise ImportFormatError(f"{path.name}: the file is empty (expected the header {','.join(RETAIL_COLUMNS)})")
    except pd.errors.ParserError as exc:
        raise ImportFormatError(f"{path.name}: not a readable CSV ({exc})") from exc
    finally:
        text.close()


def _movielens_dir(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    missing = [f for f in ("u.data", "u.item", "u.user", "u.genre") if not (folder / f).exists()]
    if missing:
        raise ImportFormatError(f"{folder}: not a MovieLens 100K folder; missing {', '.join(missing)}")
    return folder


def movielens_customers(folder: Path) -> pd.DataFrame:
    users = pd.read_csv(
        folder / "u.user",
        sep="|",
        header=None,
        names=["id", "age", "gender", "occupation", "zip"],
        dtype=str,
        encoding="latin-1",
    )
    ages = pd.to_numeric(users["age"], errors="coerce")
    bad = ~(ages.notna() & (ages == ages.round())).to_numpy(dtype=bool)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 1
        raise ValueError(f"line {line}: the age {users['age'].iloc[line - 1]!r} is not a whole number")
    return pd.DataFrame(
        {
            "external_id": users["id"],
            "name": "MovieLens user " + users["id"],
            "attributes": [
                {"age": int(a), "gender": g, "occupation": o, "zip": z, "source": "movielens"}
                for a, g, o, z in zip(users["age"], users["gender"], users["occupation"], users["zip"], strict=False)
            ],
        }
    )


def movielens_items(folder: Path) -> pd.DataFrame:
    genres = pd.read_csv(
        folder / "u.genre",
        sep="|",
        header=None,
        names=["name", "index"],
        dtype={"name": str, "index": int},
        encoding="latin-1",
    )
    genres = genres.dropna().sort_values("index")["name"].tolist()
    cols = ["id", "title", "release_date", "video_release_date", "imdb_url", *genres]
    movies = pd.read_csv(
        folder / "u.item", sep="|", header=None, names=cols, dtype=str, encoding="latin-1", keep_default_na=False
    )
    numeric = movies[genres].apply(pd.to_numeric, errors="coerce")
    bad = ~numeric.isin([0, 1]).all(axis=1).to_numpy(dtype=bool)
    if bad.any():
        raise ValueError(f"line {int(np.flatnonzero(bad)[0]) + 1}: the genre flags must be 0 or 1")
    flags = numeric.to_numpy().astype(bool)
    genre_names = np.array(genres, dtype=object)
    genre_lists = [genre_names[row].tolist() for row in flags]
    # The category is the movie's first genre in the dataset's order; all genres stay in attributes.
    category = [g[0] if g else "unknown" for g in genre_lists]
    return pd.DataFrame(
        {
            "kind": "product",
            "external_id": movies["id"],
            "title": movies["title"].str.slice(0, 300),
            "category": category,
            "attributes": [
                {"genres": g, "release_date": r, "imdb_url": u, "source": "movielens"}
                for g, r, u in zip(genre_lists, movies["release_date"], movies["imdb_url"], strict=False)
            ],
        }
    )


def read_movielens(
    path: Path, *, chunk_size: int, progress: Callable[[int, int], None] | None = None
) -> Iterator[ImportChunk]:
    """u.user becomes customers, u.item items (first genre as category), u.data rating events."""
    folder = _movielens_dir(path)
    try:
        customers = movielens_customers(folder)
        items = movielens_items(folder)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, TypeError) as exc:
        # u.user and u.item are small and read whole: one bad line there stops the import before anything is written
        raise ImportFormatError(f"{folder}: u.user or u.item is not readable ({exc})") from exc
    text, prog = _open_text(folder / "u.data", encoding="latin-1")
    try:
        first = True
        for chunk, bad in _csv_chunks(
            text,
            name=f"{folder.name}/u.data",
            first_line=1,
            chunk_size=chunk_size,
            sep="\t",
            names=["user", "item", "rating", "ts"],
        ):  # no header
            blank = _blank(chunk)
            chunk = chunk[~blank]
            ts = pd.to_numeric(chunk["ts"], errors="coerce")
            # Seconds since 1970; beyond ~5000 AD pandas cannot even hold the time, so such a row fails here.
            bad_ts = (chunk["ts"].str.strip() != "").to_numpy() & ~(ts.abs() < 1e11).to_numpy(dtype=bool)
            ts = ts.where(~bad_ts)
            events = pd.DataFrame(
                {
                    "external_id": "ml-100k:" + chunk["user"] + ":" + chunk["item"],
                    "customer": chunk["user"],
                    "item_kind": "product",
                    "item": chunk["item"],
                    "type": "rating",
                    "value": chunk["rating"],
                    "amount": None,
                    "occurred_at": pd.to_datetime(ts, unit="s", utc=True),
                    "context": [{"source": "movielens"}] * len(chunk),
                },
                index=chunk.index,
            )
            problems = _row_problems(chunk).mask(
                bad_ts, "the timestamp (4th field) is not a time in seconds since 1970"
            )
            if problems.notna().any():
                events["_invalid"] = problems
            events, raw = _with_bad_lines(events, chunk, bad)
            yield ImportChunk(
                events=events,
                customers=customers if first else None,
                items=items if first else None,
                raw=raw,
                skipped=int(blank.sum()),
            )
            first = False
            if progress:
                progress(prog.position(), prog.total)
    except pd.errors.ParserError as exc:
        raise ImportFormatError(f"{folder / 'u.data'}: not a readable MovieLens ratings file ({exc})") from exc
    finally:
        text.close()


READERS = {"generic": read_generic, "online-retail": read_online_retail, "movielens": read_movielens}
