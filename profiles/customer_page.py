"""The customer page (the "360"): what every app knows of one customer, on one screen.

The page is a list of **sections**, each a function ``section(customer, *, request) -> Section | None``
listed in ``settings.CUSTOMER_ADMIN_SECTIONS`` in page order. An app that knows something of the
customer writes its section in its own ``customer_page.py`` with a template fragment, so profiles
names no app above it (the import contracts, docs/architecture.md). A section answers ``None`` when
the operator may not see what it shows (the model permission the page's old inline checked) or when
it has nothing to say.

Each section is one bounded, indexed read (docs/profiles.md, "The customer page"): the page must
answer within half a second on a database of a million customers and twenty million events, so
nothing here counts or scans a customer's whole history.

The timeline is the customer's events, newest first, a page at a time; events another app recorded
(a campaign's message delivered, opened, clicked) are told in words by that app's labeller, listed in
``settings.CUSTOMER_TIMELINE_LABELS``: ``labels(events, *, request) -> {event id: text}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from common import display

from . import selectors
from .models import CONSENT_FIELDS, Customer, Event, EventType, Lifecycle, Profile

#: Where a section goes: in the header card (under the figures), the wide left column or the right one.
SLOTS = ("header", "main", "side")
TIMELINE_PER_PAGE = 20
INTERESTS_SHOWN = 8


@dataclass(frozen=True)
class Section:
    """What a section gives the page: a template fragment, the context it is rendered with, its slot."""

    key: str
    title: str
    template: str
    context: dict = field(default_factory=dict)
    slot: str = "main"


def sections_for(customer: Customer, *, request) -> dict[str, list[Section]]:
    """The page's sections by slot, in the order settings.CUSTOMER_ADMIN_SECTIONS lists them."""
    by_slot: dict[str, list[Section]] = {slot: [] for slot in SLOTS}
    for path in settings.CUSTOMER_ADMIN_SECTIONS:
        section = import_string(path)(customer, request=request)
        if section is not None:
            by_slot[section.slot].append(section)
    return by_slot


# ------------------------------------------------------------------------------ the header card

_CHANNEL_LABELS = {"in_app": "In-app", "email": "Email", "push": "Push"}
_LIFECYCLE_TONES = {
    Lifecycle.NEW: "new",
    Lifecycle.ACTIVE: "good",
    Lifecycle.AT_RISK: "warn",
    Lifecycle.LAPSED: "bad",
    Lifecycle.NEVER_BOUGHT: "none",
}


def _profile(customer: Customer) -> Profile | None:
    """The customer's profile, read once per page (the reverse one-to-one caches it on the instance)."""
    try:
        return customer.profile
    except Profile.DoesNotExist:
        return None


def display_name(customer: Customer) -> str:
    """What the page calls the customer: their name, else their email, else the shop's id for them."""
    return customer.name or customer.email or customer.external_id


def _date(moment: datetime) -> str:
    local = timezone.localtime(moment)
    return f"{local.day} {local:%b %Y}"


def _window() -> str:
    days = float(settings.PROFILE_WINDOW_DAYS)
    return "12 months" if round(days) in (365, 366) else display.days(days)


def _figures(profile: Profile) -> list[dict]:
    """The header card's figures, as (label, value, note) in words and formatted numbers."""
    window = _window()
    recency = profile.recency_days
    if recency is None:
        last_purchase = "never"
    else:
        last_purchase = "today" if recency < 1 else f"{display.days(recency)} ago"
    if profile.rfm_code == "000":
        rfm = "not a buyer"
    else:
        rfm = f"R{profile.r_score} · F{profile.f_score} · M{profile.m_score}"
    return [
        {"label": "Last purchase", "value": last_purchase, "note": ""},
        {"label": f"Orders ({window})", "value": display.number(profile.frequency), "note": ""},
        {"label": f"Spend ({window})", "value": display.money(profile.monetary), "note": ""},
        {"label": "Average order", "value": display.money(profile.avg_order_value), "note": ""},
        {"label": "Orders (all time)", "value": display.number(profile.orders_total), "note": ""},
        {
            "label": "Last seen",
            "value": _date(profile.last_seen) if profile.last_seen else "never",
            "note": display.ago(profile.last_seen) if profile.last_seen else "",
        },
        {
            "label": "RFM",
            "value": rfm,
            "note": "",
            "hint": "Recency, frequency and spend scores: 1 (lowest) to 5 (best)",
        },
    ]


