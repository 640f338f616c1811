"""Ingestion benchmark on PostgreSQL: CSV import and REST events per second, and peak memory.

Targets (issue #2): >= 20,000 events/s through `import_events`, >= 5,000 events/s through
`POST /api/events/`, and peak memory flat as the file grows (demo-size file vs ten times larger).

Floors (issue #19, bench/run.py's docstring): beside the import of the 10x file and of UCI Online
Retail, a raw COPY of the very rows it stored back into the same table (target: the import at
>= 60% of it); beside the REST run, the same bodies through bench/floor_ingest_app.py, which only
parses and COPYs (target: >= 20,000 events/s with 2 clients); and the CPU of a batch of 100 events
in-process (bench/rest_cpu.py; target <= 10 ms). A missed target saves a cProfile of that path.

The database is `BENCH_DATABASE_URL` (default: a `marketing_bench` database on the local server),
dropped and created anew for each measurement. Figures are returned as a dict; `bench/run.py`
writes them to bench/results/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/floors.py

DEMO_EVENTS = 150_000


def _db_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench")


def _env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "SECRET_KEY": "bench-only",
        "DEBUG": "0",
        "HTTPS_ONLY": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CELERY_BROKER_URL": "",
        "LOG_LEVEL": "WARNING",
    }


def _psql(sql: str) -> None:
    url = urlparse(_db_url())
    subprocess.run(
        [
            "psql",
            "-h",
            url.hostname or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "-d",
            "postgres",
            "-qc",
            sql,
        ],
        check=True,
        capture_output=True,
    )


def _fresh_db() -> None:
    name = urlparse(_db_url()).path.lstrip("/")
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _psql(f'CREATE DATABASE "{name}"')
    subprocess.run([PY, "manage.py", "migrate", "--no-input", "-v0"], cwd=REPO, env=_env(), check=True)


def _write_csv(path: Path, n_events: int, n_customers: int, seed: int) -> int:
    """A generic-format events file from the demo generator (customers and items created on the fly)."""
    from profiles.demo import generate_shop

    shop = generate_shop(
        seed=seed, n_customers=n_customers, n_events=n_events, n_products=max(400, n_customers // 5), chunk_size=100_000
    )
    header = True
    rows = 0
    with open(path, "w", newline="") as fh:
        for chunk in shop.iter_events():
            chunk = chunk.copy()
            chunk["occurred_at"] = chunk["occurred_at"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            chunk["context"] = chunk["context"].map(lambda c: json.dumps(c) if c else "")
            chunk.to_csv(fh, index=False, header=header)
            header = False
            rows += len(chunk)
    return rows


def _run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """Run a command; return wall seconds, peak RSS in MB of the child, and its stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    # wait4 is done by communicate(); the peak of the largest child so far is in RUSAGE_CHILDREN,
    # so each import runs in a helper that reports its own peak instead.
    return elapsed, 0, out


def _import(path: Path, fmt: str = "generic") -> dict:
    """Run `import_events` in a child; its wall time, peak RSS and output, and from the output the
    events it created and its own time (from its first read to its last commit, Python's start left out)."""
    code = (
        "import resource, subprocess, sys, json, time;"
        "t=time.monotonic();"
        f"p=subprocess.run([{PY!r}, 'manage.py', 'import_events', {str(path)!r}, '--format', {fmt!r}, '--no-progress'], capture_output=True, text=True);"
        "el=time.monotonic()-t;"
        "ru=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-2000:], 'seconds': el, 'peak_rss_mb': ru.ru_maxrss/1024}))"
    )
    _, _, out = _run_measured([PY, "-c", code])
    info = json.loads(out)
    if info["rc"] != 0:
        raise RuntimeError(f"import failed: {info['err']}")
    found = _REPORT_RE.search(info["out"])
    if not found:
        raise RuntimeError(f"import_events said something unexpected: {info['out']!r}")
    info["created"] = int(found["created"])
    info["own_seconds"] = float(found["seconds"])
    info["own_events_per_s"] = float(found["rate"].replace(",", ""))
    return info


_REPORT_RE = re.compile(
    r"^(?P<created>\d+) events created.*; (?P<seconds>[\d.]+) s \((?P<rate>[\d,]+) events/s\)", re.M
)
EVENT_COPY_COLUMNS = "external_id, customer_id, item_id, type, value, amount, occurred_at, context, received_at"
IMPORT_FLOOR_TARGET = 0.60  # issue #19: the import at >= 60% of its floor


