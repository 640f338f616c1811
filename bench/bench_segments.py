"""Profiles + segments benchmark on PostgreSQL: 10k, 100k and 1M customers (20 events each).

For each size a fresh database is filled straight from the demo generator with COPY (loading is
setup, not what is measured; the ingestion bench measures ingestion), then the pipeline's
`profiles` and `segments` steps run as an operator runs them (`manage.py recompute`), in a
process whose wall time and peak memory are measured. A rule segment over the whole population is
then refreshed and timed.

Targets (issue #3): the whole step on 1M customers / 20M events in at most 5 minutes with at most
4 GB peak memory; a rule segment over 1M customers refreshes in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # floors

EVENTS_PER_CUSTOMER = 20
TOUCH_EVERY = 100  # the incremental run's changed customers: every 100th, 1% (issue #19, path 3)


def _db_url() -> str:
    return os.environ.get("BENCH_SEGMENTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench_segments")


def _env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": _db_url(),
        "SECRET_KEY": "bench-only",
        "DEBUG": "0",
        "HTTPS_ONLY": "0",
        "CELERY_BROKER_URL": "",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def _fresh_db() -> None:
    url = urlparse(_db_url())
    name = url.path.lstrip("/")
    base = [
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
    ]
    subprocess.run([*base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True, capture_output=True)
    subprocess.run([*base, f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    subprocess.run([PY, "manage.py", "migrate", "--no-input", "-v0"], cwd=REPO, env=_env(), check=True)


def _measured(args: list[str]) -> dict:
    """Run a child Python process; return its wall time, peak RSS and stdout."""
    code = (
        "import resource, subprocess, sys, json, time;"
        "t=time.monotonic();"
        f"p=subprocess.run({[PY, *args]!r}, capture_output=True, text=True);"
        "el=time.monotonic()-t;"
        "ru=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': p.returncode, 'out': p.stdout[-20000:], 'err': p.stderr[-4000:], 'seconds': el, 'peak_rss_mb': ru.ru_maxrss/1024}))"
    )
    proc = subprocess.run([PY, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, check=True)
    info = json.loads(proc.stdout)
    if info["rc"] != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{info['err']}")
    return info


def load(n_customers: int) -> dict:
    """(In a child process.) Fill the database from the generator with COPY."""
    import django

    django.setup()
    import numpy as np
    import pandas as pd
    from django.db import connection, transaction

    from common.bulk import bulk_insert
    from profiles.demo import generate_shop
    from profiles.models import Customer, Event, Item

    started = time.monotonic()
    shop = generate_shop(
        seed=11,
        n_customers=n_customers,
        n_events=n_customers * EVENTS_PER_CUSTOMER,
        n_products=max(400, n_customers // 250),
        n_posts=max(200, n_customers // 500),
        chunk_size=1_000_000,
    )
    cust = shop.customers
    cust_id = pd.Series(np.arange(1, len(cust) + 1), index=cust["external_id"])
    items = shop.items
    item_id = pd.Series(
        np.arange(1, len(items) + 1), index=pd.MultiIndex.from_arrays([items["kind"], items["external_id"]])
    )
    with transaction.atomic():
        bulk_insert(
            Customer,
            pd.DataFrame(
                {
                    "id": cust_id.to_numpy(),
                    "external_id": cust["external_id"],
                    "name": cust["name"],
                    "email": cust["email"],
                    "time_zone": cust["time_zone"],
                    "consent_in_app": cust["consent_in_app"],
                    "consent_email": cust["consent_email"],
                    "consent_push": cust["consent_push"],
                    "attributes": cust["attributes"],
                    "created_at": cust["created_at"],
                }
            ),
            json_columns=("attributes",),
        )
        bulk_insert(
            Item,
            pd.DataFrame(
                {
                    "id": item_id.to_numpy(),
                    "kind": items["kind"],
                    "external_id": items["external_id"],
                    "title": items["title"],
                    "category": items["category"],
                    "price": items["price"].round(2),
                    "attributes": items["attributes"],
                    "active": items["active"],
                    "created_at": items["created_at"],
                }
            ),
            json_columns=("attributes",),
        )
    n_events = 0
    next_id = 1
    for chunk in shop.iter_events():
        keys = pd.MultiIndex.from_arrays([chunk["item_kind"].fillna(""), chunk["item"].fillna("")])
        frame = pd.DataFrame(
            {
                "id": np.arange(next_id, next_id + len(chunk)),
                "external_id": chunk["external_id"],
                "customer_id": cust_id.reindex(chunk["customer"]).to_numpy(),
                "item_id": pd.array(item_id.reindex(keys).to_numpy(), dtype="Int64"),
                "type": chunk["type"].to_numpy(),
                "value": chunk["value"].to_numpy(),
                "amount": chunk["amount"].round(2),
                "occurred_at": chunk["occurred_at"],
                "context": chunk["context"].map(lambda c: c or {}),
                "received_at": pd.Timestamp.now(tz="UTC"),
            }
        )
        next_id += len(chunk)
        with transaction.atomic():
            bulk_insert(Event, frame, json_columns=("context",))
        n_events += len(chunk)
    with connection.cursor() as cur:
        for model in (Customer, Item, Event):
            table = model._meta.db_table
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
        cur.execute("ANALYZE")
    return {
        "customers": len(cust),
        "items": len(items),
        "events": n_events,
        "load_seconds": round(time.monotonic() - started, 1),
    }


def rule_refresh() -> dict:
    """(In a child process.) Create a rule segment over the population and time its refresh."""
    import django

    django.setup()
    from segments.models import Segment
    from segments.rules import refresh_rule_memberships, rule_audience_size

    rule = {
        "all": [
            {"field": "lifecycle", "op": "in", "value": ["at-risk", "lapsed"]},
            {"not": {"event": {"type": "purchase", "within_days": 60}}},
            {"consent": "email"},
        ]
    }
    seg = Segment.objects.create(name="Win-back by email", kind="rule", rule=rule)
    t = time.monotonic()
    preview = rule_audience_size(rule)
    preview_s = time.monotonic() - t
    t = time.monotonic()
    size = refresh_rule_memberships(seg)
    refresh_s = time.monotonic() - t
    # the pipeline's next refresh of the same segment: every member stays, nobody joins
    t = time.monotonic()
    again = refresh_rule_memberships(seg)
    again_s = time.monotonic() - t
    floor_s, floor_size = _rule_floor(rule)
    from floors import floor_entry, profile_call

    met = refresh_s <= 5 and again == size == floor_size == preview
    profile = None
    if not met:
        other = Segment.objects.create(name="Win-back by email (profiled)", kind="rule", rule=rule)
        profile = profile_call("segments-rule-refresh", lambda: refresh_rule_memberships(other))
        other.delete()
    return {
        "rule_size": size,
        "preview_count_seconds": round(preview_s, 2),
        "refresh_seconds": round(refresh_s, 2),
        "refresh_again_seconds": round(again_s, 2),
        "floor_seconds": round(floor_s, 2),
        "preview_size": preview,
        "floors": [
            floor_entry(
                path="4. rule segment refresh (a new segment's first refresh)",
                floor_label="the rule's audience query + one INSERT ... SELECT of its members into an empty segment",
                floor=floor_s,
                ours=refresh_s,
                unit="s",
                higher_is_better=False,
                target="<= 5 s on 1M customers, members identical",
                met=met,
                profile=profile,
                note=f"{size:,} members; the next refresh (all stay) {again_s:.2f} s; load average {os.getloadavg()[0]:.1f}",
            )
        ],
    }


def _child_json(args: list[str]) -> dict:
    return json.loads(_measured([str(Path(__file__)), *args])["out"].strip().splitlines()[-1])


def _segments_mode(counts: dict) -> str:
    """How an incremental segments step ran, from its counts (segments.services.segments_compute)."""
    clustering, rules = counts.get("clustering", {}), counts.get("rules", {})
    if clustering.get("incremental"):
        few = rules.get("refreshed_for_a_few", {})
        return (
            f"{clustering.get('customers', 0):,} customers placed in the latest clustering, "
            f"{len(few)} of {rules.get('rule_segments', 0)} rule segments re-evaluated for a few customers"
        )
    return f"clustered everyone: {clustering.get('full_because', 'not asked to be incremental')}"


def _profiled_recompute(name: str, extra: list[str], header: str) -> str:
    """`manage.py recompute --steps profiles,segments` (plus `extra`) under cProfile, saved as
    bench/results/profiles/<name>.{pstats,txt}; returns the .txt path (floors.save_stats)."""
    from floors import save_stats

    stats = REPO / "bench" / "results" / "profiles" / f"{name}.pstats.tmp"
    stats.parent.mkdir(parents=True, exist_ok=True)
    _measured(
        ["-m", "cProfile", "-o", str(stats), "manage.py", "recompute", "--steps", "profiles,segments", *extra]
        + ["--no-progress"]
    )
    try:
        return save_stats(name, stats, header=header)
    finally:
        stats.unlink(missing_ok=True)


def _path3_floors(r: dict) -> list[dict]:
    """Path 3 (issue #19): the profiles and clustering steps, a full run and an incremental one,
    each beside reading the same events once. A missed target's profile: the run again under
    cProfile, after every measurement (the full run's costs another full run; new events first for
    the incremental one, so that it has work)."""
    from floors import floor_entry

    n = r["customers"]
    load = os.getloadavg()[0]
    full_met = n >= 1_000_000 and r["pipeline_seconds"] <= 120 and r["pipeline_peak_rss_mb"] <= 2048
    inc = r["incremental"]
    inc_met = n >= 1_000_000 and inc["seconds"] <= 10
    profile = full_profile = None
    if not inc_met:
        again = _child_json(["--touch"])  # new events again, so the run has work to profile
        profile = _profiled_recompute(
            "profiles-incremental",
            ["--incremental"],
            f"incremental profiles + segments, {n:,} customers, {again['customers']:,} with new events",
        )
    # after the incremental one: a full profiles run would make its segments step cluster everyone
    if not full_met:
        profile_full_header = f"full profiles + segments, {n:,} customers, {r['events']:,} events"
        full_profile = _profiled_recompute("profiles-full", [], profile_full_header)
    return [
        floor_entry(
            path=f"3. profiles + clustering, full run over {n:,} customers ({r['events']:,} events)",
            floor_label="the step's event query read once (binary COPY, bytes dropped)",
            floor=r["read_floor"]["seconds"],
            ours=r["pipeline_seconds"],
            unit="s",
            higher_is_better=False,
            target="<= 120 s and <= 2 GB on 1M customers",
            met=full_met,
            profile=full_profile,
            note=(
                f"peak {r['pipeline_peak_rss_mb']:,} MB; profiles {r['profiles_seconds']} s "
                f"(read/compute/write {r['profiles_breakdown']}), segments {r['segments_seconds']} s; "
                f"load average {load:.1f}"
            ),
        ),
        floor_entry(
            path=f"3. profiles + clustering, incremental after 1% of {n:,} customers had new events",
            floor_label="the same query over those customers read once (binary COPY)",
            floor=inc["read_floor"]["seconds"],
            ours=inc["seconds"],
            unit="s",
            higher_is_better=False,
            target="<= 10 s on 1M customers",
            met=inc_met,
            profile=profile,
            note=(
                f"{inc['profiles_customers']:,} profiles in {inc['profiles_seconds']} s, segments "
                f"{inc['segments_seconds']} s ({inc['segments_mode']}); peak {inc['peak_rss_mb']:,} MB"
            ),
        ),
    ]


def _rule_floor(rule) -> tuple[float, int]:
    """The floor of a rule refresh (issue #19, path 4): the rule's audience query and the write of
    its members, as one bare INSERT ... SELECT into a new, empty segment (no lock, no leavers, no size
    history). Returns its seconds and how many members it wrote."""
    from django.db import connection, transaction

    from segments.models import Segment
    from segments.rules import rule_queryset

    seg = Segment.objects.create(name="Win-back by email (floor)", kind="rule", rule=rule)
    sql, params = rule_queryset(rule).order_by().values_list("pk").query.sql_with_params()
    t = time.monotonic()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO segments_membership (segment_id, customer_id, since) "
            f"SELECT %s, audience.id, now() FROM ({sql}) audience (id)",
            [seg.pk, *params],
        )
        written = cur.rowcount
    elapsed = time.monotonic() - t
    # bench scaffolding, not a segment of the shop: the pipeline's next runs (the incremental one
    # measured next) would refresh it in full, as a rule segment never refreshed by the app
    seg.delete()
    return elapsed, written


def read_floor(touched_only: bool = False) -> dict:
    """(In a child process.) The floor of path 3 (issue #19): the events the profiles step reads, read
    once with a binary COPY of the step's own query (`profiles.services.compute.events_query`) over
    every customer (or, with `touched_only`, over the customers `touch` gave new events), the bytes
    counted and dropped: no parsing, no features, no writes."""
    import django

    django.setup()
    import numpy as np
    from django.db import connection

    from profiles.models import Customer
    from profiles.services.compute import events_query

    ids = np.fromiter(Customer.objects.order_by("id").values_list("id", flat=True).iterator(50_000), dtype=np.int64)
    only = ids[::TOUCH_EVERY] if touched_only else None
    qs, cols = events_query(int(ids[0]), int(ids[-1]), only)
    sql, params = qs.values_list(*cols).query.sql_with_params()
    started = time.monotonic()
    size = 0
    with connection.cursor() as cur:
        with cur.cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)", params) as copy:
            for block in copy:
                size += len(block)
    return {
        "seconds": round(time.monotonic() - started, 2),
        "bytes": size,
        "customers": len(only) if touched_only else len(ids),
    }


def touch() -> dict:
    """(In a child process.) New events for every TOUCH_EVERY-th customer (1%): two views and a
    purchase each, now, written with COPY as `load` writes (setup of the incremental run)."""
    import django

    django.setup()
    import numpy as np
    import pandas as pd
    from django.db import connection, transaction
    from django.db.models import Max

    from common.bulk import bulk_insert
    from profiles.models import Customer, Event, Item

    ids = np.fromiter(Customer.objects.order_by("id").values_list("id", flat=True).iterator(50_000), dtype=np.int64)
    touched = ids[::TOUCH_EVERY]
    item = Item.objects.filter(kind="product").order_by("id").values_list("id", flat=True).first()
    next_id = (Event.objects.aggregate(m=Max("id"))["m"] or 0) + 1
    n = len(touched) * 3
    now = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame(
        {
            "id": np.arange(next_id, next_id + n),
            "external_id": [f"touch-{i}" for i in range(next_id, next_id + n)],
            "customer_id": np.repeat(touched, 3),
            "item_id": item,
            "type": np.tile(["view", "view", "purchase"], len(touched)),
            "value": 1.0,
            "amount": np.tile([0.0, 0.0, 19.9], len(touched)),
            "occurred_at": now,
            "context": [{} for _ in range(n)],
            "received_at": now,
        }
    )
    with transaction.atomic():
        bulk_insert(Event, frame, json_columns=("context",))
    with connection.cursor() as cur:
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('profiles_event', 'id'), (SELECT MAX(id) FROM profiles_event))"
        )
        cur.execute("ANALYZE profiles_event")
    return {"customers": len(touched), "events": n}


def step_figures() -> dict:
    import django

    django.setup()
    from pipeline.models import PipelineStep

    return {s.name: {"seconds": s.duration_s, "counts": s.counts} for s in PipelineStep.objects.order_by("id")}


def run(quick: bool = False, sizes: list[int] | None = None) -> dict:
    sizes = sizes or ([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000])
    out: dict = {"database": "postgresql", "events_per_customer": EVENTS_PER_CUSTOMER, "runs": []}
    for n in sizes:
        _fresh_db()
        loaded = json.loads(_measured([str(Path(__file__)), "--load", str(n)])["out"].strip().splitlines()[-1])
        step = _measured(["manage.py", "recompute", "--steps", "profiles,segments", "--no-progress"])
        figures = json.loads(_measured([str(Path(__file__)), "--steps"])["out"].strip().splitlines()[-1])
        rule = json.loads(_measured([str(Path(__file__)), "--rule"])["out"].strip().splitlines()[-1])
        floor = _child_json(["--read-floor"])
        touched = _child_json(["--touch"])
        inc = _measured(["manage.py", "recompute", "--steps", "profiles,segments", "--incremental", "--no-progress"])
        inc_figures = _child_json(["--steps"])
        inc_floor = _child_json(["--read-floor", "--touched"])
        out["runs"].append(
            {
                "customers": n,
                "events": loaded["events"],
                "load_seconds": loaded["load_seconds"],
                "pipeline_seconds": round(step["seconds"], 1),
                "pipeline_peak_rss_mb": round(step["peak_rss_mb"]),
                "profiles_seconds": figures.get("profiles", {}).get("seconds"),
                "profiles_breakdown": figures.get("profiles", {}).get("counts", {}).get("seconds"),
                # issue #16: the predictions' fit and the category affinity's, inside the profiles step
                "predictions_seconds": (figures.get("profiles", {}).get("counts", {}).get("predictions") or {}).get(
                    "seconds"
                ),
                "affinity_seconds": (figures.get("profiles", {}).get("counts", {}).get("affinity") or {}).get(
                    "seconds"
                ),
                "segments_seconds": figures.get("segments", {}).get("seconds"),
                "chosen_k": figures.get("segments", {}).get("counts", {}).get("clustering", {}).get("chosen_k"),
                "rule_segment": rule,
                "read_floor": floor,
                "incremental": {
                    "touched_customers": touched["customers"],
                    "new_events": touched["events"],
                    "seconds": round(inc["seconds"], 1),
                    "peak_rss_mb": round(inc["peak_rss_mb"]),
                    "profiles_seconds": inc_figures.get("profiles", {}).get("seconds"),
                    "profiles_customers": inc_figures.get("profiles", {}).get("counts", {}).get("customers"),
                    "segments_seconds": inc_figures.get("segments", {}).get("seconds"),
                    "segments_mode": _segments_mode(inc_figures.get("segments", {}).get("counts", {})),
                    "read_floor": inc_floor,
                },
            }
        )
    # issue #19: the floors rows of the largest size (the 1M one on a full run)
    out["floors"] = _path3_floors(out["runs"][-1]) + out["runs"][-1]["rule_segment"].pop("floors")
    for r in out["runs"]:
        r["rule_segment"].pop("floors", None)
    largest = out["runs"][-1]
    out["targets_met"] = {
        "1M_within_5_min": largest["customers"] == 1_000_000 and largest["pipeline_seconds"] <= 300,
        "peak_under_4GB": largest["pipeline_peak_rss_mb"] <= 4096,
        "rule_refresh_in_seconds": largest["rule_segment"]["refresh_seconds"] <= 10,
        "rule_refresh_1M_within_5_s": largest["customers"] == 1_000_000
        and largest["rule_segment"]["refresh_seconds"] <= 5,
    }
    return out


if __name__ == "__main__":
    if "--load" in sys.argv:
        print(json.dumps(load(int(sys.argv[sys.argv.index("--load") + 1]))))
    elif "--rule" in sys.argv:
        print(json.dumps(rule_refresh()))
    elif "--read-floor" in sys.argv:
        print(json.dumps(read_floor(touched_only="--touched" in sys.argv)))
    elif "--touch" in sys.argv:
        print(json.dumps(touch()))
    elif "--steps" in sys.argv:
        print(json.dumps(step_figures(), default=str))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
