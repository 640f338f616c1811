#!/usr/bin/env python
"""Load test (issue #7): recommendations at a fixed rate, ingestion and a recomputation at once.

`make load` runs this. In a fresh PostgreSQL database (`LOAD_DATABASE_URL`, default
`marketing_load` on 127.0.0.1, dropped and created anew) it migrates, seeds the demo shop
(2,000 customers), runs the pipeline once, issues credentials as a shop would (an API key with
the scope `ingest_events` for the backend, another with `read_recommendations` that issues one
customer token per customer for the frontend), and serves the app with gunicorn
(`gunicorn.conf.py`) on 127.0.0.1:18131. Then, for `--seconds` (60):

- `GET /api/customers/{id}/recommendations/?kind=…&limit=10` at a fixed `--rate` (500/s) over
  random customers and kinds, each with that customer's token (`Authorization: Customer …`);
- `POST /api/events/` batches of `--batch` (100) new events `--batches-per-s` (4) times a second
  with the backend's API key, every event with its own external id; which batches got 201 is kept;
- `manage.py recompute` (profiles, segments, recommendations) as a subprocess at low CPU priority
  (`nice`, as docs/benchmarks.md explains), started again whenever one ends inside the window.

Before the window, a closed-loop probe (12 clients, 6 s) measures how many suggestions a second the
machine serves at most. When that capacity is below 1.5 × `--rate`, the window runs at 60 % of it
instead and says so: an open-loop load beyond capacity only grows queues until requests time out (on
a slow 2-core machine, 500/s ends with most requests and a third of the event batches unanswered, old
code and new alike), which tests the machine, not the guarantees. The rate target is still judged
against `--rate`, so such a run reports it missed.

The generator is open-loop: request i is due at start + i/rate whatever happened to earlier ones,
and its latency is counted from that due time, not from when it could be sent, so a stalled
server shows in the figures instead of slowing the generator down (no coordinated omission).
Connections are kept alive, up to 64 at once as a proxy's or a frontend's pool would; a request
that finds them all busy waits for one, and the wait counts in its latency.

Afterwards it checks the guarantees: every answered request was right (200 with suggestions),
every batch was accepted, the database holds every event of every accepted batch (by external id),
and every recomputation succeeded; and the speed targets: p99 < 50 ms, every request answered
(none timed out), the achieved rate within 2 % of the asked one. Figures go to
bench/results/load.json and load.md. The exit status is 1 when a guarantee is broken, or, with
`--strict`, when a speed target is missed too.

    python bench/load.py [--seconds 60] [--rate 500] [--quick] [--keep-db]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PY = sys.executable
PORT = int(os.environ.get("LOAD_PORT", "18131"))  # other benches use 18123 and 18124
TARGET_P99_MS = 50.0
KINDS = ["product", "product", "activity", "post"]
EVENT_TYPES = ["view", "view", "view", "click", "add_to_cart", "like", "purchase"]


def _db_url() -> str:
    return os.environ.get("LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_load")


def _env(db_url: str | None = None, **extra: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": db_url or _db_url(),
        "SECRET_KEY": "load-test-only",
        "DEBUG": "0",
        "HTTPS_ONLY": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CELERY_BROKER_URL": "",
        "LOG_LEVEL": "WARNING",
        # a shared cache, as production needs (docs/security.md): API keys are then remembered per process and
        # checked against the keys generation in one cache read, instead of the database on every request
        "CACHE_URL": os.environ.get("LOAD_CACHE_URL", "redis://127.0.0.1:6379/9"),
        **extra,
    }


def _psql(sql: str, db_url: str | None = None) -> None:
    url = urlparse(db_url or _db_url())
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


def _manage(*args: str, db_url: str | None = None) -> str:
    proc = subprocess.run([PY, "manage.py", *args], cwd=REPO, env=_env(db_url), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


# Credentials as the shop has them: the backend's ingestion key, and a token per customer that the
# backend obtained for its frontend (through the same function POST /api/customer-tokens/ calls).
CREDENTIALS_CODE = """
import json
from django.db import connection
from accounts import access
from profiles.models import Customer, Item
ingest, ingest_key = access.api_key_create(name="load: shop backend (ingestion)", scopes=["ingest_events"])
reader, _ = access.api_key_create(name="load: shop backend (frontend tokens)", scopes=["read_recommendations"])
customers = list(Customer.objects.values_list("external_id", flat=True))
tokens = {c: access.customer_token_issue(customer_external_id=c, key=reader)[0] for c in customers}
items = list(Item.objects.filter(kind="product", active=True).values_list("external_id", flat=True))
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")  # what autovacuum does within a minute of the seeding, done now
print(json.dumps({"ingest_key": ingest_key, "tokens": tokens, "items": items}))
"""

STORED_CODE = """
import json
from profiles.models import Event
print(json.dumps(list(Event.objects.filter(external_id__startswith={prefix}).values_list("external_id", flat=True))))
"""


def prepare(*, quick: bool, reuse_db: bool = False, db_url: str | None = None) -> dict:
    """A fresh database with the demo shop, computed once, and the shop's credentials."""
    times = {}
    if not reuse_db:  # reuse_db: while working on the app, the shop of an earlier run
        name = urlparse(db_url or _db_url()).path.lstrip("/")
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', db_url)
        _psql(f'CREATE DATABASE "{name}"', db_url)
        t = time.monotonic()
        _manage("migrate", "--no-input", "-v0", db_url=db_url)
        times["migrate"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        _manage("seed_demo", "--no-progress", *(["--scale", "0.25"] if quick else []), db_url=db_url)
        times["seed_demo"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        recompute = _manage("recompute", "--no-progress", db_url=db_url)
        times["first_recompute"] = round(time.monotonic() - t, 1)
    info = json.loads(_manage("shell", "-c", CREDENTIALS_CODE, db_url=db_url).strip().splitlines()[-1])
    if not reuse_db:
        info["first_recompute_output"] = [line for line in recompute.splitlines() if line.startswith("recommendations")]
    info["setup_seconds"] = times
    return info


class Gunicorn:
    """The app served as in production: `gunicorn -c gunicorn.conf.py config.wsgi` on loopback.
    `app` (with `chdir`, where its module is) serves another WSGI app with the same configuration
    (a bench's floor), ready when `ready_path` answers."""

    def __init__(
        self,
        *,
        port: int = PORT,
        db_url: str | None = None,
        app: str = "config.wsgi",
        chdir: Path | None = None,
        ready_path: str = "/admin/login/",
        **env: str,
    ):
        self.port, self.db_url, self.env = port, db_url, env
        self.app, self.chdir, self.ready_path = app, chdir, ready_path

    def __enter__(self):
        self.proc = subprocess.Popen(
            [
                str(Path(PY).parent / "gunicorn"),
                "-c",
                str(REPO / "gunicorn.conf.py"),
                "-b",
                f"127.0.0.1:{self.port}",
                *(["--chdir", str(self.chdir)] if self.chdir else []),
                self.app,
            ],
            cwd=REPO,
            env=_env(self.db_url, **self.env),
            # a service of its own, as in production (and its own autogroup, see _lower_priority)
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=5)
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- a small HTTP/1.1 client on asyncio protocols (light on CPU: the generator shares the cores) ----


class _Stale(Exception):
    """A kept-alive connection the server had closed before it read the request."""


class _Connection(asyncio.Protocol):
    def __init__(self):
        self.transport = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.received = False
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        self.received = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").lower()
        length, close = 0, False
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip() == "close"
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])  # "http/1.1 200 ok"
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        waiter.set_result((status, body, close))

    def connection_lost(self, exc):
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection closed mid-answer") if self.received else _Stale())


