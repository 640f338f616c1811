"""gunicorn settings: `gunicorn -c gunicorn.conf.py config.wsgi` (the load test serves the app this way).

Chosen for a small machine (2 cores) that also runs PostgreSQL and the recomputations, measured
with bench/load.py (docs/benchmarks.md, "Load"):

- 2 worker processes, one per core: more processes only add context switches and database
  connections when the database and the pipeline need the same cores.
- `gthread` workers with 4 threads each, so one slow request (a batch of events being written)
  does not hold up the quick ones (suggestions) behind it in the same process, and HTTP keep-alive,
  which the plain `sync` worker does not offer: a frontend or proxy that reuses its connections
  spares a TCP handshake per request on both sides. Each thread holds its own database connection
  (DB_CONN_MAX_AGE), so a server uses up to workers × threads connections.

Every value can be overridden from the environment (GUNICORN_WORKERS, GUNICORN_THREADS, ...) or on
the command line (`-w 4`), which gunicorn reads after this file; size workers to the cores the web
tier really has.
"""
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
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # e.g. "-" for stdout; off by default (it costs CPU per request)

