"""Settings for the test suite: the real settings, with a throwaway secret key."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-insecure-secret-key")
# The test client and live servers speak plain HTTP (tests of the HTTPS settings set them explicitly).
os.environ.setdefault("HTTPS_ONLY", "0")

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests run tasks in-process unless a test starts a real worker (tests/test_celery_worker.py),
# which switches eager mode off for its duration. The broker URL stays as the environment says.
CELERY_TASK_ALWAYS_EAGER = True

# Batch writes in the request's own thread, so they see (and roll back with) each test's transaction;
# tests/profiles/test_lanes.py switches the low-priority lane on with committed data.
BULK_WRITE_NICE = 0