class Pool:
    """Keep-alive connections to the server, at most `size` at once (as a proxy or a frontend's HTTP
    client keeps them); a request takes an idle one, opens one, or waits for one. Waiting counts in
    its latency. Unbounded, an overloaded server would be sent ever more connections, each holding
    a request its client has already given up on."""

    def __init__(self, port: int, size: int):
        self.port = port
        self.idle: list[_Connection] = []
        self.opened = 0
        self.slots = asyncio.Semaphore(size)

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout), self.slots:
            while self.idle:
                conn = self.idle.pop()
                if conn.closed:
                    continue
                try:
                    return await self._exchange(conn, raw)
                except _Stale:  # closed by the server's keep-alive timeout: any client resends, as below
                    continue
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, "127.0.0.1", self.port)
            self.opened += 1
            return await self._exchange(conn, raw)

    async def _exchange(self, conn: _Connection, raw: bytes) -> tuple[int, bytes]:
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.received = False
        conn.transport.write(raw)
        try:
            status, body, close = await conn.waiter
        except BaseException:
            conn.transport.close()
            raise
        if close:
            conn.transport.close()
        else:
            self.idle.append(conn)
        return status, body

    def close(self):
        for conn in self.idle:
            conn.transport.close()


def _get(path: str, auth: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nAuthorization: {auth}\r\n\r\n".encode()
    )


