"""Start a real Celery worker process for a test, on a queue of its own.

`real_worker(pause_at=...)` starts the worker through this module (`celery -A tests.celery_worker`),
which installs a pause point in the worker's pool process: when the pipeline reaches it, the
worker writes the point's name to `pause_file` and sleeps, so a fault test can kill it at a known
place (tests/test_faults.py). Production code carries no test hook. Points:

- ``insert:<app_label.Model>``: right after the recomputation bulk-inserts rows of that model
  (inside the step's transaction where the step writes in one, e.g. profiles, memberships);
- ``progress:<step>:<fraction>``: once the step reports at least that fraction of progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from config.celery import app  # the app `celery -A tests.celery_worker` finds

REPO = Path(__file__).resolve().parent.parent


def _pause(point: str, pause_file: str) -> None:
    print(f"[fault test] paused at {point} in pid {os.getpid()}", file=sys.stderr, flush=True)
    Path(pause_file).write_text(f"{point}\n{os.getpid()}\n")
    time.sleep(600)  # until the test kills the worker


def install_pause_point(point: str, pause_file: str) -> None:
    """Make this process pause at `point` (see the module docstring)."""
    kind, _, target = point.partition(":")
    if kind == "insert":
        import common.bulk
        import profiles.services.compute
        import recommendations.services
        import segments.services

        original = common.bulk.bulk_insert

        def bulk_insert(model, frame, **kwargs):
            written = original(model, frame, **kwargs)
            if model._meta.label == target:
                _pause(point, pause_file)
            return written

        for module in (common.bulk, profiles.services.compute, segments.services, recommendations.services):
            module.bulk_insert = bulk_insert
    elif kind == "progress":
        from pipeline import services as pipeline

        step_name, _, fraction = target.partition(":")
        original_call = pipeline.Progress.__call__

        def call(self, value: float, message: str = "") -> None:
            original_call(self, value, message)
            if self.step.name == step_name and value >= float(fraction):
                _pause(point, pause_file)

        pipeline.Progress.__call__ = call
    else:
        raise ValueError(f"unknown pause point {point!r}")


if os.environ.get("FAULT_PAUSE_AT"):
    from celery.signals import worker_process_init

    @worker_process_init.connect
    def _install_pause_point(**kwargs):
        install_pause_point(os.environ["FAULT_PAUSE_AT"], os.environ["FAULT_PAUSE_FILE"])


@contextmanager
def real_worker(
    *,
    env_overrides: dict | None = None,
    concurrency: int = 1,
    pool: str = "prefork",
    pause_at: str | None = None,
    pause_file: str | Path | None = None,
):
    """Yield (queue name, process) for a worker that consumes only that queue.

    The worker is its own process group: `os.killpg(proc.pid, signal.SIGKILL)` kills it with its
    pool processes, as a machine losing power or the OOM killer would.
    """
    queue = f"test-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", **(env_overrides or {})}
    env.pop("FAULT_PAUSE_AT", None)
    target = "config"
    if pause_at:
        if pool != "prefork" or not pause_file:
            raise ValueError("a pause point needs the prefork pool and a pause_file")
        env.update(FAULT_PAUSE_AT=pause_at, FAULT_PAUSE_FILE=str(pause_file))
        target = "tests.celery_worker"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        target,
        "worker",
        "--loglevel=INFO",
        "-Q",
        queue,
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        "-n",
        f"{queue}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    # Drain the worker's output so a chatty worker never blocks on a full pipe; keep the tail.
    proc.output_tail = tail = deque(maxlen=300)
    drain = threading.Thread(target=lambda: tail.extend(proc.stdout), name=f"drain-{queue}", daemon=True)
    drain.start()
    was_eager = app.conf.task_always_eager
    # Configured through Django settings with the CELERY_ namespace, so the override uses that key.
    app.conf.update(CELERY_TASK_ALWAYS_EAGER=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=1.0)
            if replies:
                break
            if proc.poll() is not None:
                drain.join(timeout=5)
                raise RuntimeError("the worker exited early:\n" + "".join(tail))
        else:
            raise RuntimeError("the worker did not answer a ping within 60 s")
        yield queue, proc
    finally:
        app.conf.update(CELERY_TASK_ALWAYS_EAGER=was_eager)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
