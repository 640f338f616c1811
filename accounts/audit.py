"""
The audit log: who did what, when, for operator actions (segments, campaigns, consent, erasure,
API keys, recomputations, sign-ins). Every app declares its own actions (accounts/actions.py) and
records them through `audit_record`; the admin shows the log read-only (Audit log) and nobody can
change or delete an entry through it.

An entry never holds a customer's personal data: customers are named by their external id (a
forgotten customer by the pseudonym erasure gave it), and changes list field names and
non-personal values only.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import models
from django.utils import timezone

from .models import AuditEntry

logger = logging.getLogger(__name__)


def client_ip(request) -> str | None:
    """The caller's address: the peer's, or behind TRUSTED_PROXY_COUNT proxies the address they forwarded."""
    from .signin import client_ip as forwarded_client_ip  # signin needs the admin forms: imported when used

    return forwarded_client_ip(request)


def actor_of(who) -> tuple[object | None, str]:
    """(user or None, label) for a request's user, a user, an API key principal or None."""
    User = get_user_model()
    if isinstance(who, User):
        return who, who.get_username()
    key = getattr(who, "key", None)
    if key is not None and getattr(key, "prefix", None):
        return None, f"api-key:{key.prefix}"
    if who is None or not getattr(who, "is_authenticated", False):
        return None, "system"
    return None, str(who)[:150]


def shell_actor() -> str:
    try:
        return f"shell:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "shell"


def audit_record(
    *,
    action: str,
    actor=None,
    target=None,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    changes: dict | None = None,
    source: str = "system",
    request=None,
    actor_label: str = "",
) -> AuditEntry:
    """Append one entry. `actor` is a user, a request's principal or None (then `actor_label`, or 'system')."""
    if request is not None and actor is None and not actor_label:
        # The Django request's user (a DRF Request's own .user would re-run API authentication).
        actor = getattr(getattr(request, "_request", request), "user", None)
    user, label = actor_of(actor)
    if actor_label and user is None:
        label = actor_label
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_label = target_label or str(target)[:200]
    return AuditEntry.objects.create(
        actor=user,
        actor_label=label,
        action=action,
        source=source,
        target_type=target_type,
        target_id=str(target_id)[:64],
        target_label=target_label[:200],
        changes=changes or {},
        ip=client_ip(request) if request is not None else None,
        at=timezone.now(),
    )


def form_changes(form, *, exclude: Iterable[str] = (), personal: Iterable[str] = ()) -> dict:
    """What an admin form changed: {field: new value} for plain values, '(changed)' for the `personal` ones
    (their values are personal data: the entry records that they changed, never the values)."""
    changed = {}
    skip = set(exclude)
    personal = set(personal)
    for name in form.changed_data:
        if name in skip:
            continue
        value = form.cleaned_data.get(name)
        if name in personal:
            changed[name] = "(changed)"
        elif isinstance(value, models.Model):
            changed[name] = str(value)[:200]
        elif isinstance(value, (models.QuerySet, list, tuple, set)):
            changed[name] = [str(v)[:100] for v in list(value)[:50]]
        elif isinstance(value, (str, int, float, bool, dict)) or value is None:
            changed[name] = value if not isinstance(value, str) else value[:500]
        else:
            changed[name] = str(value)[:500]
    return changed


class AuditedAdminMixin:
    """For a ModelAdmin: record created / changed / deleted objects in the audit log.

    Set `audit_actions = (created, changed, deleted)` on the admin class; `audit_exclude` names
    form fields whose changes are not worth an entry (e.g. bookkeeping), `audit_personal` those whose
    values are personal data (a customer's name, e-mail, ...): the entry says they changed."""

    audit_actions: tuple[str, str, str] = ("", "", "")
    audit_exclude: tuple[str, ...] = ()
    audit_personal: tuple[str, ...] = ()

    def audit_label(self, obj) -> str:
        """How the log names the object (override where str() would carry personal data)."""
        return str(obj)[:200]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        created, changed, _ = self.audit_actions
        changes = form_changes(form, exclude=self.audit_exclude, personal=self.audit_personal)
        if change and not changes:
            return
        audit_record(
            action=changed if change else created,
            request=request,
            target=obj,
            target_label=self.audit_label(obj),
            changes=changes,
            source="admin",
        )

    def delete_model(self, request, obj):
        label, pk = self.audit_label(obj), obj.pk
        super().delete_model(request, obj)
        audit_record(
            action=self.audit_actions[2],
            request=request,
            target_type=obj._meta.label_lower,
            target_id=str(pk),
            target_label=label,
            source="admin",
        )

    def delete_queryset(self, request, queryset):
        gone = [(str(o.pk), self.audit_label(o)) for o in queryset]
        model = queryset.model._meta.label_lower
        super().delete_queryset(request, queryset)
        for pk, label in gone:
            audit_record(
                action=self.audit_actions[2],
                request=request,
                target_type=model,
                target_id=pk,
                target_label=label,
                source="admin",
            )
