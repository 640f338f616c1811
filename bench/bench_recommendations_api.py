"""Latency of GET /api/customers/{id}/recommendations/ on PostgreSQL behind gunicorn, as the shop's frontend calls it.

Target (recommender issue): p99 under 20 ms from a load generator on loopback. The database is
`BENCH_RECO_DATABASE_URL` (default: a `marketing_bench_reco` database on the local server, apart
from the other benches' so they can run side by side), dropped and created anew, seeded with
`manage.py seed_demo`, computed with `manage.py recompute` and given the shop's credentials, by
bench/load.py's `prepare`. The app is served as in production (`gunicorn -c gunicorn.conf.py`).

Each request carries the customer's own token (`Authorization: Customer …`), which is what the
frontend sends (the shop's backend obtained it with its API key), over random customers and kinds.
The generator is bench/load.py's open-loop one: requests leave at a fixed rate whatever the server
does, and each latency is counted from the moment its request was due, so a stall is measured
rather than hidden (no coordinated omission). It runs 100, 250 and 500 requests a second after a
warm-up, 30 s each (10 s with --quick); the target is checked at every rate. Nothing else runs
on the server meanwhile (bench/load.py adds ingestion and a recomputation).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load

HERE = Path(__file__).resolve().parent

PORT = 18124
RATES = (100, 250, 500)
TARGET_P99_MS = 20


def _db_url() -> str:
    return os.environ.get("BENCH_RECO_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench_reco")


FIGURES = (
    "requests",
    "errors",
    "achieved_rate_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "first_errors",
)


def _steps(info: dict, seconds: int, seed: int, floor_body: Path | None = None) -> list[dict]:
    """Our endpoint at each rate; with `floor_body`, the floor app (bench/floor_api_app.py) instead,
    answering that body to the same requests."""
    steps = []
    server = (
        load.Gunicorn(
            port=PORT,
            db_url=_db_url(),
            app="floor_api_app:application",
            chdir=HERE,
            ready_path="/",
            FLOOR_BODY_FILE=str(floor_body),
        )
        if floor_body
        else load.Gunicorn(port=PORT, db_url=_db_url())
    )
    verify = floor_body is None
    with server:
        asyncio.run(load.recommendation_load(info, rate=100, seconds=5, seed=seed, port=PORT, verify=verify))
        for i, rate in enumerate(RATES):
            figures = asyncio.run(
                load.recommendation_load(info, rate=rate, seconds=seconds, seed=seed + 10 + i, port=PORT, verify=verify)
            )
            steps.append({"rate_per_s": rate, **{k: figures[k] for k in FIGURES}})
    return steps


def _sample_body(info: dict, path: Path) -> int:
    """One real answer of our endpoint (a customer's ten products) saved for the floor; its size."""
    customer = sorted(info["tokens"])[0]
    with load.Gunicorn(port=PORT, db_url=_db_url()):
        request = urllib.request.Request(
            f"http://127.0.0.1:{PORT}/api/customers/{customer}/recommendations/?kind=product&limit=10",
            headers={"Authorization": f"Customer {info['tokens'][customer]}"},
        )
        body = urllib.request.urlopen(request, timeout=10).read()
    path.write_bytes(body)
    return len(body)


def _profile_view(tokens_file: str, n: int = 600) -> None:
    """(In a child process on the bench's database.) `n` requests to our view in-process, through
    Django's test client with the customers' tokens, under cProfile: where a request's time goes
    when the target is missed (no server, no network: the view, the middleware, the database)."""
    import cProfile
    import random

    import django

    sys.path.insert(0, str(load.REPO))
    django.setup()
    from django.test import Client
    from floors import save_stats

    tokens = json.loads(Path(tokens_file).read_text())
    rng = random.Random(5)
    customers = sorted(tokens)
    plan = [(c, rng.choice(load.KINDS)) for c in (rng.choice(customers) for _ in range(n + 50))]
    client = Client(HTTP_HOST="127.0.0.1")

    def ask(customer, kind):
        answer = client.get(
            f"/api/customers/{customer}/recommendations/",
            {"kind": kind, "limit": 10},
            HTTP_AUTHORIZATION=f"Customer {tokens[customer]}",
        )
        assert answer.status_code == 200, answer.content[:200]

    for customer, kind in plan[:50]:  # warm-up: connections, prepared statement, caches
        ask(customer, kind)
    prof = cProfile.Profile()
    prof.enable()
    for customer, kind in plan[50:]:
        ask(customer, kind)
    prof.disable()
    print(save_stats("recommendations-api-view", prof, header=f"{n} requests in-process (Django test client)"))


def _profile(info: dict) -> str:
    """Run `_profile_view` in a child on the bench's database; the profile's .txt path."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.json"
        tokens.write_text(json.dumps(info["tokens"]))
        proc = subprocess.run(
            [sys.executable, str(Path(__file__)), "--profile-view", str(tokens)],
            cwd=load.REPO,
            env={**load._env(_db_url()), "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        return f"(profile failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})"
    return proc.stdout.strip().splitlines()[-1]


def _floors(steps: list[dict], floor: list[dict], info: dict) -> list[dict]:
    from floors import floor_entry

    rows = []
    profile = None
    for ours, base in zip(steps, floor, strict=True):
        p99, floor_p99 = ours["p99_ms"], base["p99_ms"]
        met = bool(
            p99 is not None
            and floor_p99 is not None
            and p99 <= 2 * floor_p99
            and p99 <= TARGET_P99_MS
            and ours["errors"] == 0
        )
        rows.append(
            floor_entry(
                path=f"5. GET /api/customers/{{id}}/recommendations/ at {ours['rate_per_s']}/s, p99",
                floor_label="a constant JSON body (a real answer) through the same gunicorn configuration",
                floor=floor_p99 or 0.0,
                ours=p99 or 0.0,
                unit="ms",
                higher_is_better=False,
                target=f"<= 2x the floor's p99 and <= {TARGET_P99_MS} ms",
                met=met,
                profile=None if met else (profile := profile or _profile(info)),
                note=(
                    f"p50 {ours['p50_ms']} ms (floor {base['p50_ms']}), errors {ours['errors']}, "
                    f"load average {os.getloadavg()[0]:.1f}"
                ),
            )
        )
    return rows


def run(quick: bool = False) -> dict:
    info = load.prepare(quick=quick, db_url=_db_url())
    seconds = 10 if quick else 30
    steps = _steps(info, seconds, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "answer.json"
        body_bytes = _sample_body(info, body)
        floor_steps = _steps(info, seconds, seed=1, floor_body=body)
    # the same load while an experiment runs: every request asks the router, which finds the customer's
    # variant (one more indexed lookup), and half the customers are served from a variant's run
    load._manage("seed_demo_experiment", "--days", "2", "--baseline-days", "1", "--visitors", "100", db_url=_db_url())
    steps_experiment = _steps(info, seconds, seed=101)
    met = {
        f"p99_under_{TARGET_P99_MS}_ms_at_{s['rate_per_s']}_per_s{suffix}": bool(
            s["p99_ms"] is not None and s["p99_ms"] < TARGET_P99_MS and s["errors"] == 0
        )
        for suffix, group in (("", steps), ("_experiment_running", steps_experiment))
        for s in group
    }
    return {
        "database": "postgresql",
        "customers": len(info["tokens"]),
        "setup_seconds": info["setup_seconds"],
        "recompute_output": info.get("first_recompute_output"),
        "server": "gunicorn -c gunicorn.conf.py",
        "endpoint": "GET /api/customers/{id}/recommendations/?kind=…&limit=10",
        "auth": "customer token (Authorization: Customer …)",
        "generator": "open loop, fixed rate, latency from the scheduled send time",
        "seconds_per_rate": seconds,
        "steps": steps,
        "steps_with_an_experiment_running": steps_experiment,
        # issue #19, path 5: the same requests at the same rates to a constant answer of the same size
        "floor_body_bytes": body_bytes,
        "floor_steps": floor_steps,
        "floors": _floors(steps, floor_steps, info),
        "target_p99_ms": TARGET_P99_MS,
        "targets_met": met,
    }


if __name__ == "__main__":
    if "--profile-view" in sys.argv:
        _profile_view(sys.argv[sys.argv.index("--profile-view") + 1])
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
