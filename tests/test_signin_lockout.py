"""Sign-in lockout (issue #12, finding 4): a flood of failed sign-ins locks the flooding address, never
the real operators signing in from elsewhere, and behind the TLS proxy the client's address comes from
the proxy's X-Forwarded-For (only when the deployment says how many proxies it trusts)."""

import base64
import secrets

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts import signin
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.66"
ADMIN_HOME = "198.51.100.7"
PROXY = "10.0.0.2"


@pytest.fixture
def administrator(db):
    return UserFactory(
        username="administrator", email="admin@shop.example", password="correct horse battery 9", superuser=True
    )


def _sign_in(client, username, password, **extra):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password}, **extra)


def _signed_in(resp, client) -> bool:
    return resp.status_code == 302 and "_auth_user_id" in client.session


def _flood(client, n=90, **extra):
    for _ in range(n):
        _sign_in(client, f"user-{secrets.token_hex(4)}", "guess", **extra)


def test_a_flood_of_random_usernames_from_one_address_does_not_lock_the_administrator_out(administrator):
    attacker = Client(REMOTE_ADDR=ATTACKER)
    _flood(attacker)
    # the attacker's address is blocked: even a right password is refused from it, and the page says why
    resp = _sign_in(attacker, "administrator", "correct horse battery 9")
    assert "Too many failed sign-in attempts" in resp.content.decode() and "_auth_user_id" not in attacker.session
    # the real Administrator, at home, signs in at once
    admin = Client(REMOTE_ADDR=ADMIN_HOME)
    assert _signed_in(_sign_in(admin, "administrator", "correct horse battery 9"), admin)


def test_guessing_the_administrators_password_from_one_address_locks_that_address_only(administrator):
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(90):
        _sign_in(attacker, "administrator", "guess")
    assert (
        "Too many failed sign-in attempts"
        in _sign_in(attacker, "administrator", "correct horse battery 9").content.decode()
    )
    admin = Client(REMOTE_ADDR=ADMIN_HOME)
    assert _signed_in(_sign_in(admin, "administrator", "correct horse battery 9"), admin)


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_the_proxy_the_forwarded_address_is_the_one_blocked(administrator):
    # every request reaches the app from the proxy; the proxy appends the client's address
    attacker = Client(REMOTE_ADDR=PROXY)
    # the attacker also sends a forged X-Forwarded-For, which the proxy keeps in front of the real address
    _flood(attacker, HTTP_X_FORWARDED_FOR=f"{ADMIN_HOME}, {ATTACKER}")
    resp = _sign_in(attacker, "administrator", "correct horse battery 9", HTTP_X_FORWARDED_FOR=ATTACKER)
    assert "Too many failed sign-in attempts" in resp.content.decode()
    admin = Client(REMOTE_ADDR=PROXY)
    assert _signed_in(
        _sign_in(admin, "administrator", "correct horse battery 9", HTTP_X_FORWARDED_FOR=ADMIN_HOME), admin
    )