def _psql_bench(command: str) -> str:
    """Run one psql command (SQL or a backslash command such as \\copy) on the bench database."""
    url = urlparse(_db_url())
    proc = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            url.hostname or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "-d",
            url.path.lstrip("/"),
            "-c",
            command,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout


def _copy_floor(tmp: Path, expected_rows: int) -> dict:
    """The floor of a file import: a raw COPY of the very rows the import stored, back into the same
    table after TRUNCATE (a new, empty heap and indexes, as the fresh database the import met; the
    same indexes, unique key, check and foreign keys, all maintained and checked as the import's
    were). psql's COPY in C, one transaction: no parsing, validation or look-up, the database's
    work alone. The figure is rows per second of the COPY, psql's start included (milliseconds)."""
    dump = tmp / "stored-events.copy"
    _psql_bench(f"\\copy (SELECT {EVENT_COPY_COLUMNS} FROM profiles_event ORDER BY id) TO '{dump}'")
    with open(dump, "rb") as fh:
        rows = sum(1 for _ in fh)
    if rows != expected_rows:
        raise RuntimeError(f"the events table holds {rows} rows, the import said it created {expected_rows}")
    _psql_bench("TRUNCATE profiles_event")
    started = time.monotonic()
    _psql_bench(f"\\copy profiles_event ({EVENT_COPY_COLUMNS}) FROM '{dump}'")
    seconds = time.monotonic() - started
    dump.unlink()
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def _import_profile(path: Path, fmt: str, name: str, why: str) -> str:
    """A missed target: the same import again (fresh database) under cProfile, saved with the results.
    cProfile sees the reading thread only; the writer thread's COPY shows as the reader's waits."""
    from floors import save_stats

    _fresh_db()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "import.pstats"
        subprocess.run(
            [
                PY,
                "-m",
                "cProfile",
                "-o",
                str(out),
                "manage.py",
                "import_events",
                str(path),
                "--format",
                fmt,
                "--no-progress",
            ],
            cwd=REPO,
            env=_env(),
            check=True,
            capture_output=True,
        )
        return save_stats(
            name, out, header=why + "\n(cProfile of the reading thread; the writer thread's COPY shows as its waits.)"
        )


def _import_floor(tmp: Path, path: Path, fmt: str, label: str, slug: str, imported: dict) -> tuple[dict, dict]:
    """The floor beside an import just run on a fresh database: (figures, floor table entry)."""
    from floors import floor_entry

    floor = _copy_floor(tmp, imported["created"])
    ours = imported["own_events_per_s"]
    ratio = ours / floor["rows_per_s"]
    met = ratio >= IMPORT_FLOOR_TARGET
    profile = None
    if not met:
        profile = _import_profile(
            path,
            fmt,
            f"ingest-{slug}",
            f"{label}: {ours:,.0f} events/s, {ratio:.0%} of the floor ({floor['rows_per_s']:,} rows/s)",
        )
    figures = {
        "events": imported["created"],
        "ours_events_per_s": round(ours),
        "ours_seconds": imported["own_seconds"],
        "wall_seconds_with_python_start": round(imported["seconds"], 2),
        "floor_copy": floor,
        "ratio": round(ratio, 3),
    }
    entry = floor_entry(
        path=f"CSV import, {label}",
        floor_label="raw COPY of the stored rows into the same table",
        floor=floor["rows_per_s"],
        ours=ours,
        unit="events/s",
        target=f">= {IMPORT_FLOOR_TARGET:.0%} of the floor",
        met=met,
        profile=profile,
        note=(
            f"{imported['created']:,} events; ours is import_events' own time ({imported['own_seconds']} s, "
            f"{imported['seconds']:.1f} s with Python's start); the floor is psql's COPY of the very rows "
            f"it stored into profiles_event after TRUNCATE ({floor['seconds']} s)"
        ),
    )
    return figures, entry


