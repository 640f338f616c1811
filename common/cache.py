"""Whether Django's default cache is shared by the processes of a deployment.

The sign-in lockout (accounts/signin.py), the API throttles and the API-key revocation signal
(accounts/access.py) keep their state in the cache. Redis (CACHE_URL=redis://...), memcached, a
database or file cache is seen by every process; the default per-process memory cache (LocMem) is
not: each gunicorn worker and Celery process then has its own counters.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

PER_PROCESS_BACKENDS = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")


def cache_is_shared(alias: str = "default") -> bool:
    return settings.CACHES[alias]["BACKEND"] not in PER_PROCESS_BACKENDS


class _ReusedRedisClient(RedisCacheClient):
    """Django's Redis client, keeping one `redis.Redis` per connection pool.

    Django builds a new `redis.Redis` for every operation, and each registers some 160 response
    callbacks on construction: 0.1-0.2 ms of CPU per cache read, paid two or three times by every API
    request (the keys' generation, the throttle). A redis-py client is safe to share between threads
    (each command takes a connection from the pool), so one per pool serves every operation."""

    def __init__(self, servers, **options):
        super().__init__(servers, **options)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    """`django.core.cache.backends.redis.RedisCache` without a client built per operation."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _ReusedRedisClient
