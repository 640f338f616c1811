"""
A customer's rights over their data: everything the platform holds, as JSON (right of access), and
forgetting them (right to erasure).

Each later app registers what it holds about a customer (an exporter) and how to remove it (a
forgetter) in its AppConfig.ready, so this module never imports them. Forgetting keeps an
anonymous customer row: a campaign's statistics keep counting the delivery, with no personal data
left in it, while the events, profile, memberships and suggestions are gone, so the next pipeline
run has nothing of the customer to learn from.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.db import transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from .models import ConsentChange, Customer, Event, Profile

_EXPORTERS: dict[str, Callable[[Customer], object]] = {}
_FORGETTERS: dict[str, Callable[[Customer], int]] = {}


def register_exporter(name: str, fn: Callable[[Customer], object]) -> None:
    _EXPORTERS[name] = fn


def register_forgetter(name: str, fn: Callable[[Customer], int]) -> None:
    _FORGETTERS[name] = fn


def customer_export(*, customer: Customer) -> dict:
    """Everything held about one customer, as plain JSON-able data."""
    events = Event.objects.filter(customer=customer).select_related("item").order_by("occurred_at")
    profile = Profile.objects.filter(customer=customer).first()
    data = {
        "customer": {k: v for k, v in model_to_dict(customer).items() if k != "id"} | {"created_at": customer.created_at},
        "consent_history": list(ConsentChange.objects.filter(customer=customer).values("channel", "granted", "source", "at")),
        "events": [
            {"external_id": e.external_id, "type": e.type, "item_kind": e.item.kind if e.item else None,
             "item": e.item.external_id if e.item else None, "value": e.value,
             "amount": None if e.amount is None else str(e.amount), "occurred_at": e.occurred_at, "context": e.context}
            for e in events.iterator(chunk_size=2000)
        ],
        "profile": {k: v for k, v in model_to_dict(profile).items() if k not in ("customer", "run")} if profile else None,
    }
    for name, fn in _EXPORTERS.items():
        data[name] = fn(customer)
    data["exported_at"] = timezone.now()
    return data


def customer_forget(*, customer: Customer, by=None, source: str = "system", request=None) -> dict:
    """Remove the customer's events, profile, memberships, suggestions and personal fields, in one transaction.

    The audit log records who did it and names the customer by the pseudonym erasure gives them."""
    from .audit import audit_record, shell_actor
    from .models import AuditAction

    with transaction.atomic():
        counts = {name: fn(customer) for name, fn in _FORGETTERS.items()}
        counts["events"] = Event.objects.filter(customer=customer).delete()[0]
        counts["profile"] = Profile.objects.filter(customer=customer).delete()[0]
        counts["consent_history"] = ConsentChange.objects.filter(customer=customer).delete()[0]
        token = hashlib.sha256(f"{customer.pk}:{customer.external_id}".encode()).hexdigest()[:16]
        customer.external_id = f"forgotten-{token}"
        customer.name = ""
        customer.email = ""
        customer.time_zone = "UTC"
        customer.attributes = {"forgotten_at": timezone.now().isoformat()}
        customer.consent_in_app = customer.consent_email = customer.consent_push = False
        customer.consent_updated_at = timezone.now()
        customer.save()
        audit_record(action=AuditAction.CUSTOMER_FORGOTTEN, actor=by, request=request, source=source, target=customer,
                     target_label=customer.external_id, actor_label=shell_actor() if source == "shell" else "",
                     changes={"removed": counts})
    return counts