def _records(path: Path, n_events: int) -> list[dict]:
    """The file's rows as a client would send them (empty optional fields left out, context as an object)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=n_events)
    records = frame.to_dict("records")
    for r in records:
        for k in ("value", "amount", "context", "item"):
            if r.get(k) == "":
                r.pop(k)
        if "context" in r:
            r["context"] = json.loads(r["context"])
    return records


def _serve(app: str, port: int, *, extra_env: dict | None = None, chdir: Path = REPO) -> subprocess.Popen:
    """gunicorn with 2 workers serving `app`, once it answers. It starts in `chdir`, so it reads
    that folder's gunicorn.conf.py (the repository's for ours; none in bench/ for the floor)."""
    server = subprocess.Popen(
        [
            str(Path(PY).parent / "gunicorn"),
            app,
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
            "--log-level",
            "warning",
            "--chdir",
            str(chdir),
        ],
        cwd=chdir,
        env={**_env(), **(extra_env or {})},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except Exception:
            time.sleep(0.3)
    return server


def _send(port: int, bodies: list[bytes], n_events: int, *, clients: int, auth: str | None) -> dict:
    """POST every body to /api/events/ from `clients` threads; events/s of what the server says it created."""
    lock = threading.Lock()
    queue = list(range(len(bodies)))
    latencies: list[float] = []
    created = [0]
    errors: list[str] = []

    def client():
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/events/", data=bodies[i], method="POST", headers=headers
            )
            t = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    body = json.loads(resp.read())
                with lock:
                    created[0] += body["created"]
                    latencies.append(time.monotonic() - t)
            except Exception as exc:  # recorded, the figure says so
                with lock:
                    errors.append(str(exc))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "events": n_events,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "created": created[0],
        "errors": len(errors),
        "events_per_s": round(created[0] / elapsed),
        "batch_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "batch_max_s": round(latencies[-1], 3) if latencies else None,
    }


REST_TARGET_EVENTS_PER_S = 20_000  # issue #19, with 2 clients
CPU_TARGET_MS = 10.0  # issue #19: a batch of 100 events in <= 10 ms of CPU


def _rest(path: Path, n_events: int, batch: int = 5_000, clients: int = 2) -> dict:
    """Ours: POST /api/events/ through gunicorn (2 workers; an operator's basic auth, the ingest
    throttle as configured). Then the floor: the same bodies to bench/floor_ingest_app.py (parse
    and COPY) under the same gunicorn settings, after emptying the events table (the customers and
    items ours created stay: the floor resolves them from memory)."""
    env = _env()
    subprocess.run(
        [
            PY,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth.models import User;"
            "u=User.objects.filter(username='bench').first() or User.objects.create_superuser('bench','b@example.com','bench-pw');",
        ],
        cwd=REPO,
        env=env,
        check=True,
    )
    records = _records(path, n_events)
    bodies = [json.dumps(records[i : i + batch]).encode() for i in range(0, len(records), batch)]
    auth = "Basic " + b64encode(b"bench:bench-pw").decode()
    port = 18123
    server = _serve("config.wsgi", port)
    try:
        ours = _send(port, bodies, len(records), clients=clients, auth=auth)
    finally:
        server.terminate()
        server.wait(timeout=30)
    _psql_bench("TRUNCATE profiles_event")
    server = _serve(
        "floor_ingest_app:application",
        port,
        extra_env={"FLOOR_DATABASE_URL": _db_url()},
        chdir=Path(__file__).resolve().parent,
    )
    try:
        floor = _send(port, bodies, len(records), clients=clients, auth=None)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {**ours, "batch_size": batch, "target_events_per_s": REST_TARGET_EVENTS_PER_S, "floor": floor}


def _rest_cpu(path: Path, n_batches: int, batch: int = 100, profile: str | None = None) -> dict:
    """CPU per batch of `batch` events in-process (bench/rest_cpu.py), on the database ours and the
    floor left (customers and items stored; events emptied before each measurement)."""
    records = _records(path, n_batches * batch)
    with tempfile.TemporaryDirectory() as tmp:
        bodies = Path(tmp) / "bodies.json"
        bodies.write_text(json.dumps([json.dumps(records[i : i + batch]) for i in range(0, len(records), batch)]))
        cmd = [PY, str(Path(__file__).resolve().parent / "rest_cpu.py"), str(bodies)]
        if profile:
            cmd += ["--profile", profile]
        proc = subprocess.run(
            cmd, cwd=REPO, env={**_env(), "BULK_WRITE_NICE": "0"}, capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"rest_cpu.py failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rest_floors(rest: dict, cpu: dict, cpu_profile: str | None, rest_profile: str | None) -> list[dict]:
    from floors import floor_entry

    return [
        floor_entry(
            path=f"REST ingestion, batches of {rest['batch_size']:,}, {rest['clients']} clients",
            floor_label="endpoint that parses the JSON and COPYs",
            floor=rest["floor"]["events_per_s"],
            ours=rest["events_per_s"],
            unit="events/s",
            target=f">= {REST_TARGET_EVENTS_PER_S:,} events/s",
            met=rest["events_per_s"] >= REST_TARGET_EVENTS_PER_S and rest["errors"] == 0,
            profile=rest_profile,
            note=(
                f"{rest['events']:,} events through gunicorn (2 workers), ours through POST /api/events/ "
                f"(basic auth, throttles as configured), {rest['errors']} errors; the floor after emptying the "
                "events table, customers and items already stored"
            ),
        ),
        floor_entry(
            path=f"REST ingestion, CPU per batch of {cpu['rows_per_batch']}",
            floor_label="parse the JSON and COPY, in-process",
            floor=cpu["floor"]["median_ms"],
            ours=cpu["ours"]["median_ms"],
            unit="ms CPU",
            target=f"<= {CPU_TARGET_MS:g} ms",
            met=cpu["ours"]["median_ms"] <= CPU_TARGET_MS,
            profile=cpu_profile,
            higher_is_better=False,
            note=(
                f"median of {cpu['ours']['batches']} batches (p90 {cpu['ours']['p90_ms']} ms), time.process_time "
                "around the view in-process, known customers and items, new events; the frame path alone "
                f"(before issue #19): {cpu['frame_path_alone']['median_ms']} ms"
            ),
        ),
    ]


def _retail_path() -> Path | None:
    base = Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets")) / "online-retail"
    found = [p for p in (base / "online_retail.csv.gz", base / "online_retail.csv") if p.exists()]
    return found[0] if found else None


def run(quick: bool = False) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    small_n = 30_000 if quick else DEMO_EVENTS
    big_n = small_n * 10
    results: dict = {"database": "postgresql", "demo_events": small_n}
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "events-demo.csv"
        big = Path(tmp) / "events-10x.csv"
        _write_csv(small, small_n, n_customers=2_000 if not quick else 400, seed=1)
        _write_csv(big, big_n, n_customers=20_000 if not quick else 4_000, seed=2)
        results["file_mb"] = {
            "demo": round(small.stat().st_size / 2**20, 1),
            "10x": round(big.stat().st_size / 2**20, 1),
        }

        _fresh_db()
        first = _import(small)
        again = _import(small)
        _fresh_db()
        ten = _import(big)
        floors = []
        figures, entry = _import_floor(
            Path(tmp), big, "generic", f"generated file ({big_n:,} events)", "generated", ten
        )
        results["floor_import_generated"] = figures
        floors.append(entry)
        retail = _retail_path()
        if retail is not None:
            _fresh_db()
            imported = _import(retail, "online-retail")
            figures, entry = _import_floor(
                Path(tmp), retail, "online-retail", "Online Retail", "online-retail", imported
            )
            results["floor_import_online_retail"] = figures
            floors.append(entry)
        else:
            results["floor_import_online_retail"] = "skipped: UCI Online Retail not found (set DATASETS_DIR)"
        results["floors"] = floors
        results["csv_import"] = {
            "demo_file": {
                "seconds": round(first["seconds"], 2),
                "events_per_s": round(small_n / first["seconds"]),
                "peak_rss_mb": round(first["peak_rss_mb"]),
            },
            "demo_file_again_all_duplicates": {
                "seconds": round(again["seconds"], 2),
                "events_per_s": round(small_n / again["seconds"]),
                "output": again["out"].strip(),
            },
            "ten_times_file": {
                "seconds": round(ten["seconds"], 2),
                "events_per_s": round(big_n / ten["seconds"]),
                "peak_rss_mb": round(ten["peak_rss_mb"]),
            },
            "memory_growth_10x_over_1x": round(ten["peak_rss_mb"] / first["peak_rss_mb"], 2),
            "target_events_per_s": 20_000,
        }
        _fresh_db()
        results["rest"] = rest = _rest(small, small_n)
        results["rest_cpu_per_batch"] = cpu = _rest_cpu(small, n_batches=40 if quick else 70)
        cpu_profile = rest_profile = None
        if cpu["ours"]["median_ms"] > CPU_TARGET_MS:
            cpu_profile = _rest_cpu(small, n_batches=30, profile="ingest-rest-cpu-100").get("profile")
        if rest["events_per_s"] < REST_TARGET_EVENTS_PER_S:
            rest_profile = _rest_cpu(small, n_batches=14, batch=5_000, profile="ingest-rest-5000").get("profile")
        results["floors"].extend(_rest_floors(rest, cpu, cpu_profile, rest_profile))
    csv_rate = results["csv_import"]["ten_times_file"]["events_per_s"]
    results["targets_met"] = {
        "csv_import_20k_per_s": csv_rate >= 20_000,
        "rest_5k_per_s": results["rest"]["events_per_s"] >= 5_000 and results["rest"]["errors"] == 0,
        "memory_flat_(10x_file_<=_1.25x_peak)": results["csv_import"]["memory_growth_10x_over_1x"] <= 1.25,
    }
    del django
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
