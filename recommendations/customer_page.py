"""The customer page's suggestions, as cards (profiles.customer_page describes the page and its sections)."""

from __future__ import annotations

from profiles.customer_page import Section
from profiles.models import Customer, ItemKind

from . import selectors
from .models import Recommendation

PER_KIND = 3


def _card(rec: Recommendation) -> dict:
    item = rec.item
    reason = rec.reason_text or rec.get_reason_display()
    return {
        "title": item.title or f"{item.get_kind_display().lower()} {item.external_id}",
        "kind": item.get_kind_display(),
        "category": item.category,
        "price": item.price,
        "rank": rec.rank,
        "reason": reason[:1].upper() + reason[1:],
    }


def suggestions(customer: Customer, *, request) -> Section | None:
    """The customer's best suggestions of each kind in the active run, with the reason in words (no scores:
    they only mean something next to each other; the rank says the same)."""
    if not request.user.has_perm("recommendations.view_recommendation"):
        return None
    # What the API serves this customer: their experiment variant's channel, else the shop's own. One
    # read on the (run, customer, kind, rank) unique index, the active run found by its flag.
    channel = selectors.channel_for(customer.external_id)
    rows = list(
        Recommendation.objects.filter(run__is_active=True, run__channel=channel, customer=customer, rank__lte=PER_KIND)
        .select_related("item")
        .order_by("kind", "rank")
    )
    fallback = False
    if not rows:
        # a customer the active run did not know gets what the API would serve: the popular lists
        rows = selectors.fallback_for(customer, kind=ItemKind.PRODUCT, limit=PER_KIND)
        fallback = bool(rows)
    order = list(ItemKind.values)
    rows.sort(key=lambda r: (order.index(r.kind) if r.kind in order else len(order), r.rank))
    context = {"cards": [_card(r) for r in rows], "fallback": fallback, "channel": channel}
    return Section("suggestions", "Suggestions", "admin/recommendations/customer_page.html", context, slot="side")
