"""Settings for the test suite: the real settings, with a throwaway secret key."""
import os

os.environ.setdefault("SECRET_KEY", "test-only-insecure-secret-key")

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
