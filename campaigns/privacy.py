"""What campaigns hold about a customer, for profiles/privacy.py (listed in settings.PRIVACY_HOOKS)."""

from profiles.models import Item
from profiles.privacy import ERASED_ERROR

from .models import Delivery


def export(customer) -> dict:
    """Every delivery to the customer: the campaign, what it said and carried, what became of it."""
    rows = list(
        Delivery.objects.filter(customer=customer)
        .order_by("created_at", "id")
        .values(
            "campaign__name",
            "campaign__channel",
            "is_control",
            "variant__label",
            "variant_test",
            "status",
            "reason",
            "title",
            "body",
            "items",
            "attempts",
            "error",
            "created_at",
            "due_at",
            "deferred_until",
            "claimed_at",
            "sent_at",
            "delivered_at",
            "opened_at",
            "clicked_at",
            "converted_at",
            "revenue",
        )
    )
    item_ids = {i for r in rows for i in (r["items"] or []) if isinstance(i, int)}
    found = Item.objects.filter(pk__in=item_ids).values_list("pk", "kind", "external_id", "title")
    items = {pk: {"kind": kind, "external_id": ext, "title": title} for pk, kind, ext, title in found}
    for r in rows:
        r["campaign"] = r.pop("campaign__name")
        r["channel"] = r.pop("campaign__channel")
        r["variant"] = r.pop("variant__label")
        r["items"] = [items.get(i, {"id": i}) for i in (r["items"] or [])]
        r["revenue"] = None if r["revenue"] is None else str(r["revenue"])
    return {"messages": rows}


def forget(customer) -> dict:
    # The delivery stays, so campaign reports keep counting it (status, times, revenue, control
    # flag); what it said to the customer goes, and so does an error text that may quote them.
    rows = Delivery.objects.filter(customer=customer)
    rows.exclude(error="").update(error=ERASED_ERROR)
    return {"messages": rows.update(title="", body="", items=[])}
