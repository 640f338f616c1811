"""
A customer's rights over their data: everything the platform holds, as JSON (right of access), and
forgetting them (right to erasure).

Each later app says what it holds about a customer and how to remove it in its own `privacy.py`,
with an `export(customer)` and a `forget(customer)` that each return a dict by name; those modules
are listed in settings.PRIVACY_HOOKS, in order, so this module never imports them. Forgetting
keeps an anonymous customer row: a campaign's statistics keep counting the delivery, with no
personal data left in it, while the events, profile, memberships and suggestions are gone, so the
next pipeline run has nothing of the customer to learn from.

Forgotten customers stay forgotten. The customer row is renamed to a keyed pseudonym (an HMAC of
its id and old external id; nobody without the key can tell whose it was), the copies of their
identity in operators' logs (the admin's history, the audit log) and in delivery error texts are
rewritten, and a keyed hash of the old external id goes into ForgottenCustomer. Events, unsubscribe
links and customer tokens never bring a forgotten customer back; only the shop's explicit customers
upsert (a new sign-up) creates one again, as a new row that old tokens and links do not open.
The key is ERASURE_SECRET_KEY, or SECRET_KEY when that is unset.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from importlib import import_module
from types import ModuleType

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models import Q
from django.forms.models import model_to_dict
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts import access
from accounts.models import AuditEntry

from .models import CONSENT_FIELDS, ConsentChange, Customer, Event, ForgottenCustomer, Profile

#: What a delivery's error text becomes when its customer is forgotten (it may have quoted the address).
ERASED_ERROR = "(text removed when the customer was forgotten)"


@functools.cache
def privacy_hooks() -> list[ModuleType]:
    """The modules of settings.PRIVACY_HOOKS, in order: each has `export(customer)` and `forget(customer)`."""
    return [import_module(path) for path in settings.PRIVACY_HOOKS]


def _forget_hooks(*, setting, **kwargs):
    if setting == "PRIVACY_HOOKS":
        privacy_hooks.cache_clear()


setting_changed.connect(_forget_hooks, dispatch_uid="profiles.privacy.hooks")


def _erasure_key() -> str:
    return settings.ERASURE_SECRET_KEY or settings.SECRET_KEY


def forgotten_digest(external_id: str) -> str:
    """The keyed hash under which a forgotten external id is remembered."""
    return salted_hmac(
        "marketing.erasure.forgotten", external_id, secret=_erasure_key(), algorithm="sha256"
    ).hexdigest()


def pseudonym(*, customer_id: int, external_id: str) -> str:
    """The name a forgotten customer's row takes: keyed, so not derivable from the id and old external id."""
    token = salted_hmac(
        "marketing.erasure.pseudonym", f"{customer_id}:{external_id}", secret=_erasure_key(), algorithm="sha256"
    )
    return f"forgotten-{token.hexdigest()[:24]}"


def forgotten_among(external_ids: Iterable[str]) -> set[str]:
    """Which of these external ids belong to forgotten customers (one hash each, one query per 5,000)."""
    by_digest = {forgotten_digest(e): e for e in set(external_ids)}
    digests = list(by_digest)
    found: set[str] = set()
    for start in range(0, len(digests), 5000):
        part = digests[start : start + 5000]
        found.update(
            by_digest[d] for d in ForgottenCustomer.objects.filter(digest__in=part).values_list("digest", flat=True)
        )
    return found


def _scrub(value, needles: list[str], replacement: str):
    """`value` (text or JSON) with every needle replaced, case-insensitively, in values (not in keys,
    nor in the field-name lists of the admin's change messages)."""
    if isinstance(value, str):
        for needle in needles:
            value = re.sub(re.escape(needle), replacement, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, dict):
        return {k: v if k == "fields" else _scrub(v, needles, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, needles, replacement) for v in value]
    return value


