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

import gzip
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .validation import EVENT_COLUMNS

FORMATS = ("generic", "online-retail", "movielens")
RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
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


def _open_text(path: Path, encoding: str = "utf-8") -> tuple[io.TextIOBase, _Progress]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the reader's finally
    total = os.fstat(raw.fileno()).st_size
    stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
    # Undecodable bytes become U+FFFD and the row is reported, instead of the whole import dying.
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    return text, _Progress(raw, total)


def _mark_undecodable(df: pd.DataFrame) -> pd.Series:
    bad = np.zeros(len(df), dtype=bool)
    for col in df.columns:
        if df[col].dtype == object:
            bad |= df[col].astype(str).str.contains("\ufffd", regex=False).to_numpy()
    return pd.Series(bad, index=df.index)


def read_generic(path: Path, *, chunk_size: int, progress: Callable[[int, int], None] | None = None) -> Iterator[ImportChunk]:
    text, prog = _open_text(path)
    try:
        reader = pd.read_csv(text, dtype=str, keep_default_na=False, chunksize=chunk_size, skipinitialspace=False)
        first = True
        for chunk in reader:
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
            chunk.index = chunk.index + 2  # line 1 is the header
            undecodable = _mark_undecodable(chunk)
            events = chunk.reindex(columns=EVENT_COLUMNS)
            if undecodable.any():
                events["_invalid"] = pd.Series(None, index=events.index, dtype="object").mask(undecodable, "invalid UTF-8 in this row")
            yield ImportChunk(events=events, raw=chunk)
            if progress:
                progress(prog.position(), prog.total)
    except pd.errors.ParserError as exc:
        raise ImportFormatError(f"{path.name}: not a readable CSV ({exc})") from exc
    finally:
        text.close()


def _retail_category(description: pd.Series) -> pd.Series:
    # The dataset has no categories; the last word of a description names the kind of thing
    # ("... T-LIGHT HOLDER", "... LUNCH BAG"), which is what interests by category need.
    last = description.fillna("").str.strip().str.split().str[-1].fillna("")
    return last.str.title().where(last.str.len() > 0, "Other")


def read_online_retail(path: Path, *, chunk_size: int, progress: Callable[[int, int], None] | None = None) -> Iterator[ImportChunk]:
    """Invoice lines become purchases (cancellations, InvoiceNo 'C...', become returns).

    Lines without a CustomerID cannot be attributed to anyone: they are skipped and counted.
    Each event's external_id is the file's line number, so importing the file again is harmless.
    """
    text, prog = _open_text(path)
    try:
        reader = pd.read_csv(text, dtype=str, keep_default_na=False, chunksize=chunk_size)
        first = True
        for chunk in reader:
            if first:
                missing = [c for c in RETAIL_COLUMNS if c not in chunk.columns]
                if missing:
                    raise ImportFormatError(f"{path.name}: not an Online Retail file; missing columns: {', '.join(missing)}")
                first = False
            chunk.index = chunk.index + 2
            has_customer = chunk["CustomerID"].str.strip() != ""
            skipped = int((~has_customer).sum())
            rows = chunk[has_customer]
            invoice = rows["InvoiceNo"].str.strip()
            cancelled = invoice.str.upper().str.startswith("C")
            quantity = pd.to_numeric(rows["Quantity"], errors="coerce")
            price = pd.to_numeric(rows["UnitPrice"], errors="coerce")
            qty = quantity.abs()
            context = [
                {"order_id": inv, "country": country, "source": "online-retail"}
                for inv, country in zip(invoice, rows["Country"])
            ]
            events = pd.DataFrame(
                {
                    "external_id": "online-retail:L" + rows.index.astype(str),
                    "customer": rows["CustomerID"].str.strip(),
                    "item_kind": "product",
                    "item": rows["StockCode"].str.strip(),
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
                    "external_id": first_seen["CustomerID"].str.strip(),
                    "name": "",
                    "attributes": [{"country": c, "source": "online-retail"} for c in first_seen["Country"]],
                }
            )
            item_rows = rows[rows["Description"].str.strip() != ""].drop_duplicates("StockCode")
            items = pd.DataFrame(
                {
                    "kind": "product",
                    "external_id": item_rows["StockCode"].str.strip(),
                    "title": item_rows["Description"].str.strip().str.slice(0, 300),
                    "category": _retail_category(item_rows["Description"]),
                    "price": pd.to_numeric(item_rows["UnitPrice"], errors="coerce").abs(),
                }
            )
            yield ImportChunk(events=events, customers=customers, items=items, skipped=skipped, assume_tz=RETAIL_TIME_ZONE, raw=rows)
            if progress:
                progress(prog.position(), prog.total)
    finally:
        text.close()


def _movielens_dir(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    missing = [f for f in ("u.data", "u.item", "u.user", "u.genre") if not (folder / f).exists()]
    if missing:
        raise ImportFormatError(f"{folder}: not a MovieLens 100K folder; missing {', '.join(missing)}")
    return folder


def movielens_customers(folder: Path) -> pd.DataFrame:
    users = pd.read_csv(folder / "u.user", sep="|", header=None, names=["id", "age", "gender", "occupation", "zip"], dtype=str, encoding="latin-1")
    return pd.DataFrame(
        {
            "external_id": users["id"],
            "name": "MovieLens user " + users["id"],
            "attributes": [
                {"age": int(a), "gender": g, "occupation": o, "zip": z, "source": "movielens"}
                for a, g, o, z in zip(users["age"], users["gender"], users["occupation"], users["zip"])
            ],
        }
    )


def movielens_items(folder: Path) -> pd.DataFrame:
    genres = pd.read_csv(folder / "u.genre", sep="|", header=None, names=["name", "index"], dtype={"name": str, "index": int}, encoding="latin-1")
    genres = genres.dropna().sort_values("index")["name"].tolist()
    cols = ["id", "title", "release_date", "video_release_date", "imdb_url", *genres]
    movies = pd.read_csv(folder / "u.item", sep="|", header=None, names=cols, dtype=str, encoding="latin-1", keep_default_na=False)
    flags = movies[genres].astype(int).to_numpy().astype(bool)
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
                for g, r, u in zip(genre_lists, movies["release_date"], movies["imdb_url"])
            ],
        }
    )


def read_movielens(path: Path, *, chunk_size: int, progress: Callable[[int, int], None] | None = None) -> Iterator[ImportChunk]:
    """u.user becomes customers, u.item items (first genre as category), u.data rating events."""
    folder = _movielens_dir(path)
    customers = movielens_customers(folder)
    items = movielens_items(folder)
    text, prog = _open_text(folder / "u.data", encoding="latin-1")
    try:
        reader = pd.read_csv(text, sep="\t", header=None, names=["user", "item", "rating", "ts"], dtype=str, chunksize=chunk_size)
        first = True
        for chunk in reader:
            chunk.index = chunk.index + 1  # no header
            ts = pd.to_numeric(chunk["ts"], errors="coerce")
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
            yield ImportChunk(
                events=events, customers=customers if first else None, items=items if first else None, raw=chunk
            )
            first = False
            if progress:
                progress(prog.position(), prog.total)
    finally:
        text.close()


READERS = {"generic": read_generic, "online-retail": read_online_retail, "movielens": read_movielens}