def _post(path: str, auth: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def open_loop(
    *, rate: float, seconds: float, make_request, check, timeout: float = 5.0, port: int = PORT, connections: int = 64
) -> dict:
    """Send make_request(i) at start + i/rate for `seconds`; latency counted from that due time."""
    loop = asyncio.get_running_loop()
    pool = Pool(port, connections)
    latencies: list[float] = []
    errors: list[str] = []
    wrong = [0]  # answers that came back wrong (a status or body the check refused), apart from no answer
    late_sends = 0
    lateness: list[float] = []
    tasks = set()

    async def one(i: int, due: float):
        try:
            status, body = await pool.request(make_request(i), timeout)
            done = loop.time()
            problem = check(i, status, body)
            if problem:
                errors.append(problem)
                wrong[0] += 1
            else:
                latencies.append(done - due)
                by_second.setdefault(int(due - start), []).append(done - due)
        except Exception as exc:  # a timeout, a reset connection: an error, counted
            errors.append(f"{type(exc).__name__}: {exc}")

    start = loop.time() + 0.05
    by_second: dict[int, list[float]] = {}
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late_sends += 1  # the generator itself fell behind; the latency still counts from `due`
        lateness.append(max(0.0, -delay))
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_in = loop.time() - start
    if tasks:
        await asyncio.wait(list(tasks), timeout=timeout + 1)
    wall = loop.time() - start
    pool.close()
    latencies.sort()

    def pct(p: float):
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else None

    errors_total = len(errors) + (n - len(latencies) - len(errors))
    return {
        "asked_rate_per_s": rate,
        "requests": n,
        "ok": len(latencies),
        "errors": errors_total,
        "wrong_answers": wrong[0],
        "unanswered": errors_total - wrong[0],
        "first_errors": errors[:5],
        "seconds_sending": round(sent_in, 2),
        "seconds_until_last_answer": round(wall, 2),
        "achieved_rate_per_s": round(len(latencies) / sent_in, 1) if sent_in else None,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": pct(1.0),
        "late_sends": late_sends,
        "connections_opened": pool.opened,
        "send_lateness_p99_ms": round(1000 * sorted(lateness)[int(0.99 * len(lateness))], 2) if lateness else None,
        "send_lateness_max_ms": round(1000 * max(lateness), 2) if lateness else None,
        # the slowest answer of each second of the run, to see when a stall happened
        "max_ms_by_second": [round(1000 * max(by_second.get(t, [0])), 1) for t in range(int(seconds))],
    }


def recommendation_load(info: dict, *, rate: float, seconds: float, seed: int, port: int = PORT, verify: bool = True):
    """GET suggestions of random customers and kinds at a fixed rate, each with the customer's token.
    `verify=False` checks the status only (a floor that answers every request with the same body)."""
    rng = random.Random(seed)
    customers = sorted(info["tokens"])
    plan = [(c, rng.choice(KINDS)) for c in (rng.choice(customers) for _ in range(int(rate * seconds)))]

    def make(i: int) -> bytes:
        customer, kind = plan[i]
        return _get(
            f"/api/customers/{customer}/recommendations/?kind={kind}&limit=10", f"Customer {info['tokens'][customer]}"
        )

    def check(i: int, status: int, body: bytes) -> str | None:
        if status != 200:
            return f"{plan[i]}: HTTP {status} {body[:200]!r}"
        if not verify:
            return None
        if i % 10 == 0:  # parse one answer in ten in full; the rest only for an empty list
            data = json.loads(body)
            if data["customer"] != plan[i][0] or data["kind"] != plan[i][1] or not data["results"]:
                return f"{plan[i]}: unexpected answer {body[:200]!r}"
        elif b'"results":[]' in body:
            return f"{plan[i]}: empty list"
        return None

    return open_loop(rate=rate, seconds=seconds, make_request=make, check=check, port=port)


async def capacity_probe(info: dict, *, seconds: float = 6.0, users: int = 12, port: int = PORT) -> float:
    """How many suggestions a second this machine serves at most: `users` clients each sending the next
    request as soon as the last is answered (closed loop), for `seconds`; answered requests per second."""
    rng = random.Random(3)
    customers = sorted(info["tokens"])
    pool = Pool(port, users)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    answered = [0]

    async def user():
        while loop.time() < end:
            customer, kind = rng.choice(customers), rng.choice(KINDS)
            raw = _get(
                f"/api/customers/{customer}/recommendations/?kind={kind}&limit=10",
                f"Customer {info['tokens'][customer]}",
            )
            try:
                status, _ = await pool.request(raw, 5.0)
            except Exception:
                continue
            if status == 200:
                answered[0] += 1

    started = loop.time()
    await asyncio.gather(*(user() for _ in range(users)))
    pool.close()
    return round(answered[0] / (loop.time() - started), 1)


#: The share of the measured capacity the window asks for when the machine cannot carry the asked rate:
#: an open-loop load above capacity only grows queues until requests time out, which says nothing about
#: the guarantees (answers right, events kept) and everything about the machine.
CAPACITY_SHARE = 0.6
#: The asked rate runs as asked only on a machine whose capacity is this many times larger: beside the
#: ingestion and a recomputation, an open loop at 500/s on a machine measured at 708/s answered every
#: request but with a p99 of 3.5 s (session 8), at the edge of the collapse seen at 549/s.
CAPACITY_HEADROOM = 1.5


def _ingestion_load(
    info: dict, *, tag: str, batch: int, per_second: float, seconds: float, seed: int, port: int = PORT
):
    rng = random.Random(seed + 1)
    customers = sorted(info["tokens"])
    accepted: list[int] = []
    refused: list[str] = []

    def events(b: int) -> list[dict]:
        now = datetime.now(UTC).isoformat()
        rows = []
        for i in range(batch):
            kind = rng.choice(EVENT_TYPES)
            row = {
                "external_id": f"{tag}-{b}-{i}",
                "customer": rng.choice(customers),
                "item": rng.choice(info["items"]),
                "type": kind,
                "occurred_at": now,
                "context": {"channel": "load-test"},
            }
            if kind == "purchase":
                row["amount"] = round(rng.uniform(5, 120), 2)
                row["context"]["order_id"] = f"{tag}-o{b}-{i}"
            rows.append(row)
        return rows

    def make(b: int) -> bytes:
        return _post("/api/events/", f"Api-Key {info['ingest_key']}", json.dumps(events(b)).encode())

    def check(b: int, status: int, body: bytes) -> str | None:
        if status != 201:
            refused.append(f"batch {b}: HTTP {status} {body[:200]!r}")
            return refused[-1]
        if json.loads(body)["created"] != batch:
            return f"batch {b}: {body[:200]!r}"
        accepted.append(b)
        return None

    async def go():
        figures = await open_loop(
            rate=per_second, seconds=seconds, make_request=make, check=check, timeout=30, port=port, connections=8
        )
        figures["accepted_batches"] = sorted(accepted)
        return figures

    return go()


RECOMPUTE_GRACE_SECONDS = 150  # how long a recomputation may go on after the window before it counts as failed


RECOMPUTE_APP_NAME = "marketing-recompute"


def _lower_priority(pid: int) -> None:
    """The lowest CPU priority for a background process, as a worker service for recomputations would
    be configured (systemd: Nice=19, CPUSchedulingPolicy=idle): nice 19 and the SCHED_IDLE policy, under
    which any other task that wakes up takes the CPU at once; and, on Linux with autogroup scheduling
    (kernel.sched_autogroup_enabled), nice 19 for its autogroup too. There the scheduler first shares
    the CPU between sessions and only then by priority inside each; every PostgreSQL backend is a
    session of its own (it calls setsid), so a reniced backend alone would still get as much CPU as the
    whole web tier. What the harness has no right to change, it leaves as it is."""
    for lower in (
        lambda: os.setpriority(os.PRIO_PROCESS, pid, 19),
        lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)),
    ):
        try:
            lower()
        except OSError:
            pass
    try:
        with open(f"/proc/{pid}/autogroup", "w") as fh:
            fh.write("19")
    except OSError:  # no autogroup on this kernel, or no right to change it
        pass


