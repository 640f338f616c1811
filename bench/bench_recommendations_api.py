"""Latency of GET /api/customers/{id}/recommendations/ under load, on PostgreSQL behind gunicorn.

Target (recommender issue): p99 under 20 ms on loopback. The database is
`BENCH_RECO_DATABASE_URL` (default: a `marketing_bench_reco` database on the local server, apart
from the ingest bench's so the two can run side by side), dropped and created anew, seeded with
`manage.py seed_demo` and computed with `manage.py recompute`. The load generator runs a few
client threads over random customers and kinds, bounded in requests and in seconds, and
authenticates with a session cookie of a staff user holding the permission, as the admin's
frontend would (HTTP Basic would hash the password on every request).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(REPO))
PORT = 18124


def _db_url() -> str:
    return os.environ.get("BENCH_RECO_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench_reco")


def _env() -> dict:
    return {**os.environ, "DATABASE_URL": _db_url(), "SECRET_KEY": "bench-only", "DEBUG": "0", "HTTPS_ONLY": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "CELERY_BROKER_URL": "", "LOG_LEVEL": "WARNING"}


def _psql(sql: str) -> None:
    url = urlparse(_db_url())
    subprocess.run(["psql", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres",
                    "-d", "postgres", "-qc", sql], check=True, capture_output=True)


def _manage(*args: str) -> str:
    proc = subprocess.run([PY, "manage.py", *args], cwd=REPO, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


SESSION_CODE = """
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.auth.models import Permission
from django.contrib.sessions.backends.db import SessionStore
from profiles.models import Customer
User = get_user_model()
u = User.objects.filter(username="bench-reader").first() or User.objects.create_user("bench-reader", "r@example.com", "bench-pw", is_staff=True)
u.user_permissions.add(Permission.objects.get(content_type__app_label="recommendations", codename="view_recommendation"))
s = SessionStore()
s[SESSION_KEY] = str(u.pk); s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"; s[HASH_SESSION_KEY] = u.get_session_auth_hash()
s.create()
import json
print(json.dumps({"session": s.session_key, "customers": list(Customer.objects.values_list("external_id", flat=True))}))
"""


def _load(session: str, customers: list[str], *, requests: int, clients: int, seconds: float) -> dict:
    rng = random.Random(0)
    plan = [(rng.choice(customers), rng.choice(["product", "product", "activity", "post"])) for _ in range(requests)]
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline:
            with lock:
                if not plan:
                    return
                ext, kind = plan.pop()
            req = urllib.request.Request(f"http://127.0.0.1:{PORT}/api/customers/{ext}/recommendations/?kind={kind}&limit=10",
                                         headers={"Cookie": f"sessionid={session}"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    body = json.loads(resp.read())
                elapsed = time.perf_counter() - t
                with lock:
                    latencies.append(elapsed)
                    if not body["results"]:
                        errors.append(f"empty list for {ext}")
            except Exception as exc:
                with lock:
                    errors.append(str(exc))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    latencies.sort()

    def pct(p):
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else None

    return {"requests": len(latencies), "clients": clients, "seconds": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1) if wall else None,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0), "errors": len(errors),
            "first_error": errors[0] if errors else None}


def run(quick: bool = False) -> dict:
    name = urlparse(_db_url()).path.lstrip("/")
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _psql(f'CREATE DATABASE "{name}"')
    _manage("migrate", "--no-input", "-v0")
    t = time.monotonic()
    _manage("seed_demo", "--no-progress", *(["--scale", "0.25"] if quick else []))
    seed_s = time.monotonic() - t
    t = time.monotonic()
    out = _manage("recompute", "--no-progress")
    recompute_s = time.monotonic() - t
    info = json.loads(_manage("shell", "-c", SESSION_CODE).strip().splitlines()[-1])
    server = subprocess.Popen([str(Path(PY).parent / "gunicorn"), "config.wsgi", "-w", "2", "-b", f"127.0.0.1:{PORT}",
                               "--timeout", "60", "--log-level", "warning"], cwd=REPO, env=_env())
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/schema/", timeout=2)
                break
            except Exception:
                time.sleep(0.3)
        _load(info["session"], info["customers"], requests=200, clients=2, seconds=20)  # warm-up
        load = _load(info["session"], info["customers"], requests=1_000 if quick else 5_000, clients=2, seconds=60 if quick else 120)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "database": "postgresql", "customers": len(info["customers"]), "seed_seconds": round(seed_s, 1),
        "recompute_seconds": round(recompute_s, 1), "recompute_output": [line for line in out.splitlines() if line.startswith("recommendations")],
        "endpoint": "GET /api/customers/{id}/recommendations/?kind=…&limit=10", "load": load,
        "target_p99_ms": 20, "targets_met": {"p99_under_20_ms": bool(load["p99_ms"] is not None and load["p99_ms"] < 20 and load["errors"] == 0)},
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
