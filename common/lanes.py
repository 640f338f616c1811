"""Bulk writes at a lower CPU priority than the requests a shop's customers wait for.

A batch of events costs tens of milliseconds of CPU in one burst (validation and the write); the
frontend's reads (suggestions) cost about two. On a server short of cores, each burst took a core
from the reads and their tail latency followed (docs/benchmarks.md, "Load"). So the batch
endpoints run their work in a few threads of each server process whose nice value is
BULK_WRITE_NICE (Linux sets it per thread): when the CPU is free they run at full speed, when reads
are waiting the scheduler serves those first. The request thread waits for the result, so the
answer, its status and its errors are the same as when the work runs in the request itself
(BULK_WRITE_NICE = 0, or a platform without per-thread priorities).

Each lane thread holds its own database connection, opened and recycled as a request's would be
(close_old_connections before and after each job).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import close_old_connections, connections

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_executor_threads = 0


def _nice() -> int:
    return int(settings.BULK_WRITE_NICE or 0)


def _lower_this_thread() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _nice())
    except (OSError, AttributeError):  # not Linux, or not allowed: the lane still works, at normal priority
        log.warning("could not lower the bulk-write threads' CPU priority", exc_info=True)


def _lane() -> ThreadPoolExecutor:
    global _executor, _executor_pid, _executor_threads
    with _lock:
        if _executor is None or _executor_pid != os.getpid():  # a forked server process makes its own
            _executor_threads = max(1, int(settings.BULK_WRITE_THREADS))
            _executor = ThreadPoolExecutor(
                max_workers=_executor_threads, thread_name_prefix="bulk-write", initializer=_lower_this_thread
            )
            _executor_pid = os.getpid()
        return _executor


def _job(fn: Callable[..., T], args, kwargs) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def run_bulk(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """fn(*args, **kwargs) in a low-priority bulk-write thread, waiting for its result (or its exception)."""
    if _nice() <= 0:
        return fn(*args, **kwargs)
    return _lane().submit(_job, fn, args, kwargs).result()


def shutdown() -> None:
    """Close every lane thread's database connections and stop the threads (a new lane starts on
    the next batch). One closing job per thread: a barrier holds each until all run, so no thread
    takes two."""
    global _executor
    with _lock:
        executor, n, _executor = _executor, _executor_threads, None
    if executor is None:
        return
    barrier = threading.Barrier(n)

    def close() -> None:
        try:
            barrier.wait(timeout=10)
        finally:
            connections.close_all()

    for future in [executor.submit(close) for _ in range(n)]:
        future.exception()
    executor.shutdown(wait=True)


def lane_priority() -> int | None:
    """The nice value the lane's threads run at (for tests and diagnostics); None when work runs inline."""
    if _nice() <= 0:
        return None
    return _lane().submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
