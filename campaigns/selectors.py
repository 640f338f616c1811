"""Reads shared by the API, the admin and tasks: the report, a customer's inbox and joinable activities."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum

from common.operator_queries import OperatorQueryTimeout, operator_query_timeout
from profiles.models import CONSENT_FIELDS, Customer

from .models import Campaign, CampaignKind, CampaignStatus, Delivery, DeliveryStatus, SuppressReason
from .services import control_mask
from .stats import two_proportion


def campaigns_list() -> QuerySet[Campaign]:
    return Campaign.objects.select_related("promoted_item", "created_by").prefetch_related(
        "segments", "excluded_segments"
    )


def inbox_for(customer: Customer, *, limit: int = 50) -> QuerySet[Delivery]:
    """The customer's in-app messages, newest first."""
    return (
        Delivery.objects.filter(customer=customer, status=DeliveryStatus.SENT, campaign__channel="in_app")
        .select_related("campaign")
        .order_by("-sent_at", "-id")[:limit]
    )


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def campaign_report(campaign: Campaign) -> dict:
    """Every figure of the report in two queries: the funnel, suppressions by reason, and the uplift test."""
    d = Delivery.objects.filter(campaign=campaign)
    sent = Q(status=DeliveryStatus.SENT)
    control = Q(is_control=True)
    agg = d.aggregate(
        audience=Count("id"),
        held_out=Count("id", filter=control),
        sent=Count("id", filter=sent),
        delivered=Count("id", filter=sent & Q(delivered_at__isnull=False)),
        opened=Count("id", filter=sent & Q(opened_at__isnull=False)),
        clicked=Count("id", filter=sent & Q(clicked_at__isnull=False)),
        failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
        pending=Count(
            "id", filter=Q(status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING))
        ),
        deferred=Count("id", filter=Q(deferred_until__isnull=False)),
        treated_conv=Count("id", filter=sent & Q(converted_at__isnull=False)),
        control_conv=Count("id", filter=control & Q(converted_at__isnull=False)),
        treated_revenue=Sum("revenue", filter=sent),
        held_out_revenue=Sum("revenue", filter=control),
    )
    by_reason = dict(
        d.filter(status=DeliveryStatus.SUPPRESSED)
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    suppressed = {r.value: by_reason.get(r.value, 0) for r in SuppressReason}
    suppressed["quiet_hours_deferred"] = agg["deferred"]
    test = two_proportion(agg["treated_conv"], agg["sent"], agg["control_conv"], agg["held_out"])
    revenue = agg["treated_revenue"] or Decimal("0")
    control_revenue = agg["held_out_revenue"] or Decimal("0")
    return {
        "campaign": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "channel": campaign.channel,
        "launched_at": campaign.launched_at,
        "attributed_at": campaign.attributed_at,
        "audience": agg["audience"],
        "control": agg["held_out"],
        "suppressed": suppressed,
        "sent": agg["sent"],
        "delivered": agg["delivered"],
        "opened": agg["opened"],
        "clicked": agg["clicked"],
        "failed": agg["failed"],
        "pending": agg["pending"],
        "open_rate": _rate(agg["opened"], agg["sent"]),
        "click_rate": _rate(agg["clicked"], agg["sent"]),
        "conversion": test,
        "attributed_revenue": f"{revenue:.2f}",
        "control_revenue": f"{control_revenue:.2f}",
        "revenue_per_treated": _rate(float(revenue), agg["sent"]),
        "revenue_per_control": _rate(float(control_revenue), agg["held_out"]),
        "goal": {
            "event_type": campaign.goal_event_type,
            "item": campaign.goal_item_id,
            "category": campaign.goal_category,
            "attribution_days": campaign.attribution_days,
        },
    }


def activities_for(customer: Customer) -> list[dict]:
    """Running activity campaigns the customer may join (in an audience segment, in none excluded,
    consenting for the channel, not held out), ranked by the recommender's score for the activity."""
    from recommendations.selectors import recommendations_for

    campaigns = list(
        Campaign.objects.filter(status=CampaignStatus.RUNNING, kind=CampaignKind.ACTIVITY, promoted_item__isnull=False)
        .filter(segments__memberships__customer=customer)
        .distinct()
        .exclude(excluded_segments__memberships__customer=customer)
        .select_related("promoted_item")
    )
    campaigns = [c for c in campaigns if getattr(customer, CONSENT_FIELDS[c.channel])]
    if not campaigns:
        return []
    campaigns = [c for c in campaigns if not bool(control_mask(c.pk, [customer.pk], c.control_percent)[0])]
    scores = {r.item_id: r for r in recommendations_for(customer, kind="activity", limit=100)}
    rows = []
    for c in campaigns:
        rec = scores.get(c.promoted_item_id)
        rows.append(
            {
                "campaign": c,
                "item": c.promoted_item,
                "score": rec.score if rec else None,
                "rank": rec.rank if rec else None,
                "reason": rec.reason_text if rec else "",
            }
        )
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["campaign"].pk))
    return rows