def summary(customer: Customer, *, request) -> Section:
    """Who the customer is and how they buy: lifecycle, RFM, spend, orders, last seen, consent."""
    profile = _profile(customer) if request.user.has_perm("profiles.view_profile") else None
    stated = selectors.consent_channels_stated(customer)
    consent = []
    for channel, column in CONSENT_FIELDS.items():
        value = getattr(customer, column)
        if channel in stated:
            consent.append({"channel": _CHANNEL_LABELS[channel], "answer": "yes" if value else "no", "known": True})
        else:
            # never stated: the column holds its default, which the campaigns follow
            consent.append(
                {
                    "channel": _CHANNEL_LABELS[channel],
                    "answer": "unknown",
                    "known": False,
                    "default": "yes" if value else "no",
                }
            )
    context = {
        "customer": customer,
        "name": display_name(customer),
        "email": customer.email if customer.email != display_name(customer) else "",
        "profile": profile,
        "consent": consent,
    }
    if profile is not None:
        context.update(
            lifecycle=profile.get_lifecycle_display(),
            lifecycle_tone=_LIFECYCLE_TONES.get(profile.lifecycle, "none"),
            figures=_figures(profile),
        )
    return Section("summary", "Customer", "admin/profiles/customer/section_summary.html", context, slot="header")


# ------------------------------------------------------------------------------ predictions


def _horizon(days: int) -> str:
    return f"the next {display.days(days)}"


def predictions(customer: Customer, *, request) -> Section | None:
    """What the models expect of the customer over the horizon after the last recomputation (docs/profiles.md,
    "Predictions"): chance still a buyer, orders, spend, churn risk, next order; "from the population" where
    the customer has too little history of their own."""
    if not request.user.has_perm("profiles.view_profile"):
        return None
    profile = _profile(customer)
    if profile is None:
        return None
    context: dict = {"basis": profile.prediction_basis, "as_of": _date(profile.computed_at)}
    # category affinity: the calibrated chance of buying from each candidate category, the likeliest first
    affinity = sorted(
        ((p, c) for c, p in (profile.affinity or {}).items() if isinstance(p, (int, float))), reverse=True
    )
    context["affinity"] = [{"category": c, "chance": display.percent(p, 0)} for p, c in affinity[:4]]
    if profile.prediction_basis:
        horizon = _horizon(profile.prediction_horizon_days or settings.PREDICTION_HORIZON_DAYS)
        prior = profile.prediction_basis == "prior"
        if profile.next_order_at is not None:
            next_order = f"by {_date(profile.next_order_at)}"
        else:
            next_order = "none yet" if prior else "not expected soon"
        context.update(
            horizon=horizon,
            prior=prior,
            figures=[
                {
                    "label": "Chance still a buyer",
                    "value": "not a buyer yet" if prior else display.percent(profile.p_alive, 0),
                    "hint": "How likely the customer still buys from the shop at all",
                },
                {"label": f"Expected orders in {horizon}", "value": display.number(profile.predicted_orders, 1)},
                {"label": f"Expected spend in {horizon}", "value": display.money(profile.predicted_value)},
                {
                    "label": "Churn risk",
                    "value": display.percent(profile.churn_risk, 0),
                    "hint": f"The chance of no order in {horizon}",
                },
                {
                    "label": "Next order",
                    "value": next_order,
                    "hint": "The date by which the customer has even odds of having ordered again",
                },
            ],
        )
    return Section(
        "predictions", "Predictions", "admin/profiles/customer/section_predictions.html", context, slot="side"
    )


# ------------------------------------------------------------------------------ interests


