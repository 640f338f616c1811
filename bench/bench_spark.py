"""The two compute backends side by side (issue #15): docs/spark.md, "Local or Spark: the crossover".

For each size (100k and 1M generated customers, 20 events each; ``quick``: 10k and 100k) a fresh
PostgreSQL database is filled from the demo generator with COPY (``bench_segments.load``: setup,
not measured), then the pipeline's profiles, segments and recommendations steps run once on the
local backend and once on Spark (``local[2]``: the driver and one JVM on this machine), each backend
in its own process, as `manage.py recompute` runs them. Per step: the seconds recorded on the
pipeline's step, and per run the peak memory of the Python process (the driver) and of the JVM
(VmHWM of the Spark gateway's process, where Spark ran inside the worker).

The growth figures divide the larger size's time by the smaller's (10× the customers).
Run as ``python bench/bench_spark.py [--quick]`` or ``bench/run.py --only spark``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
for path in (REPO, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_segments  # noqa: E402  (the bench's database filling)

STEPS = ("profiles", "segments", "recommendations")
BACKENDS = ("local", "spark")


def _db_url() -> str:
    return os.environ.get("BENCH_SPARK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketing_bench_spark")


def _env(backend: str | None = None) -> dict:
    env = {**bench_segments._env(), "DATABASE_URL": _db_url()}
    if backend:
        env["PIPELINE_BACKEND"] = backend
    return env


def _child(args: list[str], backend: str | None = None) -> dict:
    proc = subprocess.run([PY, str(Path(__file__)), *args], cwd=REPO, env=_env(backend), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} ({backend or 'setup'}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _jvm_peak_mb() -> float | None:
    """Peak resident memory of the Spark gateway's JVM (classic local session only)."""
    from common.spark import _session

    proc = getattr(getattr(getattr(_session, "sparkContext", None), "_gateway", None), "proc", None)
    if proc is None:
        return None
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except OSError:
        return None
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(kb) / 1024 if kb else None


def pipeline() -> dict:
    """(In a child process, PIPELINE_BACKEND set.) One pipeline run over the steps; its figures."""
    import django

    django.setup()
    from django.conf import settings

    from pipeline.models import RunStatus
    from pipeline.services import pipeline_execute, pipeline_start

    started = time.monotonic()
    run = pipeline_start(trigger="shell", steps=list(STEPS))
    run = pipeline_execute(run=run, step_params=run.step_params)
    wall = time.monotonic() - started
    steps = {
        s.name: {"seconds": s.duration_s, "backend": s.backend, "status": s.status}
        for s in run.step_runs.order_by("id")
    }
    return {
        "backend": settings.PIPELINE_BACKEND,
        "status": run.status,
        "error": run.error if run.status != RunStatus.SUCCEEDED else "",
        "seconds": round(wall, 1),
        "steps": steps,
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "jvm_peak_rss_mb": _jvm_peak_mb() if settings.PIPELINE_BACKEND == "spark" else None,
    }


def run(quick: bool = False) -> dict:
    sizes = [10_000, 100_000] if quick else [100_000, 1_000_000]
    out: dict = {
        "database": "postgresql",
        "spark_master": "local[2]",
        # the Spark settings in force (docs/configuration.md's defaults unless the environment says)
        "spark_driver_memory": os.environ.get("SPARK_DRIVER_MEMORY", "2g"),
        "spark_shuffle_partitions": os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8"),
        "sizes": [],
    }
    for n in sizes:
        os.environ["BENCH_SEGMENTS_DATABASE_URL"] = _db_url()
        bench_segments._fresh_db()
        loaded = _child(["--load", str(n)])
        row = {"customers": n, "events": loaded["events"], "backends": {}}
        for backend in BACKENDS:
            row["backends"][backend] = _child(["--pipeline"], backend)
        out["sizes"].append(row)
    small, large = out["sizes"][0], out["sizes"][-1]
    out["growth_10x_customers"] = {
        backend: {
            step: _ratio(large["backends"][backend]["steps"], small["backends"][backend]["steps"], step)
            for step in STEPS
        }
        for backend in BACKENDS
    }
    out["spark_over_local"] = {
        row["customers"]: {
            step: _ratio(row["backends"]["spark"]["steps"], row["backends"]["local"]["steps"], step) for step in STEPS
        }
        for row in out["sizes"]
    }
    return out


def _ratio(a: dict, b: dict, step: str) -> float | None:
    x, y = (a.get(step) or {}).get("seconds"), (b.get(step) or {}).get("seconds")
    return round(x / y, 2) if x and y else None


if __name__ == "__main__":
    if "--load" in sys.argv:
        print(json.dumps(bench_segments.load(int(sys.argv[sys.argv.index("--load") + 1]))))
    elif "--pipeline" in sys.argv:
        print(json.dumps(pipeline(), default=str))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2, default=str))
