"""gunicorn settings: `gunicorn -c gunicorn.conf.py config.wsgi` (the load test serves the app this way).

Chosen for a small machine (2 cores) that also runs PostgreSQL and the recomputations, measured
with bench/load.py (docs/benchmarks.md, "Load"):

- 3 worker processes: one per core and one more, so that a worker busy with a batch of events still
  leaves one free per core (2 and 4 measured worse); more only add context switches and database
  connections when the database and the pipeline need the same cores.
- `gthread` workers with 2 threads each, so one slow request (a batch of events being written)
  does not hold up the quick ones (suggestions) behind it in the same process, and HTTP keep-alive,
  which the plain `sync` worker does not offer: a frontend or proxy that reuses its connections
  spares a TCP handshake per request on both sides. Each thread holds its own database connection
  (DB_CONN_MAX_AGE), so a server uses up to workers × threads connections.
- The app preloaded in the master and its objects frozen out of the garbage collector's reach
  (`when_ready`), which took 100-200 ms pauses out of every worker.

Every value can be overridden from the environment (GUNICORN_WORKERS, GUNICORN_THREADS, ...) or on
the command line (`-w 4`), which gunicorn reads after this file; size workers to the cores the web
tier really has.
"""

import gc
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# seconds an idle kept-alive connection stays open (gunicorn's default, 2, is short for a frontend)
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# the workers' heartbeat files in memory, not on a disk that may stall under load
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning")
accesslog = (
    os.environ.get("GUNICORN_ACCESS_LOG") or None
)  # e.g. "-" for stdout; off by default (it costs CPU per request)
# access lines name no customer: ids in paths, e-mail addresses and search terms are redacted (config/logfilters.py)
logger_class = "config.gunicorn_logging.RedactingLogger"


# Load the app once in the master, before the workers are forked (they share its memory pages), and
# move everything loaded so far out of the garbage collector's way (`when_ready` below).
preload_app = os.environ.get("GUNICORN_PRELOAD", "1") not in ("0", "false", "no")


def when_ready(server):
    """With the app preloaded: import every view now (Django imports the URLconf, and with it the
    views and pandas, only at the first request), then freeze the objects loaded so far.

    A Django worker holds a few hundred thousand long-lived objects (modules, classes, functions);
    every full (generation 2) collection walked all of them while holding the GIL: 100 to 200 ms
    during which none of the worker's requests moved (measured under bench/load.py). gc.freeze()
    puts them in a permanent generation that collections skip; they are never garbage anyway. The
    workers inherit the frozen state when forked.
    """
    if not preload_app:
        return
    from django.conf import settings

    if settings.configured:  # the app is Django's (a bench's floor app is not)
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - imports the URLconf and every view it names
    gc.collect()
    gc.freeze()
