"""gunicorn's access lines without customers' data (gunicorn.conf.py sets `logger_class` to this).

gunicorn writes its access lines through its own handlers, not Django's, so the filter of
settings.LOGGING never sees them: the request line, path, query string and referer are passed through
the same `redact` (config/logfilters.py) before they are formatted.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from config.logfilters import redact

REDACTED_ATOMS = ("r", "U", "f")  # request line, path, referer (and the query string, below)


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in REDACTED_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        if isinstance(atoms.get("q"), str) and atoms["q"]:
            atoms["q"] = redact("?" + atoms["q"])[1:]  # read as a query string, its first parameter included
        return atoms