def _lower_recompute_sessions(stop: threading.Event) -> None:
    """The recomputation's database sessions (application_name RECOMPUTE_APP_NAME) at low CPU priority
    too: its bulk writes should not delay the API's queries. Needs the right to renice the server's
    processes (root, or the postgres user, on the database's machine); without it they run as they are.
    Runs in a thread with one connection of its own: starting psql every half second would fork this
    process, and each fork stalls the generator's event loop."""
    import psycopg

    seen: set[int] = set()
    with psycopg.connect(
        _db_url(), autocommit=True, application_name="psql"
    ) as conn:  # left out of the app's CPU account
        while not stop.is_set():
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [RECOMPUTE_APP_NAME]
            ).fetchall()
            for (pid,) in rows:
                if pid not in seen:
                    _lower_priority(pid)
                    seen.add(pid)
            stop.wait(0.25)


async def _recompute_loop(*, start: float, stop_at: float, runs: list[dict]) -> None:
    """`manage.py recompute` at low CPU priority, started again while at least 15 s of the window
    remain; the last one may end after the window, within RECOMPUTE_GRACE_SECONDS."""
    env = _env(
        RECOMMENDER_N_THREADS="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PGAPPNAME=RECOMPUTE_APP_NAME,
    )
    stop = threading.Event()
    lowering = threading.Thread(target=_lower_recompute_sessions, args=(stop,), daemon=True)
    lowering.start()
    try:
        await _recompute_runs(env=env, start=start, stop_at=stop_at, runs=runs)
    finally:
        stop.set()
        lowering.join(timeout=5)


