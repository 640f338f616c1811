"""
Sign-in protection for operator accounts. Every way a password is checked goes through it: the
admin's sign-in form and HTTP Basic on the API (both call `django.contrib.auth.authenticate`).

Failed sign-ins are counted within LOGIN_LOCKOUT_SECONDS in three buckets, and an attempt is refused
without checking the password while any of them is full:

- per username *and* client address: LOGIN_FAILURE_LIMIT (5). Guessing one account's password
  from one place stops there, and locks nobody else out.
- per client address: LOGIN_FAILURE_LIMIT_PER_IP (20), whatever the usernames. A flood of guesses
  (random or real usernames) locks the flooding address. Usernames that do not exist are counted
  like any other, in buckets of their own that no real account shares, so they cannot use up a real
  account's budget, and the lock never depends on whether a username exists (it would tell).
- per username, from every address: LOGIN_FAILURE_LIMIT_PER_USERNAME (100). Past it (guesses
  spread over many addresses), the account is refused from every address it has not signed in from
  successfully within LOGIN_KNOWN_ADDRESS_DAYS; its operator, signing in from where they usually
  do, is not locked out by strangers.

Only attempts whose password was checked count; refused attempts do not extend a lock. The client
address is the peer's (REMOTE_ADDR) unless TRUSTED_PROXY_COUNT says how many proxies in front append
to X-Forwarded-For; IPv6 addresses count by their /64. Counters live in Django's cache: CACHE_URL must
name a shared cache (Redis) when several processes serve the app, else each process counts apart (the
app warns at start-up). docs/security.md explains the design.

Sign-ins and refused sign-ins are written to the audit log.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from typing import NamedTuple

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework import authentication, exceptions

from common.cache import cache_is_shared

log = logging.getLogger(__name__)


class Limits(NamedTuple):
    per_pair: int
    per_address: int
    per_username: int
    window: int
    known_address_seconds: int


def _limits() -> Limits:
    return Limits(
        per_pair=int(settings.LOGIN_FAILURE_LIMIT),
        per_address=int(settings.LOGIN_FAILURE_LIMIT_PER_IP),
        per_username=int(settings.LOGIN_FAILURE_LIMIT_PER_USERNAME),
        window=int(settings.LOGIN_LOCKOUT_SECONDS),
        known_address_seconds=int(float(settings.LOGIN_KNOWN_ADDRESS_DAYS) * 86400),
    )


_untrusted_header_logged: list[bool] = []  # once per process


def client_address(request) -> str | None:
    """The caller's address as counted by the lockout: `client_ip`, an IPv6 address standing for its /64."""
    address = client_ip(request)
    if address is None:
        return None
    parsed = ipaddress.ip_address(address)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False)) if parsed.version == 6 else address


def client_ip(request) -> str | None:
    """The caller's address: the peer's, or with TRUSTED_PROXY_COUNT = n > 0 the n-th address from the
    right of X-Forwarded-For (each trusted proxy appends the address it was called from; what the
    client itself sent stays to the left). None when neither is an address."""
    meta = getattr(request, "META", None) or {}
    candidates = []
    proxies = int(settings.TRUSTED_PROXY_COUNT or 0)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies > 0 and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        candidates.append(hops[-min(proxies, len(hops))])
    elif forwarded and not _untrusted_header_logged:
        _untrusted_header_logged.append(True)
        log.warning(
            "a request came with X-Forwarded-For but TRUSTED_PROXY_COUNT is 0: if the app is behind a proxy, every "
            "client has the proxy's address and one client's failed sign-ins lock everyone out; set "
            "TRUSTED_PROXY_COUNT (docs/security.md, 'Deploying')"
        )
    candidates.append(meta.get("REMOTE_ADDR") or "")
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address)
    return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Keys(NamedTuple):
    pair: str | None
    address: str | None
    username: str | None
    known: str | None  # set when the username signed in from the address


def _keys(username: str | None, address: str | None) -> _Keys:
    user = _digest(username.strip().lower()) if username else None
    return _Keys(
        pair=f"signin:fail:pair:{user}:{_digest(address)}" if user and address else None,
        address=f"signin:fail:ip:{address}" if address else None,
        username=f"signin:fail:user:{user}" if user else None,
        known=f"signin:known:{user}:{_digest(address)}" if user and address else None,
    )