def interests(customer: Customer, *, request) -> Section | None:
    """The profile's share of interest per category, largest first, as a bar chart (and a table)."""
    if not request.user.has_perm("profiles.view_profile"):
        return None
    profile = _profile(customer)
    shares = sorted(((profile.interests or {}) if profile else {}).items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [(category or "(no category)", float(share)) for category, share in shares[:INTERESTS_SHOWN]]
    rows = [{"category": c, "share": display.percent(s, 0)} for c, s in shown]
    chart = {"labels": [c for c, _ in shown], "values": [round(s * 100, 1) for _, s in shown]}
    context = {"rows": rows, "chart": chart, "more": max(0, len(shares) - len(shown))}
    return Section("interests", "Interests", "admin/profiles/customer/section_interests.html", context, slot="side")


# ------------------------------------------------------------------------------ the timeline


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    text: str
    kind: str  # the event type, for the entry's icon
    ago: str


def _item_name(event: Event) -> str:
    item = event.item
    if item is None:
        return ""
    name = item.title or f"{item.get_kind_display().lower()} {item.external_id}"
    return f"{name} ({item.category})" if item.category else name


def describe_event(event: Event) -> str:
    """One event in words, as an operator reads it: "Bought Lamp model 3 (Home) for €45.00"."""
    item = _item_name(event)
    amount = f" for {display.money(event.amount)}" if event.amount is not None else ""
    t = event.type
    if t == EventType.PURCHASE:
        return f"Bought {item or 'something'}{amount}"
    if t == EventType.RETURN:
        return f"Returned {item or 'something'}" + (f" ({display.money(event.amount)} refunded)" if amount else "")
    if t == EventType.RATING:
        value = f": {display.number(event.value, 0 if float(event.value).is_integer() else 1)}" if event.value else ""
        return f"Rated {item or 'something'}{value}"
    if t == EventType.SEARCH:
        query = (event.context or {}).get("query") or (event.context or {}).get("q")
        return f"Searched for “{query}”" if query else "Searched the shop"
    verbs = {
        EventType.VIEW: "Viewed",
        EventType.CLICK: "Clicked",
        EventType.ADD_TO_CART: "Added to the cart:",
        EventType.FAVORITE: "Saved as a favourite:",
        EventType.LIKE: "Liked",
        EventType.COMMENT: "Commented on",
        EventType.POST: "Posted",
        EventType.SHARE: "Shared",
        EventType.MESSAGE_DELIVERED: "Received a message about",
        EventType.MESSAGE_OPENED: "Opened a message about",
        EventType.MESSAGE_CLICKED: "Clicked a message about",
    }
    if t in verbs and item:
        return f"{verbs[t]} {item}{amount}"
    return f"{EventType(t).label if t in EventType.values else display.words(t)}{amount}"


def timeline_page(customer: Customer, *, page: int, request, now: datetime | None = None) -> dict:
    """One page of the timeline: entries newest first, and the neighbouring page numbers."""
    events, older = selectors.customer_events_page(customer, page=page, per_page=TIMELINE_PER_PAGE)
    labels: dict[int, str] = {}
    for path in getattr(settings, "CUSTOMER_TIMELINE_LABELS", []):
        labels.update(import_string(path)(events, request=request))
    now = now or timezone.now()
    entries = [
        TimelineEntry(e.occurred_at, labels.get(e.pk) or describe_event(e), e.type, display.ago(e.occurred_at, now))
        for e in events
    ]
    return {
        "entries": entries,
        "page": page,
        "older": page + 1 if older else None,
        "newer": page - 1 if page > 1 else None,
    }


def _page_number(request) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def timeline(customer: Customer, *, request) -> Section | None:
    """What the customer did and received, newest first, twenty at a time."""
    if not request.user.has_perm("profiles.view_event"):
        return None
    context = timeline_page(customer, page=_page_number(request), request=request)
    for which in ("older", "newer"):
        # the pager keeps the rest of the query (the admin's _changelist_filters, for the way back to the list)
        if context[which]:
            query = request.GET.copy()
            query["page"] = context[which]
            context[f"{which}_url"] = f"?{query.urlencode()}#section-timeline"
    return Section("timeline", "Timeline", "admin/profiles/customer/section_timeline.html", context)


# ------------------------------------------------------------------------------ consent history


def consent_history(customer: Customer, *, request) -> Section | None:
    """The latest consent changes in words: "Email consent withdrawn · by boss in the admin · 2 days ago"."""
    if not request.user.has_perm("profiles.view_consentchange"):
        return None
    now = timezone.now()
    rows = [
        {
            "text": f"{_CHANNEL_LABELS.get(c.channel, c.channel)} consent {'given' if c.granted else 'withdrawn'}",
            "source": display.words(c.source),
            "by": c.changed_by.get_username() if c.changed_by else "",
            "at": c.at,
            "ago": display.ago(c.at, now),
        }
        for c in selectors.consent_changes_recent(customer, limit=5)
    ]
    if not rows:
        return None
    return Section(
        "consent", "Consent history", "admin/profiles/customer/section_consent.html", {"rows": rows}, slot="side"
    )