async def _recompute_runs(*, env: dict, start: float, stop_at: float, runs: list[dict]) -> None:
    while time.monotonic() < stop_at - 15:
        started = time.monotonic()
        # as a worker service at low priority would run it: a session of its own, niced (the
        # process and its autogroup), like the database sessions it opens
        proc = await asyncio.create_subprocess_exec(
            "nice",
            "-n",
            "19",
            PY,
            "manage.py",
            "recompute",
            "--no-progress",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        _lower_priority(proc.pid)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(), timeout=stop_at + RECOMPUTE_GRACE_SECONDS - time.monotonic()
            )
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        except BaseException:  # cancelled: the run is being stopped
            proc.kill()
            raise
        lines = out.decode().splitlines()
        runs.append(
            {
                "started_s": round(started - start, 1),
                "seconds": round(time.monotonic() - started, 1),
                "exit": proc.returncode,
                "steps": [
                    line.split("  ")[0]
                    for line in lines
                    if " in " in line and ("succeeded" in line or "failed" in line)
                ],
                "stderr": err.decode()[-500:] if proc.returncode else "",
            }
        )


async def window(
    info: dict, *, rate: float, seconds: float, batch: int, batches_per_s: float, tag: str, recompute: bool
) -> dict:
    runs: list[dict] = []
    start = time.monotonic()
    recomputing = (
        asyncio.create_task(_recompute_loop(start=start, stop_at=start + seconds, runs=runs)) if recompute else None
    )
    reco, ingest = await asyncio.gather(
        recommendation_load(info, rate=rate, seconds=seconds, seed=7),
        _ingestion_load(info, tag=tag, batch=batch, per_second=batches_per_s, seconds=seconds, seed=7),
    )
    load_seconds = time.monotonic() - start
    if recomputing is not None:
        await recomputing
    return {
        "recommendations": reco,
        "ingestion": ingest,
        "recomputations": runs,
        "load_seconds": round(load_seconds, 1),
    }


