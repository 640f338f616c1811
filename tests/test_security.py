"""Security and privacy guards: sign-in lockout, personal data kept out of logs, consent-aware training."""

import base64
import logging
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import EventRow, OperatorFactory, UserFactory, ingest

pytestmark = pytest.mark.django_db


# --- sign-in lockout ----------------------------------------------------------------------------


@pytest.fixture
def ops(db):
    return UserFactory(username="ops", password="right-pw-123", superuser=True)


def _sign_in(client, password, username="ops", **extra):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password}, **extra)


@override_settings(LOGIN_FAILURE_LIMIT=3, LOGIN_LOCKOUT_SECONDS=600)
def test_admin_sign_in_locks_after_repeated_failures_even_for_the_right_password_and_says_why(client, ops):
    for _ in range(3):
        resp = _sign_in(client, "guess")
        assert "Please enter the correct username and password" in resp.content.decode()
    resp = _sign_in(client, "right-pw-123")
    html = resp.content.decode()
    assert resp.status_code == 200 and "Too many failed sign-in attempts" in html and "10 minutes" in html
    assert "_auth_user_id" not in client.session
    # the lock is the account's (and that address's): another operator signing in elsewhere is not locked out
    OperatorFactory(username="eve", password="eve-pw-456")
    other = type(client)(REMOTE_ADDR="10.0.0.9")
    assert _sign_in(other, "eve-pw-456", username="eve").status_code == 302


@override_settings(LOGIN_FAILURE_LIMIT=3, LOGIN_LOCKOUT_SECONDS=600)
def test_a_successful_sign_in_before_the_limit_clears_the_count(client, ops):
    for _ in range(2):
        _sign_in(client, "guess")
    assert _sign_in(client, "right-pw-123").status_code == 302
    client.logout()
    for _ in range(2):
        _sign_in(client, "guess")
    assert _sign_in(client, "right-pw-123").status_code == 302


@override_settings(LOGIN_FAILURE_LIMIT=3, LOGIN_FAILURE_LIMIT_PER_IP=5, LOGIN_LOCKOUT_SECONDS=600)
def test_one_address_guessing_many_usernames_is_locked_out_too(client, ops):
    for i in range(5):
        _sign_in(client, "guess", username=f"user{i}")
    assert "Too many failed sign-in attempts" in _sign_in(client, "right-pw-123").content.decode()


@override_settings(LOGIN_FAILURE_LIMIT=3, LOGIN_LOCKOUT_SECONDS=600)
def test_http_basic_on_the_api_counts_toward_the_same_lock(ops):
    api = APIClient()

    def basic(pw):
        token = base64.b64encode(f"ops:{pw}".encode()).decode()
        return api.get("/api/segments/", HTTP_AUTHORIZATION=f"Basic {token}")

    assert basic("right-pw-123").status_code == 200
    for _ in range(3):
        assert basic("guess").status_code in (401, 403)
    resp = basic("right-pw-123")
    assert resp.status_code in (401, 403) and "Too many failed sign-ins" in resp.json()["detail"]


# --- personal data in logs ----------------------------------------------------------------------


def test_log_lines_never_carry_email_addresses_or_names(caplog):
    from config.logfilters import RedactPersonalData

    logger = logging.getLogger("campaigns.channels")
    handler_filter = RedactPersonalData()
    caplog.handler.addFilter(handler_filter)
    try:
        logger.warning(
            "email to delivery %s failed: %s", 7, "SMTPRecipientsRefused({'kim.lee+shop@example.co.uk': (550, b'no')})"
        )
        try:
            raise ValueError(
                "duplicate key value violates unique constraint; DETAIL: Key (email)=(kim@example.com) exists; "
                "row {'name': 'Kim Lee', 'id': 4}"
            )
        except ValueError:
            logger.exception("step %s failed", "profiles")
    finally:
        caplog.handler.removeFilter(handler_filter)
    text = caplog.text
    assert "delivery 7 failed" in text and "step profiles failed" in text and "ValueError" in text
    assert "example.co" not in text and "kim@" not in text and "Kim Lee" not in text
    assert "<email>" in text and "Key (email)=(<redacted>)" in text and "'name': '<redacted>'" in text


def test_the_configured_handlers_carry_the_redaction_filter():
    from django.conf import settings

    from config.logfilters import RedactPersonalData

    handlers = settings.LOGGING["handlers"]
    # the root logger writes through configured handlers (without any, Python's last-resort handler
    # would print warnings unfiltered), and each of them carries the filter
    assert settings.LOGGING["root"]["handlers"] and set(settings.LOGGING["root"]["handlers"]) <= set(handlers)
    for name, handler in handlers.items():
        assert "redact_personal_data" in handler.get("filters", []), name
    # ... and so do the handlers logging was configured with (pytest's own capture handlers aside)
    live = [h for h in logging.getLogger().handlers if not type(h).__module__.startswith("_pytest")]
    assert live
    for handler in live:
        assert any(isinstance(f, RedactPersonalData) for f in handler.filters), handler


