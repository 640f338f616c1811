"""The retry policy the Celery tasks share (docs/reliability.md).

Errors that go away by themselves (a dropped database connection, a deadlock, the broker
restarting) are retried with exponential backoff and full jitter, a bounded number of times;
anything else fails the task at once.
"""

from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Transient: the operation may well succeed if tried again in a few seconds. django.db's
# OperationalError covers lost connections, deadlocks and serialization failures on PostgreSQL
# and "database is locked" on SQLite; kombu's covers a broker that cannot be reached.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseOperationalError,
    DatabaseInterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
)

# Options for @shared_task(**RETRY_TRANSIENT, ...): 5 retries, waits drawn from 0..2 s, 0..4 s,
# 0..8 s, ... up to 5 minutes (full jitter, so workers that failed together do not retry together).
RETRY_TRANSIENT = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


def retry_countdown(retries: int, *, factor: int = 2, maximum: int = 300) -> float:
    """The wait before retry number `retries + 1`, as autoretry computes it (exponential, full jitter)."""
    from celery.utils.time import get_exponential_backoff_interval

    return get_exponential_backoff_interval(factor=factor, retries=retries, maximum=maximum, full_jitter=True)