def _scrub_logs(*, customer: Customer, needles: list[str], replacement: str) -> int:
    """Rewrite the admin's history and the audit log where they name this customer."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    n = 0
    ct = ContentType.objects.get_for_model(Customer)
    history = list(LogEntry.objects.filter(content_type=ct, object_id=str(customer.pk)))
    for entry in history:
        entry.object_repr = replacement
        try:  # the admin stores a JSON list of what changed; older entries hold plain text
            entry.change_message = json.dumps(_scrub(json.loads(entry.change_message), needles, replacement))
        except ValueError:
            entry.change_message = _scrub(entry.change_message, needles, replacement)
    LogEntry.objects.bulk_update(history, ["object_repr", "change_message"], batch_size=500)
    n += len(history)
    entries = list(
        AuditEntry.objects.filter(
            Q(target_type=Customer._meta.label_lower, target_id=str(customer.pk))
            | Q(actor_label=f"customer:{needles[0]}")
        )
    )
    for entry in entries:
        if entry.target_type == Customer._meta.label_lower and entry.target_id == str(customer.pk):
            entry.target_label = replacement
        entry.actor_label = _scrub(entry.actor_label, needles, replacement)
        entry.changes = _scrub(entry.changes, needles, replacement)
    AuditEntry.objects.bulk_update(entries, ["target_label", "actor_label", "changes"], batch_size=500)
    return n + len(entries)


def customer_export(*, customer: Customer) -> dict:
    """Everything held about one customer, as plain JSON-able data."""
    events = Event.objects.filter(customer=customer).select_related("item").order_by("occurred_at")
    profile = Profile.objects.filter(customer=customer).first()
    data = {
        "customer": {k: v for k, v in model_to_dict(customer).items() if k != "id"}
        | {"created_at": customer.created_at},
        "consent_history": list(
            ConsentChange.objects.filter(customer=customer).values("channel", "granted", "source", "at")
        ),
        "events": [
            {
                "external_id": e.external_id,
                "type": e.type,
                "item_kind": e.item.kind if e.item else None,
                "item": e.item.external_id if e.item else None,
                "value": e.value,
                "amount": None if e.amount is None else str(e.amount),
                "occurred_at": e.occurred_at,
                "context": e.context,
                "received_at": e.received_at,
            }
            for e in events.iterator(chunk_size=2000)
        ],
        "profile": {k: v for k, v in model_to_dict(profile).items() if k not in ("customer", "run")}
        if profile
        else None,
    }
    for hooks in privacy_hooks():
        data.update(hooks.export(customer))
    data["exported_at"] = timezone.now()
    return data


def customer_forget(*, customer: Customer, by=None, source: str = "system", request=None) -> dict:
    """Remove the customer's events, profile, memberships, suggestions and personal fields, in one transaction.

    The audit log records who did it and names the customer by the pseudonym erasure gives them."""
    from accounts.audit import audit_record, shell_actor

    from .models import ProfilesAuditAction

    with transaction.atomic():
        identity = [v for v in (customer.external_id, customer.email, customer.name) if v]
        alias = pseudonym(customer_id=customer.pk, external_id=customer.external_id)
        ForgottenCustomer.objects.get_or_create(digest=forgotten_digest(customer.external_id))
        counts = {name: n for hooks in privacy_hooks() for name, n in hooks.forget(customer).items()}
        counts["events"] = Event.objects.filter(customer=customer).delete()[0]
        counts["profile"] = Profile.objects.filter(customer=customer).delete()[0]
        counts["consent_history"] = ConsentChange.objects.filter(customer=customer).delete()[0]
        customer.external_id = alias
        customer.name = ""
        customer.email = ""
        customer.time_zone = "UTC"
        customer.attributes = {"forgotten_at": timezone.now().isoformat()}
        for field in CONSENT_FIELDS.values():
            setattr(customer, field, False)
        customer.consent_updated_at = timezone.now()
        customer.save()
        access.access_changed()  # every server process stops trusting the customer's tokens at once
        counts["log_entries_rewritten"] = _scrub_logs(customer=customer, needles=identity, replacement=alias)
        audit_record(
            action=ProfilesAuditAction.CUSTOMER_FORGOTTEN,
            actor=by,
            request=request,
            source=source,
            target=customer,
            target_label=customer.external_id,
            actor_label=shell_actor() if source == "shell" else "",
            changes={"removed": counts},
        )
    return counts
