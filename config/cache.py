"""Whether Django's default cache is shared by the processes of a deployment.

The sign-in lockout (profiles/signin.py), the API throttles and the API-key revocation signal
(profiles/access.py) keep their state in the cache. Redis (CACHE_URL=redis://...), memcached, a
database or file cache is seen by every process; the default per-process memory cache (LocMem) is
not: each gunicorn worker and Celery process then has its own counters.
"""
from __future__ import annotations

from django.conf import settings

PER_PROCESS_BACKENDS = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")


def cache_is_shared(alias: str = "default") -> bool:
    return settings.CACHES[alias]["BACKEND"] not in PER_PROCESS_BACKENDS