# --- consent-aware training ---------------------------------------------------------------------


@pytest.fixture
def shop_with_objectors():
    now = timezone.now()
    people = [{"external_id": f"c{i}", "consent_in_app": i >= 10, "consent_email": False} for i in range(40)]
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        for j in rng.choice(30, size=8, replace=False):
            kind = {"purchase": True, "amount": 10.0} if j % 3 == 0 else {"view": True}
            rows.append(
                EventRow(
                    external_id=f"e{i}-{j}",
                    customer=f"c{i}",
                    item=f"p{j}",
                    occurred_at=now - timedelta(days=int(j)),
                    **kind,
                )
            )
    # an item only the objectors bought: with them left out, nobody trains on it
    rows += [
        EventRow(external_id=f"x{i}", customer=f"c{i}", item="secret", purchase=True, amount=5.0, occurred_at=now)
        for i in range(10)
    ]
    ingest(customers=people, events=rows)


def _interactions():
    from recommendations.services import load_interactions, recommender_settings

    return load_interactions(recommender_settings())


def test_customers_without_consent_are_left_out_of_training_when_the_setting_says_so(shop_with_objectors):
    from profiles.models import Customer, Item

    data = _interactions()
    assert data.n_untrained == 0 and data.user_items[:10].nnz > 0
    with override_settings(TRAINING_REQUIRES_CONSENT="any"):
        data = _interactions()
    objectors = np.isin(
        data.customer_ids,
        list(Customer.objects.filter(external_id__in=[f"c{i}" for i in range(10)]).values_list("id", flat=True)),
    )
    assert data.n_untrained == 10 and objectors.sum() == 10
    assert data.user_items[np.flatnonzero(objectors)].nnz == 0 and data.recent[np.flatnonzero(objectors)].nnz == 0
    assert data.user_items[np.flatnonzero(~objectors)].nnz > 0
    secret = int(np.searchsorted(data.item_ids, Item.objects.get(external_id="secret").pk))
    assert data.user_items[:, secret].nnz == 0
    # what they bought still keeps it out of their own (non-personal) suggestions
    assert data.exclude[np.flatnonzero(objectors)][:, secret].nnz == 10


def test_an_unknown_consent_channel_in_the_setting_is_named():
    from recommendations.services import training_consent_mask

    with pytest.raises(ValueError, match="sms"):
        training_consent_mask(
            pd.DataFrame({"consent_in_app": [True], "consent_email": [False], "consent_push": [False]}), "email,sms"
        )


# --- health check -------------------------------------------------------------------------------


def test_healthz_answers_without_credentials_and_reports_a_broker_outage_without_failing(client):
    from django.test import override_settings

    resp = client.get("/healthz", HTTP_HOST="127.0.0.1")
    assert resp.status_code == 200 and resp.json()["database"] == "ok"
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):  # nothing listens there
        resp = client.get("/healthz", HTTP_HOST="127.0.0.1")
    assert resp.status_code == 200 and resp.json()["broker"].startswith("down (")
    assert resp["Cache-Control"].startswith("max-age=0")


# --- deployment settings ------------------------------------------------------------------------


def _production_env(**extra) -> dict:
    import os
    import secrets

    # A clean environment, as a deployment's: nothing the test run set (HTTPS_ONLY, DJANGO_ALLOW_ASYNC_UNSAFE, ...).
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DATABASE_URL"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "shop.example.com",
            **extra,
        }
    )
    return env


def test_check_deploy_is_clean_with_production_settings():
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


def test_production_settings_refuse_to_start_without_a_secret_and_turn_https_on():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_PROXY_SSL_HEADER)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_production_env(TRUST_X_FORWARDED_PROTO="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split() == ["True", "True", "True", "31536000", "('HTTP_X_FORWARDED_PROTO',", "'https')"], (
        proc.stderr
    )
    env = _production_env()
    del env["SECRET_KEY"]
    proc = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "SECRET_KEY is not set" in proc.stderr


@pytest.mark.django_db
def test_sign_in_still_works_while_the_cache_is_unreachable(client):
    import socket

    from django.test import override_settings

    OperatorFactory(username="ops2", password="right-pw-123")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = {"BACKEND": "common.cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{port}/0"}
    dead = {"default": down, "throttle": down}
    with override_settings(CACHES=dead):
        assert _sign_in(client, "guess", username="ops2").status_code == 200
        assert _sign_in(client, "right-pw-123", username="ops2").status_code == 302