# If the cache (Redis with CACHE_URL) is unreachable, sign-ins are checked without the lockout
# (logged) rather than refused with an error: operators can still work during a cache outage.


def is_locked(username: str | None, request=None) -> bool:
    limits, keys = _limits(), _keys(username, client_address(request))
    try:
        values = cache.get_many([key for key in keys if key])
    except Exception:
        log.warning("sign-in lockout unavailable: the cache is unreachable", exc_info=True)
        return False
    count = lambda key: int(values.get(key) or 0) if key else 0  # noqa: E731
    return (
        count(keys.pair) >= limits.per_pair
        or count(keys.address) >= limits.per_address
        or (count(keys.username) >= limits.per_username and not values.get(keys.known))
    )


def _count(key: str, window: int) -> None:
    if not cache.add(key, 1, timeout=window):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window)


def failure_record(username: str | None, request=None) -> None:
    """Count a sign-in whose password was checked and was wrong (or whose username does not exist)."""
    window = _limits().window
    try:
        for key in _keys(username, client_address(request))[:3]:
            if key:
                _count(key, window)
    except Exception:
        log.warning("failed sign-in not counted: the cache is unreachable", exc_info=True)


def success_record(username: str | None, request=None) -> None:
    """A good sign-in clears its own (username, address) count and makes the address a known one for
    the account; the account's count from everywhere stays (strangers may still be guessing)."""
    keys = _keys(username, client_address(request))
    try:
        if keys.pair:
            cache.delete(keys.pair)
        if keys.known:
            cache.set(keys.known, 1, timeout=_limits().known_address_seconds)
    except Exception:
        log.warning("sign-in count not cleared: the cache is unreachable", exc_info=True)


def warn_if_cache_not_shared() -> bool:
    """Logged at start-up: without a shared cache each process keeps its own sign-in counters (and
    API keys are looked up on every request, accounts/access.py)."""
    if settings.DEBUG or cache_is_shared():
        return False
    log.warning(
        "CACHE_URL does not name a shared cache: each server process counts failed sign-ins and API throttles "
        "on its own, so the limits are multiplied by the number of processes. Set CACHE_URL=redis://... "
        "(docs/security.md, 'Deploying')."
    )
    return True


class SignInThrottleBackend(ModelBackend):
    """Django's model backend that refuses, without checking the password, while the username is locked
    for this address or the address is locked (PermissionDenied stops `authenticate`; the refusal is
    audited as a failed sign-in but not counted again)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self._username_field())
        if username is not None and is_locked(username, request):
            raise PermissionDenied("Too many failed sign-ins.")
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's sign-in form, saying plainly why a locked account is refused."""

    def clean(self):
        username = self.cleaned_data.get("username")
        if username and is_locked(username, self.request):
            minutes = max(1, _limits().window // 60)
            raise ValidationError(
                f"Too many failed sign-in attempts for this account or from this address. Try again in {minutes} "
                "minutes, "
                "or ask an administrator to reset the password.",
                code="locked",
            )
        return super().clean()


# --- signal receivers (connected in AccountsConfig.ready) ---------------------------------------


def on_login_failed(sender, credentials, request=None, **kwargs):
    from .audit import audit_record
    from .models import AccountsAuditAction

    username = credentials.get("username")
    locked = is_locked(username, request)
    if not locked:  # a refused attempt checked no password: it does not count again
        failure_record(username, request)
    audit_record(
        action=AccountsAuditAction.LOGIN_FAILED,
        request=request,
        source="admin" if _is_admin(request) else "api",
        actor_label=f"{username or '?'}"[:150],
        changes={"locked": locked},
    )


def on_logged_in(sender, request, user, **kwargs):
    from .audit import audit_record
    from .models import AccountsAuditAction

    success_record(user.get_username(), request)
    audit_record(
        action=AccountsAuditAction.LOGIN, actor=user, request=request, source="admin" if _is_admin(request) else "api"
    )


def _is_admin(request) -> bool:
    return bool(request is not None and getattr(request, "path", "").startswith("/admin"))


class ThrottledBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic for operators on the API, saying plainly when the account is locked."""

    def authenticate_credentials(self, userid, password, request=None):
        if is_locked(userid, request):
            raise exceptions.AuthenticationFailed(
                "Too many failed sign-ins for this account or from this address; try again later."
            )
        return super().authenticate_credentials(userid, password, request)


warn_if_cache_not_shared()
