"""A real Celery worker on the configured broker runs a task and returns its result."""

import os

import pytest

from tests.celery_worker import real_worker

pytestmark = pytest.mark.celery_worker


@pytest.fixture(scope="module")
def broker():
    url = os.environ.get("CELERY_BROKER_URL")
    if not url:
        if os.environ.get("REQUIRE_CELERY_WORKER") == "1":
            pytest.fail("CELERY_BROKER_URL is not set; REQUIRE_CELERY_WORKER=1 demands a real broker")
        pytest.skip("CELERY_BROKER_URL is not set (a real worker needs a broker, e.g. redis://127.0.0.1:6379/0)")
    return url


def test_a_real_worker_runs_a_task_and_returns_its_result(broker):
    from config.celery import ping

    with real_worker() as (queue, proc):
        result = ping.apply_async(args=[7], queue=queue)
        answer = result.get(timeout=30)
    assert answer["pong"] == 7
    assert answer["hostname"].startswith(queue)
