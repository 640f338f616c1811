"""Bench only (issue #19): CPU per REST batch of events, in-process (run by bench_ingest.py).

    python bench/rest_cpu.py BODIES.json [--profile NAME]

BODIES.json is a list of JSON bodies (each a batch). Each body goes through the real view
(`EventBatchView`, an operator authenticated, throttles as configured) and `time.process_time()`
is read around the view: the whole process's CPU, the lane thread's included (the bench sets
BULK_WRITE_NICE=0 so the work runs in the request's thread and a busy machine does not stretch it).
The first WARMUP bodies are not counted. With --profile, ours only, under cProfile. Then the same again with the plain path switched off (the
frame path alone, as before issue #19), and the floor (bench/floor_ingest_app.store: parse and
COPY) on the same bodies after emptying the events table. Prints a JSON dict of medians and p90s
in milliseconds.
"""

from __future__ import annotations

import cProfile
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
WARMUP = 10  # at most a third of the bodies


def _ms(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "median_ms": round(1000 * times[len(times) // 2], 2),
        "p90_ms": round(1000 * times[int(len(times) * 0.9)], 2),
        "batches": len(times),
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import floor_ingest_app
    from django.contrib.auth.models import User
    from django.db import connection
    from rest_framework.test import APIRequestFactory, force_authenticate

    from profiles.api import EventBatchView
    from profiles.services import events as events_module

    bodies = [b.encode() for b in json.loads(Path(sys.argv[1]).read_text())]
    profile_name = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else None
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser("bench", "b@x.org", "pw")
    view = EventBatchView.as_view()
    factory = APIRequestFactory()

    def ours(body: bytes) -> float:
        request = factory.post("/api/events/", data=body, content_type="application/json")
        force_authenticate(request, user=user)
        started = time.process_time()
        response = view(request)
        response.render()
        spent = time.process_time() - started
        if response.status_code != 201:
            raise RuntimeError(f"the view answered {response.status_code}: {response.content[:500]!r}")
        return spent

    def empty_events() -> None:
        with connection.cursor() as cur:
            cur.execute("TRUNCATE profiles_event")

    warmup = min(WARMUP, len(bodies) // 3)

    def measure(fn) -> list[float]:
        for body in bodies[:warmup]:
            fn(body)
        return [fn(body) for body in bodies[warmup:]]

    out: dict = {"rows_per_batch": len(json.loads(bodies[0]))}
    empty_events()
    profiler = cProfile.Profile() if profile_name else None
    if profiler:
        profiler.enable()
    out["ours"] = _ms(measure(ours))
    if profiler:
        profiler.disable()
        from floors import save_stats

        out["profile"] = save_stats(profile_name, profiler, header="CPU per REST batch, in-process (the view)")
        print(json.dumps(out))  # a profiling run measures ours only
        return
    empty_events()
    limit, events_module.PLAIN_MAX_ROWS = events_module.PLAIN_MAX_ROWS, -1  # the frame path alone
    try:
        out["frame_path_alone"] = _ms(measure(ours))
    finally:
        events_module.PLAIN_MAX_ROWS = limit
    empty_events()
    os.environ["FLOOR_DATABASE_URL"] = os.environ["DATABASE_URL"]

    def floor(body: bytes) -> float:
        started = time.process_time()
        floor_ingest_app.store(body)
        return time.process_time() - started

    out["floor"] = _ms(measure(floor))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