def test_without_a_trusted_proxy_setting_x_forwarded_for_is_ignored(administrator):
    # a client cannot pick its own address by sending the header: the flood is counted on the real peer
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for i in range(90):
        _sign_in(attacker, f"user-{i}", "guess", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
    resp = _sign_in(attacker, "administrator", "correct horse battery 9", HTTP_X_FORWARDED_FOR="192.0.2.250")
    assert "Too many failed sign-in attempts" in resp.content.decode()


def test_a_forwarded_header_without_a_trusted_proxy_setting_is_reported_once(monkeypatch, caplog):
    monkeypatch.setattr(signin, "_untrusted_header_logged", [])
    request = type("R", (), {"META": {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": ATTACKER}})()
    assert signin.client_address(request) == PROXY and signin.client_address(request) == PROXY
    assert caplog.text.count("TRUSTED_PROXY_COUNT is 0") == 1


def test_client_address_from_the_trusted_proxies():
    def addr(remote, xff=None, **settings):
        meta = {"REMOTE_ADDR": remote}
        if xff is not None:
            meta["HTTP_X_FORWARDED_FOR"] = xff
        with override_settings(**settings):
            return signin.client_address(type("R", (), {"META": meta})())

    assert addr(PROXY, "1.2.3.4") == PROXY  # not configured: the header is not trusted
    assert addr(PROXY, "6.6.6.6, 1.2.3.4", TRUSTED_PROXY_COUNT=1) == "1.2.3.4"
    assert addr(PROXY, "6.6.6.6, 1.2.3.4, 10.0.0.1", TRUSTED_PROXY_COUNT=2) == "1.2.3.4"
    assert addr(PROXY, None, TRUSTED_PROXY_COUNT=1) == PROXY  # a request that did not come through the proxy
    assert addr(PROXY, "not-an-address", TRUSTED_PROXY_COUNT=1) == PROXY
    # an IPv6 client is counted by its /64: one host holds billions of addresses in it
    assert addr("2001:db8:1:2:aaaa::1") == addr("2001:db8:1:2:bbbb::9") != addr("2001:db8:1:3::1")


def test_the_lock_on_a_username_from_an_address_does_not_say_whether_the_username_exists(administrator):
    attacker = Client(REMOTE_ADDR=ATTACKER)
    answers = {}
    for username in ("administrator", "nobody-by-this-name"):
        for _ in range(signin._limits().per_pair):
            _sign_in(attacker, username, "guess")
        answers[username] = "Too many failed sign-in attempts" in _sign_in(attacker, username, "guess").content.decode()
    assert answers == {"administrator": True, "nobody-by-this-name": True}


@override_settings(LOGIN_FAILURE_LIMIT_PER_USERNAME=30)
def test_guessing_from_many_addresses_stops_but_the_administrator_still_signs_in_from_a_known_address(administrator):
    home = Client(REMOTE_ADDR=ADMIN_HOME)
    assert _signed_in(_sign_in(home, "administrator", "correct horse battery 9"), home)
    home.logout()
    # a botnet: 4 guesses each from 10 addresses, under the per-address limits
    for i in range(10):
        bot = Client(REMOTE_ADDR=f"203.0.113.{i}")
        for _ in range(4):
            _sign_in(bot, "administrator", "guess")
    # the account is now closed to new addresses, even with the right password ...
    stranger = Client(REMOTE_ADDR="203.0.113.200")
    assert (
        "Too many failed sign-in attempts"
        in _sign_in(stranger, "administrator", "correct horse battery 9").content.decode()
    )
    # ... but not to the address it signed in from before
    assert _signed_in(_sign_in(home, "administrator", "correct horse battery 9"), home)


def test_http_basic_on_the_api_is_covered_by_the_same_per_address_lock(administrator):
    attacker = APIClient(REMOTE_ADDR=ATTACKER)

    def basic(client, username, pw):
        token = base64.b64encode(f"{username}:{pw}".encode()).decode()
        return client.get("/api/segments/", HTTP_AUTHORIZATION=f"Basic {token}")

    for _ in range(90):
        basic(attacker, f"user-{secrets.token_hex(4)}", "guess")
    resp = basic(attacker, "administrator", "correct horse battery 9")
    assert resp.status_code in (401, 403) and "Too many failed sign-ins" in resp.json()["detail"]
    assert basic(APIClient(REMOTE_ADDR=ADMIN_HOME), "administrator", "correct horse battery 9").status_code == 200


def test_without_a_shared_cache_production_start_up_warns(caplog):
    with override_settings(
        DEBUG=False, CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    ):
        assert signin.warn_if_cache_not_shared() is True
    assert "CACHE_URL" in caplog.text
    with override_settings(
        DEBUG=False, CACHES={"default": {"BACKEND": "common.cache.RedisCache", "LOCATION": "redis://127.0.0.1:6379/13"}}
    ):
        assert signin.warn_if_cache_not_shared() is False