def dashboard_campaigns(limit: int = 10) -> list[dict]:
    """Running campaigns with their uplift, for the operator dashboard (one report per campaign)."""
    from django.urls import reverse

    def pct(x):
        return "–" if x is None else f"{x * 100:.1f}%"

    rows = []
    for campaign in Campaign.objects.filter(status="running").order_by("-launched_at")[:limit]:
        url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        try:  # each report under the operator statement timeout: one huge campaign cannot stall the page
            with operator_query_timeout():
                report = campaign_report(campaign)
        except OperatorQueryTimeout as exc:
            rows.append(
                {
                    "name": campaign.name,
                    "url": url,
                    "sent": "–",
                    "treated_rate": "–",
                    "control_rate": "–",
                    "uplift": f"not shown: {exc}",
                }
            )
            continue
        test = report["conversion"]
        uplift = "–"
        if test.get("uplift_abs") is not None:
            lo, hi = test["uplift_abs_ci"]
            uplift = f"{test['uplift_abs'] * 100:+.1f} pts (95% CI {lo * 100:+.1f} to {hi * 100:+.1f})"
        rows.append(
            {
                "name": campaign.name,
                "url": url,
                "sent": report["sent"],
                "treated_rate": pct(test.get("treated_rate")),
                "control_rate": pct(test.get("control_rate")),
                "uplift": uplift,
            }
        )
    return rows


def recent_campaigns(*, days: int = 30, limit: int = 10, now=None) -> list[dict]:
    """The dashboard's recent campaigns: running ones, then those completed in the last `days`, newest
    first, at most `limit`; each with its audience, messages sent and still pending, and the conversion
    test of the report (treated vs control, `stats.two_proportion`). Two queries whatever the number of
    campaigns; the figures run under the operator statement timeout (`figures_error` says when they did
    not finish). Read-only."""
    from datetime import timedelta

    from django.db.models import Case, IntegerField, Value, When
    from django.utils import timezone

    now = now or timezone.now()
    campaigns = list(
        Campaign.objects.filter(
            Q(status=CampaignStatus.RUNNING)
            | Q(status=CampaignStatus.COMPLETED, completed_at__gte=now - timedelta(days=days))
        )
        .annotate(
            running_first=Case(
                When(status=CampaignStatus.RUNNING, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("running_first", "-launched_at", "-pk")[:limit]
    )
    if not campaigns:
        return []
    sent = Q(status=DeliveryStatus.SENT)
    control = Q(is_control=True)
    error = ""
    try:
        with operator_query_timeout():
            figures = {
                row["campaign_id"]: row
                for row in Delivery.objects.filter(campaign_id__in=[c.pk for c in campaigns])
                .values("campaign_id")
                .order_by()
                .annotate(
                    audience=Count("id"),
                    held_out=Count("id", filter=control),
                    sent=Count("id", filter=sent),
                    pending=Count(
                        "id",
                        filter=Q(status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)),
                    ),
                    treated_conv=Count("id", filter=sent & Q(converted_at__isnull=False)),
                    control_conv=Count("id", filter=control & Q(converted_at__isnull=False)),
                )
            }
    except OperatorQueryTimeout as exc:
        figures, error = {}, str(exc)
    rows = []
    for campaign in campaigns:
        f = figures.get(campaign.pk)
        rows.append(
            {
                "campaign": campaign,
                "audience": f["audience"] if f else None,
                "sent": f["sent"] if f else None,
                "pending": f["pending"] if f else None,
                "conversion": two_proportion(f["treated_conv"], f["sent"], f["control_conv"], f["held_out"])
                if f
                else None,
                "figures_error": error,
            }
        )
    return rows
