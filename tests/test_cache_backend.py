"""The Redis cache backend (common/cache.py): Django's, with one client per connection pool."""

import threading

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

REDIS = "redis://127.0.0.1:6379/8"


@pytest.fixture
def redis_cache():
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379 (CI has one)")
    with override_settings(CACHES={"default": {"BACKEND": "common.cache.RedisCache", "LOCATION": REDIS}}):
        cache = caches["default"]
        cache.clear()
        yield cache
        cache.clear()


def test_it_behaves_as_djangos_and_builds_one_client(redis_cache):
    """What the lockout, the throttles and the keys' generation do with it: add, get, incr, set, expiry."""
    assert redis_cache.add("generation", 41, timeout=None) and not redis_cache.add("generation", 0, timeout=None)
    assert redis_cache.incr("generation") == 42 and redis_cache.get("generation") == 42
    redis_cache.set("history", [1.5, 2.5], timeout=60)
    assert redis_cache.get("history") == [1.5, 2.5]
    assert redis_cache.get_many(["generation", "history", "missing"]) == {"generation": 42, "history": [1.5, 2.5]}
    client = redis_cache._cache.get_client()
    assert redis_cache._cache.get_client(write=True) is client  # not a new redis.Redis per operation
    assert client.ttl(redis_cache.make_key("history")) > 0


def test_threads_share_the_client_safely(redis_cache):
    errors = []

    def bump():
        try:
            for _ in range(200):
                redis_cache.incr("counter")
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(exc)

    redis_cache.set("counter", 0, timeout=None)
    threads = [threading.Thread(target=bump) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and redis_cache.get("counter") == 800
