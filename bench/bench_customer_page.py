"""Server time of the customer page (/admin/profiles/customer/<id>/change/) on PostgreSQL, and the plan of
each of its reads.

Target (issue #14): under 0.5 s on the 1M-customer / 20M-event database. `--large` builds that database
(bench_segments' generator, then the whole pipeline: about 45 minutes on 2 cores) and measures it;
`BENCH_REUSE_DB=1` measures one built before (`BENCH_CUSTOMER_LARGE_DATABASE_URL`, default
`marketing_bench_customer_1m`). Without `--large` (as `make bench` runs it) the demo shop
(bench/load.py's `prepare`: `seed_demo`, `recompute`; `BENCH_CUSTOMER_DATABASE_URL`, default a
`marketing_bench_customer` database, dropped and created anew) gives the timings, and the plans show
that each read is an index lookup bounded by the page (20 events, 9 suggestions, 12 segment chips,
5 consent changes) rather than by the tables. A plan that scans one of the large tables (events,
suggestions, memberships, consent changes) fails the bench.

The page is rendered by Django's test client in one process (no network, the template and the reads
only), for 50 customers spread over the ids and for the customer with the most events, on their
first and fifth timeline page.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load

TARGET_MS = 500
LARGE_TABLES = ("profiles_event", "recommendations_recommendation", "segments_membership", "profiles_consentchange")

MEASURE_CODE = """
import json, statistics, time
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from profiles.models import Customer, Event

user = User.objects.filter(username="bench-page").first() or User.objects.create_superuser("bench-page", "b@example.com", None)
client = Client()
client.force_login(user)
ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
sample = ids[:: max(1, len(ids) // 50)][:50]
busiest = Event.objects.values("customer_id").annotate(n=Count("id")).order_by("-n").first()

def get(cid, page=1):
    t = time.perf_counter()
    resp = client.get(f"/admin/profiles/customer/{cid}/change/?page={page}", HTTP_HOST="localhost")
    ms = (time.perf_counter() - t) * 1000
    assert resp.status_code == 200, resp.status_code
    return ms

get(sample[0])  # warm-up: imports, templates
times = sorted(get(c) for c in sample)
busy = {p: statistics.median(get(busiest["customer_id"], p) for _ in range(5)) for p in (1, 5)}
with CaptureQueriesContext(connection) as queries:
    get(busiest["customer_id"])
plans = []
with connection.cursor() as cur:
    for q in queries.captured_queries:
        sql = q["sql"]
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        cur.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql)
        lines = [r[0] for r in cur.fetchall()]
        plans.append({"sql": sql[:160], "plan": lines})
print(json.dumps({
    "customers_sampled": len(sample),
    "p50_ms": round(times[len(times) // 2], 1),
    "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
    "max_ms": round(times[-1], 1),
    "busiest_customer_events": busiest["n"],
    "busiest_page1_ms": round(busy[1], 1),
    "busiest_page5_ms": round(busy[5], 1),
    "queries_per_page": len(queries.captured_queries),
    "plans": plans,
}))
"""


def _db_url() -> str:
    return os.environ.get("BENCH_CUSTOMER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench_customer")


def _large_db_url() -> str:
    return os.environ.get(
        "BENCH_CUSTOMER_LARGE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench_customer_1m"
    )


def build_large(db_url: str) -> dict:
    """The 1M-customer / 20M-event database: bench_segments' generator loaded with COPY, then the whole
    pipeline (profiles, segments, recommendations) as an operator runs it. About 45 minutes on 2 cores."""
    import time

    import bench_segments

    os.environ["BENCH_SEGMENTS_DATABASE_URL"] = db_url
    t = time.monotonic()
    bench_segments._fresh_db()
    loaded = json.loads(
        bench_segments._measured([str(Path(bench_segments.__file__)), "--load", "1000000"])["out"]
        .strip()
        .splitlines()[-1]
    )
    recompute = bench_segments._measured(["manage.py", "recompute", "--no-progress"])
    return {**loaded, "recompute_seconds": round(recompute["seconds"], 1), "build_seconds": round(time.monotonic() - t)}


def run(quick: bool = False, large: bool = False) -> dict:
    reuse = os.environ.get("BENCH_REUSE_DB") == "1"
    if large:
        # The database. Issuing the load test's customer tokens (load.prepare) would take hours at
        # this size and the page needs none: the database is built (or reused) and measured as it is.
        db_url = _large_db_url()
        info = {"setup_seconds": {} if reuse else build_large(db_url)}
    else:
        db_url = _db_url()
        info = load.prepare(quick=quick, db_url=db_url, reuse_db=reuse)
    out = json.loads(load._manage("shell", "-c", MEASURE_CODE, db_url=db_url).strip().splitlines()[-1])
    out["database"] = "1M customers / 20M events" if large else ("demo shop, quarter size" if quick else "demo shop")
    scans = sorted(
        {table for p in out["plans"] for line in p["plan"] for table in LARGE_TABLES if "Seq Scan on " + table in line}
    )
    out["large_tables_scanned"] = scans
    out["setup_seconds"] = info["setup_seconds"]
    out["met"] = {
        f"p95_under_{TARGET_MS}_ms": out["p95_ms"] < TARGET_MS,
        f"busiest_under_{TARGET_MS}_ms": max(out["busiest_page1_ms"], out["busiest_page5_ms"]) < TARGET_MS,
        "no_scan_of_a_large_table": not scans,
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv, large="--large" in sys.argv), indent=2))
