"""Bench only (issue #19, path 5): the floor of `GET /api/customers/{id}/recommendations/`.

A WSGI app that answers every request with one constant JSON body: a real answer of our endpoint,
saved by the bench to the file `FLOOR_BODY_FILE`. Served by gunicorn with the app's own
configuration (gunicorn.conf.py: workers, threads, keep-alive) at the same rates as our endpoint,
it measures what the server, the HTTP path and the load generator cost on this machine with no
routing, authentication, database or serialisation. Served from bench/ only; in no URLconf.
"""

from __future__ import annotations

import os
from pathlib import Path

_BODY = Path(os.environ["FLOOR_BODY_FILE"]).read_bytes()
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def application(environ, start_response):
    start_response("200 OK", _HEADERS)
    return [_BODY]
