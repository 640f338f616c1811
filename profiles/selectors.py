"""Reads shared by views, tasks and templates."""

from __future__ import annotations

from .models import ConsentChange, Customer, Event, Profile


def customer_by_external_id(external_id: str) -> Customer | None:
    return Customer.objects.filter(external_id=external_id).first()


def profile_for(customer: Customer) -> Profile | None:
    return Profile.objects.filter(customer=customer).first()


def customer_events_page(customer: Customer, *, page: int = 1, per_page: int = 20) -> tuple[list[Event], bool]:
    """One page of the customer's events, newest first (item loaded), and whether older ones exist.

    One statement on the (customer, occurred_at) index: it reads ``per_page + 1`` index entries past
    the offset, so a page costs the same for a customer with ten events or a million (deep pages of
    a very busy customer pay for the offset, which only an operator paging far back asks for).
    """
    page = max(1, int(page))
    start = (page - 1) * per_page
    rows = list(
        Event.objects.filter(customer=customer)
        .select_related("item")
        .order_by("-occurred_at", "-id")[start : start + per_page + 1]
    )
    return rows[:per_page], len(rows) > per_page


def consent_changes_recent(customer: Customer, *, limit: int = 5) -> list[ConsentChange]:
    """The customer's latest consent changes, newest first, with the operator who made each."""
    return list(ConsentChange.objects.filter(customer=customer).select_related("changed_by").order_by("-at")[:limit])


def consent_channels_stated(customer: Customer) -> set[str]:
    """The channels whose consent the customer (or an operator, or an import) ever stated; the others
    still hold the column's default, which nobody chose."""
    return set(ConsentChange.objects.filter(customer=customer).order_by().values_list("channel", flat=True).distinct())
