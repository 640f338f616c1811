"""The customer page's words for messages (profiles.customer_page describes the page and its sections).

Campaigns record what happens to a message as the customer's events (message_delivered, opened,
clicked; context ``{"campaign", "delivery", "channel", "interaction"}``), so the messages are already
in the customer's timeline, in time order; this tells them as an operator reads them:
"Opened email “Spring sale”".
"""

from __future__ import annotations

from profiles.models import Event

from .models import Campaign, Channel

_VERBS = {"delivered": "Received", "opened": "Opened", "clicked": "Clicked"}
_CHANNELS = {Channel.IN_APP: "in-app message", Channel.EMAIL: "email", Channel.PUSH: "push notification"}


def message_labels(events: list[Event], *, request) -> dict[int, str]:
    """{event id: text} for the events that record a campaign's message (one read of the campaigns' names)."""
    if not request.user.has_perm("campaigns.view_campaign"):
        return {}
    ours = []
    for event in events:
        context = event.context or {}
        campaign, what = context.get("campaign"), context.get("interaction")
        if what in _VERBS and isinstance(campaign, int):
            ours.append((event, campaign, what))
    if not ours:
        return {}
    names = dict(Campaign.objects.filter(pk__in={c for _, c, _ in ours}).values_list("pk", "name"))
    labels = {}
    for event, campaign, what in ours:
        channel = _CHANNELS.get((event.context or {}).get("channel"), "message")
        name = names.get(campaign)
        labels[event.pk] = f"{_VERBS[what]} {channel} " + (f"“{name}”" if name else "(a deleted campaign)")
    return labels
