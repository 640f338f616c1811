"""
Sign-in protection for operator accounts: after LOGIN_FAILURE_LIMIT failed sign-ins for one
username (or LOGIN_FAILURE_LIMIT_PER_IP from one address) within LOGIN_LOCKOUT_SECONDS, further
attempts are refused without checking the password until the window passes. This covers every
way a password is checked: the admin's sign-in form and HTTP Basic on the API (both go through
`django.contrib.auth.authenticate`). Counters live in Django's cache: set CACHE_URL to a shared
cache (Redis) when several processes serve the app, so the limit holds across them.

Sign-ins and refused sign-ins are written to the audit log.
"""
from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework import authentication, exceptions

log = logging.getLogger(__name__)


def _limits() -> tuple[int, int, int]:
    return (int(getattr(settings, "LOGIN_FAILURE_LIMIT", 5)), int(getattr(settings, "LOGIN_FAILURE_LIMIT_PER_IP", 20)),
            int(getattr(settings, "LOGIN_LOCKOUT_SECONDS", 900)))


def _keys(username: str | None, ip: str | None) -> list[tuple[str, int]]:
    per_user, per_ip, _ = _limits()
    keys = []
    if username:
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        keys.append((f"signin:fail:user:{digest}", per_user))
    if ip:
        keys.append((f"signin:fail:ip:{ip}", per_ip))
    return keys


def _ip(request) -> str | None:
    return (getattr(request, "META", None) or {}).get("REMOTE_ADDR") or None


# If the cache (Redis with CACHE_URL) is unreachable, sign-ins are checked without the lockout
# (logged) rather than refused with an error: operators can still work during a cache outage.


def is_locked(username: str | None, request=None) -> bool:
    try:
        return any((cache.get(key) or 0) >= limit for key, limit in _keys(username, _ip(request)))
    except Exception:
        log.warning("sign-in lockout unavailable: the cache is unreachable", exc_info=True)
        return False


def failure_record(username: str | None, request=None) -> None:
    _, _, window = _limits()
    try:
        for key, _ in _keys(username, _ip(request)):
            if not cache.add(key, 1, timeout=window):
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.add(key, 1, timeout=window)
    except Exception:
        log.warning("failed sign-in not counted: the cache is unreachable", exc_info=True)


def failures_clear(username: str | None) -> None:
    try:
        for key, _ in _keys(username, None):
            cache.delete(key)
    except Exception:
        log.warning("sign-in count not cleared: the cache is unreachable", exc_info=True)


class SignInThrottleBackend(ModelBackend):
    """Django's model backend that refuses, without checking the password, while the username or the
    address is locked (PermissionDenied stops `authenticate` and counts as a failed sign-in)."""

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
            minutes = max(1, _limits()[2] // 60)
            raise ValidationError(
                f"Too many failed sign-in attempts for this account or from this address. Try again in {minutes} minutes, "
                "or ask an administrator to reset the password.", code="locked")
        return super().clean()


# --- signal receivers (connected in ProfilesConfig.ready) ---------------------------------------


def on_login_failed(sender, credentials, request=None, **kwargs):
    from .audit import audit_record
    from .models import AuditAction

    username = credentials.get("username")
    locked = is_locked(username, request)
    failure_record(username, request)
    audit_record(action=AuditAction.LOGIN_FAILED, request=request, source="admin" if _is_admin(request) else "api",
                 actor_label=f"{username or '?'}"[:150], changes={"locked": locked})


def on_logged_in(sender, request, user, **kwargs):
    from .audit import audit_record
    from .models import AuditAction

    failures_clear(user.get_username())
    audit_record(action=AuditAction.LOGIN, actor=user, request=request, source="admin" if _is_admin(request) else "api")


def _is_admin(request) -> bool:
    return bool(request is not None and getattr(request, "path", "").startswith("/admin"))



class ThrottledBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic for operators on the API, saying plainly when the account is locked."""

    def authenticate_credentials(self, userid, password, request=None):
        if is_locked(userid, request):
            failure_record(userid, request)
            raise exceptions.AuthenticationFailed("Too many failed sign-ins for this account or from this address; try again later.")
        return super().authenticate_credentials(userid, password, request)