def _stored_events(tag: str) -> set[str]:
    out = _manage("shell", "-c", STORED_CODE.format(prefix=json.dumps(tag + "-")))
    return set(json.loads(out.strip().splitlines()[-1]))


def _cpu_snapshot() -> tuple[float, float]:
    with open("/proc/stat") as fh:
        parts = [float(x) for x in fh.readline().split()[1:]]
    return sum(parts), parts[3] + parts[4]


def _cpu_seconds(pids) -> float:
    """User + system CPU seconds of these processes (those that have ended count nothing)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


class CpuAccount:
    """Where the CPU went during the window: the app (gunicorn), the database work it caused, this
    generator, the recomputation, and the whole machine (other jobs included)."""

    def __init__(self, servers: list):
        self.servers = servers

    def _pids(self):
        app = [s.proc.pid for s in self.servers]
        for s in self.servers:
            app += [
                int(p)
                for p in subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True).stdout.split()
            ]
        # the app's sessions (those of the recomputation, named, and of psql itself left out)
        db = [
            int(p)
            for p in _psql_query(
                f"SELECT pid FROM pg_stat_activity WHERE datname = '{urlparse(_db_url()).path.lstrip('/')}' "
                f"AND application_name NOT IN ('{RECOMPUTE_APP_NAME}', 'psql')"
            ).split()
        ]
        return app, db

    def __enter__(self):
        self.app, db = self._pids()
        self.db_before = {pid: _cpu_seconds([pid]) for pid in db}
        self.before = (
            _cpu_seconds(self.app),
            time.process_time(),
            resource.getrusage(resource.RUSAGE_CHILDREN),
            _cpu_snapshot(),
            time.monotonic(),
        )
        return self

    def __exit__(self, *exc):
        app, me, children, (total0, idle0), t0 = self.before
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        (total1, idle1), wall = _cpu_snapshot(), time.monotonic() - t0
        # sessions alive at both ends, and those opened since (a connection is renewed after DB_CONN_MAX_AGE)
        _, db_after = self._pids()
        db = sum(_cpu_seconds([pid]) - self.db_before.get(pid, 0) for pid in db_after)
        ticks = os.sysconf("SC_CLK_TCK")
        self.figures = {
            "wall_seconds": round(wall, 1),
            "app_gunicorn_cores": round((_cpu_seconds(self.app) - app) / wall, 3),
            "database_for_app_cores": round(db / wall, 3),
            "generator_cores": round((time.process_time() - me) / wall, 3),
            "recompute_python_cores": round(
                (kids.ru_utime + kids.ru_stime - children.ru_utime - children.ru_stime) / wall, 3
            ),
            "machine_busy_cores": round((total1 - total0 - (idle1 - idle0)) / ticks / wall, 3),
        }


def _psql_query(sql: str) -> str:
    url = urlparse(_db_url())
    return subprocess.run(
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
            "-Atc",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def run(
    *,
    seconds: float,
    rate: float,
    batch: int,
    batches_per_s: float,
    quick: bool,
    recompute: bool = True,
    reuse_db: bool = False,
) -> dict:
    started = time.monotonic()
    info = prepare(quick=quick, reuse_db=reuse_db)
    tag = f"load-{int(time.time())}"
    # what this process holds (the shop's tokens, the request plan) out of the collector's reach: a
    # full collection walking it would stall the generator and show as the server's latency
    gc.collect()
    gc.freeze()
    with Gunicorn() as app:
        # warm-up: each worker opens its database connection and loads its code paths
        asyncio.run(recommendation_load(info, rate=min(rate, 200), seconds=5, seed=1))
        capacity = asyncio.run(capacity_probe(info))
        asked = rate
        if capacity < CAPACITY_HEADROOM * asked:  # this machine cannot carry the asked rate: run at what it can
            rate = max(20.0, round(CAPACITY_SHARE * capacity))
        load0 = os.getloadavg()[0]
        with CpuAccount([app]) as cpu:
            figures = asyncio.run(
                window(
                    info,
                    rate=rate,
                    seconds=seconds,
                    batch=batch,
                    batches_per_s=batches_per_s,
                    tag=tag,
                    recompute=recompute,
                )
            )
    stored = _stored_events(tag)
    accepted = {f"{tag}-{b}-{i}" for b in figures["ingestion"].pop("accepted_batches") for i in range(batch)}
    reco, ingest, runs = figures["recommendations"], figures["ingestion"], figures["recomputations"]
    result = {
        "database": "postgresql",
        "customers": len(info["tokens"]),
        "setup_seconds": info["setup_seconds"],
        "window_seconds": seconds,
        "load_seconds": figures["load_seconds"],
        "recommendations": {
            "endpoint": "GET /api/customers/{id}/recommendations/?kind=…&limit=10",
            "auth": "customer token",
            **reco,
            "target_rate_per_s": asked,
            "capacity_per_s": capacity,
            "ran_at_share_of_capacity": rate != asked,
        },
        "ingestion": {
            "endpoint": "POST /api/events/",
            "auth": "API key",
            "batch": batch,
            "asked_batches_per_s": batches_per_s,
            **ingest,
            "events_accepted": len(accepted),
            "events_stored": len(stored),
            "accepted_but_missing": len(accepted - stored),
            "stored_but_not_accepted": len(stored - accepted),
            "events_per_s": round(len(accepted) / ingest["seconds_sending"], 1) if ingest["seconds_sending"] else None,
        },
        "recomputations": runs,
        "machine": {"cpus": os.cpu_count(), "load_average_before": round(load0, 2)},
        "cpu_during_window": cpu.figures,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    # Guarantees hold on any machine: a wrong answer, a refused or lost event, a failed recomputation
    # is a bug. Targets are speed (issue #7: 500/s, p99 < 50 ms): what a machine can carry.
    result["guarantees"] = {
        "no_wrong_answers": reco["wrong_answers"] == 0,
        "no_ingestion_errors": ingest["errors"] == 0,
        "every_accepted_event_stored": not (accepted - stored) and len(accepted) > 0,
        "recomputation_during_load": (not recompute) or bool(runs and all(r["exit"] == 0 for r in runs)),
    }
    result["targets"] = {
        "p99_under_50_ms": bool(reco["p99_ms"] is not None and reco["p99_ms"] < TARGET_P99_MS),
        "every_request_answered": reco["unanswered"] == 0,
        # against the asked rate: a window run at a share of a smaller capacity misses it
        "rate_achieved": bool(reco["achieved_rate_per_s"] and reco["achieved_rate_per_s"] >= 0.98 * asked),
    }
    result["guarantees_held"] = all(result["guarantees"].values())
    result["targets_met"] = all(result["targets"].values())
    return result


def _table(result: dict) -> str:
    reco, ingest = result["recommendations"], result["ingestion"]
    runs = result["recomputations"]
    lines = [
        f"# Load test {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {'guarantees held' if result['guarantees_held'] else 'GUARANTEE BROKEN'}, {'speed targets met' if result['targets_met'] else 'speed target missed'}",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| recommendations: this machine's capacity (closed loop) | {reco['capacity_per_s']} req/s | |",
        f"| recommendations asked / achieved rate | {reco['asked_rate_per_s']:.0f} / {reco['achieved_rate_per_s']} req/s"
        + (
            f" ({CAPACITY_SHARE:.0%} of the capacity: the machine cannot carry {reco['target_rate_per_s']:.0f})"
            if reco["ran_at_share_of_capacity"]
            else ""
        )
        + f" | {reco['target_rate_per_s']:.0f} |",
        f"| requests / wrong answers / unanswered (timed out) | {reco['requests']} / {reco['wrong_answers']} / {reco['unanswered']} | 0 / 0 |",
        f"| latency p50 / p90 / p99 / p99.9 / max | {reco['p50_ms']} / {reco['p90_ms']} / {reco['p99_ms']} / {reco['p999_ms']} / {reco['max_ms']} ms | p99 < 50 ms |",
        f"| ingestion batches / errors | {ingest['requests']} of {ingest['batch']} / {ingest['errors']} | 0 errors |",
        f"| ingestion latency p50 / p99 | {ingest['p50_ms']} / {ingest['p99_ms']} ms | |",
        f"| events accepted / stored / missing | {ingest['events_accepted']} / {ingest['events_stored']} / {ingest['accepted_but_missing']} | none missing |",
        f"| events per second | {ingest['events_per_s']} | |",
        f"| recomputations during the window | {len(runs)}: "
        + ", ".join(f"{r['seconds']} s (exit {r['exit']})" for r in runs)
        + " | ≥ 1, all succeed |",
        f"| generator's own lateness in sending, p99 / max (counted in the latencies) | {reco['send_lateness_p99_ms']} / {reco['send_lateness_max_ms']} ms | |",
        f"| CPU during the window, in cores (of {result['machine']['cpus']}): app / its database work / generator / recompute (python) / whole machine | "
        + " / ".join(
            str(result["cpu_during_window"][k])
            for k in (
                "app_gunicorn_cores",
                "database_for_app_cores",
                "generator_cores",
                "recompute_python_cores",
                "machine_busy_cores",
            )
        )
        + " | |",
        f"| whole run (setup, warm-up, window, checks) | {result['total_seconds']} s | |",
        "",
    ]
    return "\n".join(lines)


def _stop(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")  # so that gunicorn and the recomputation are ended too


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=500, help="recommendation requests per second")
    parser.add_argument("--batch", type=int, default=100, help="events per ingestion batch")
    parser.add_argument("--batches-per-s", type=float, default=4)
    parser.add_argument("--no-recompute", action="store_true", help="leave the recomputation out (to compare)")
    parser.add_argument(
        "--quick", action="store_true", help="a quarter-size shop and 15 s, for a smoke run (targets still checked)"
    )
    parser.add_argument(
        "--reuse-db", action="store_true", help="keep the shop of an earlier run (faster, while tuning)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 on a missed speed target too (not only a broken guarantee)"
    )
    args = parser.parse_args()
    seconds = min(args.seconds, 15) if args.quick else args.seconds
    result = run(
        seconds=seconds,
        rate=args.rate,
        batch=args.batch,
        batches_per_s=args.batches_per_s,
        quick=args.quick,
        recompute=not args.no_recompute,
        reuse_db=args.reuse_db,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "load.md").write_text(_table(result))
    print(_table(result))
    for name, held in result["guarantees"].items():
        print(f"{'PASS' if held else 'FAIL'} {name}")
    for name, met in result["targets"].items():
        print(f"{'MET   ' if met else 'MISSED'} target {name}")
    broken = [n for n, held in result["guarantees"].items() if not held]
    missed = [n for n, met in result["targets"].items() if not met]
    print(
        f"load: guarantees {'held' if not broken else 'BROKEN: ' + ', '.join(broken)}; "
        f"speed targets {'met' if not missed else 'MISSED: ' + ', '.join(missed)}"
    )
    # A broken guarantee always fails; a missed speed target fails only with --strict (a machine of
    # the web tier's own), since on a shared 2-core machine it measures the machine (docs/benchmarks.md).
    return 1 if broken or (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
