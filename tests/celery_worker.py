"""Start a real Celery worker process for a test, on a queue of its own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def real_worker(*, env_overrides: dict | None = None, concurrency: int = 1, pool: str = "prefork"):
    """Yield (queue name, process) for a worker that consumes only that queue."""
    from config.celery import app

    queue = f"test-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", **(env_overrides or {})}
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "-Q", queue,
        f"--concurrency={concurrency}", f"--pool={pool}", "-n", f"{queue}@%h", "--without-gossip", "--without-mingle",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
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
                raise RuntimeError(f"the worker exited early:\n{proc.stdout.read()}")
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
