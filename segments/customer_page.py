"""The customer page's segment chips (profiles.customer_page describes the page and its sections)."""

from __future__ import annotations

from django.urls import reverse

from profiles.customer_page import Section
from profiles.models import Customer

from .models import Membership

CHIPS_SHOWN = 12


def segments(customer: Customer, *, request) -> Section | None:
    """The active segments the customer belongs to, as chips linking to each segment."""
    if not request.user.has_perm("segments.view_membership"):
        return None
    link = request.user.has_perm("segments.view_segment")
    # One read on membership_customer_idx: a customer belongs to a handful of segments.
    rows = list(
        Membership.objects.filter(customer=customer, segment__active=True)
        .select_related("segment")
        .order_by("segment__kind", "segment__name")[: CHIPS_SHOWN + 1]
    )
    chips = [
        {
            "name": m.segment.name,
            "kind": m.segment.get_kind_display(),
            "since": m.since,
            "url": reverse("admin:segments_segment_change", args=[m.segment_id]) if link else "",
        }
        for m in rows[:CHIPS_SHOWN]
    ]
    context = {"chips": chips, "more": len(rows) > CHIPS_SHOWN}
    return Section("segments", "Segments", "admin/segments/customer_page.html", context, slot="header")
