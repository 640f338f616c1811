"""Shared fixtures: the public datasets, API clients for operators with and without permissions (built on the
factories of tests/factories.py), and a way to run what a service queued for after its commit."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def datasets_path() -> Path:
    return Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The public datasets folder; skipped with a reason where it is missing, failed under REQUIRE_DATASETS=1."""
    path = datasets_path()
    if not (path / "ml-100k" / "u.data").exists() or not (path / "online-retail" / "online_retail.csv.gz").exists():
        reason = f"datasets not found in {path} (set DATASETS_DIR to the shared/datasets folder)"
        if os.environ.get("REQUIRE_DATASETS") == "1":
            pytest.fail(reason + "; REQUIRE_DATASETS=1 demands them")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession (one per test session, one thread per core, 8 shuffle partitions);
    skipped with a reason where Java, PySpark or the JDBC driver is missing, failed under REQUIRE_SPARK=1."""
    from common.spark import java_missing_reason, spark_session, spark_stop

    reason = java_missing_reason()
    if reason:
        if os.environ.get("REQUIRE_SPARK") == "1":
            pytest.fail(f"Spark cannot start: {reason}; REQUIRE_SPARK=1 demands it")
        pytest.skip(f"Spark cannot start: {reason}")
    yield spark_session()
    spark_stop()  # while logging is still open (py4j logs as its connections close)


@pytest.fixture
def operator(db):
    """A staff user in no group, with the permissions to write customers, items and events."""
    from tests.factories import OperatorFactory

    return OperatorFactory(
        username="operator",
        permissions=[
            "profiles.add_event",
            "profiles.add_customer",
            "profiles.change_customer",
            "profiles.add_item",
            "profiles.change_item",
        ],
    )


@pytest.fixture
def api(operator):
    from tests.factories import client_for

    return client_for(operator)


@pytest.fixture
def boss(db):
    """A superuser named boss (the name the audit log shows)."""
    from tests.factories import UserFactory

    return UserFactory(username="boss", superuser=True)


@pytest.fixture
def boss_client(client, boss):
    """Django's test client signed in as the superuser boss (a session, as the admin's pages need)."""
    client.force_login(boss)
    return client


@pytest.fixture
def analyst(db):
    """An API client for "ana", a staff member in the Analyst group (the roles' permissions synced first)."""
    from accounts.roles import sync_role_permissions
    from tests.factories import ANALYST, OperatorFactory, client_for

    sync_role_permissions()
    return client_for(OperatorFactory(username="ana", role=ANALYST))


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Call a service and run what it queued for after the commit (the send tasks, eager in tests)."""

    def call(fn, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(**kwargs)

    return call


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle and sign-in counters live in the caches; each test starts with none (ids repeat across tests)."""
    from django.core.cache import caches

    for alias in ("default", "throttle"):
        caches[alias].clear()
    yield
    for alias in ("default", "throttle"):
        caches[alias].clear()


# Hypothesis: random examples on a developer's machine (new inputs each run), the same examples in
# CI (CI or REQUIRE_DATASETS=1 set), so a CI failure is repeatable and a green run stays green.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("dev")
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") or os.environ.get("REQUIRE_DATASETS") == "1" else "dev")
