"""Reads shared by the API, the admin and tasks: the report, a customer's inbox and joinable activities."""

from __future__ import annotations

import math
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum

from common.operator_queries import OperatorQueryTimeout, operator_query_timeout
from experiments import stats as xstats
from profiles.models import CONSENT_FIELDS, Customer

from .models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    StatusChange,
    SuppressReason,
)
from .services import campaign_variants, control_mask, variant_shares
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
        "variants": variant_report(campaign),
    }


# --- the variants' test (docs/campaigns.md, "Variants") ------------------------------------------

#: experiments.stats' verdicts → the report's codes (no guard-rails here, so never GUARDRAIL_HARM).
VARIANT_VERDICTS = {
    xstats.NO_DIFFERENCE_YET: "no_difference_yet",
    xstats.B_BETTER: "better",
    xstats.A_BETTER: "a_better",
    xstats.SAMPLE_RATIO_MISMATCH: "sample_ratio_mismatch",
}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pair(lo, hi) -> list[float] | None:
    lo, hi = _finite(lo), _finite(hi)
    return None if lo is None or hi is None else [lo, hi]


def _signed(x: float) -> str:
    from common import display

    return display.signed_percent(x).rstrip("%")


def variant_report(campaign: Campaign) -> dict | None:
    """The variants' part of the report (None for a campaign without variants), in one query.

    Per variant, among its test deliveries (``variant_test``: the winner send to the rest is not part
    of the test): sent, opened, clicked and converted (the report's goal and attribution window) with
    rates and their 95% intervals; against variant A, the conversion difference with the mSPRT's
    always-valid interval and p-value (``experiments.stats.analyze``, the campaign's
    ``variant_mde``), the sample-ratio check of the sent counts against the shares, and the verdict.
    A winner is named only when the sequential test says so.
    """
    variants = campaign_variants(campaign)
    if len(variants) < 2:
        return None
    sent = Q(status=DeliveryStatus.SENT)
    opened = Q(opened_at__isnull=False) | Q(clicked_at__isnull=False)
    groups = list(
        Delivery.objects.filter(campaign=campaign)
        .values("variant_id", "variant_test")
        .order_by()
        .annotate(
            assigned=Count("id"),
            sent=Count("id", filter=sent),
            opened=Count("id", filter=sent & opened),
            clicked=Count("id", filter=sent & Q(clicked_at__isnull=False)),
            converted=Count("id", filter=sent & Q(converted_at__isnull=False)),
            waiting=Count("id", filter=Q(status=DeliveryStatus.WAITING)),
        )
    )
    test = {g["variant_id"]: g for g in groups if g["variant_test"] and g["variant_id"] is not None}
    rest = sum(g["assigned"] for g in groups if not g["variant_test"] and g["variant_id"] is not None)
    waiting = sum(g["waiting"] for g in groups)
    empty = {"assigned": 0, "sent": 0, "opened": 0, "clicked": 0, "converted": 0}
    counts = [test.get(v.pk, empty) for v in variants]
    shares = variant_shares(variants)
    mde = float(campaign.variant_mde) / 100.0

    def estimate(what: str, c: dict) -> xstats.Estimate:
        return xstats.mean_estimate(c["sent"], c[what], c[what])

    analysis = xstats.analyze(
        [estimate("converted", c) for c in counts], mde=mde, alpha=xstats.DEFAULT_ALPHA, shares=shares
    )
    level = 1 - analysis.primary[0].alpha  # each comparison at alpha / (number of treatments)
    rows = []
    for i, (v, c) in enumerate(zip(variants, counts, strict=True)):
        row = {
            "label": v.label,
            "variant": v.pk,
            "share": shares[i],
            "sent": c["sent"],
            "opened": c["opened"],
            "clicked": c["clicked"],
            "converted": c["converted"],
        }
        for what, name in (("opened", "open_rate"), ("clicked", "click_rate"), ("converted", "conversion_rate")):
            e = estimate(what, c)
            row[name] = _finite(e.value) if c["sent"] else None
            row[f"{name}_ci"] = _pair(*e.ci()) if c["sent"] >= 2 else None
        comp = analysis.primary[i - 1] if i else None
        row["difference"] = _finite(comp.difference) if comp is not None else None
        row["difference_ci"] = _pair(*comp.always_valid_ci) if comp is not None else None
        row["p_value"] = _finite(comp.always_valid_p) if comp is not None else None
        row["significant"] = bool(comp.significant) if comp is not None and row["p_value"] is not None else None
        rows.append(row)
    verdict = VARIANT_VERDICTS.get(analysis.verdict, analysis.verdict)
    winner = variants[analysis.winner].label if analysis.winner is not None else None
    pct = f"{level * 100:g}%"
    if verdict == "sample_ratio_mismatch":
        text = (
            "Sample ratio mismatch: the split is broken, do not trust this test "
            f"(chi-square p = {analysis.srm['p_value']:.2g})."
        )
    elif verdict == "better":
        r = rows[analysis.winner]
        lo, hi = r["difference_ci"]
        text = (
            f"{winner} converts better: {_signed(r['difference'])} points "
            f"({pct} always-valid interval {_signed(lo)} to {_signed(hi)})."
        )
    elif verdict == "a_better":
        others = ", ".join(r["label"] for r in rows[1:])
        worst = max(rows[1:], key=lambda r: r["difference"])
        lo, hi = worst["difference_ci"]
        text = (
            f"{winner} converts better than {others}: {worst['label']} {_signed(worst['difference'])} points "
            f"({pct} always-valid interval {_signed(lo)} to {_signed(hi)})."
        )
    else:
        text = "No difference yet: keep the test running or stop it."
    srm_result = analysis.srm or {}
    out = {
        "mde": mde,
        "alpha": xstats.DEFAULT_ALPHA,
        "level": level,
        "rows": rows,
        "srm": {
            "chi2": _finite(srm_result.get("chi2", 0.0)),
            "p_value": _finite(srm_result.get("p_value", 1.0)),
            "mismatch": bool(srm_result.get("mismatch", False)),
        },
        "verdict": verdict,
        "winner": winner,
        "text": text,
        "test_share": float(campaign.variant_test_percent) / 100.0
        if campaign.variant_test_percent is not None
        else None,
        "test_hours": campaign.variant_test_hours if campaign.variant_test_percent is not None else None,
        "waiting": waiting,
        "winner_sent": None,
    }
    if campaign.winner_sent_at is not None:
        out["winner_sent"] = {
            "at": campaign.winner_sent_at,
            "variant": campaign.winner.label if campaign.winner_id else None,
            "customers": rest,
            "text": campaign.winner_verdict,
        }
    return out


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


# --- the report in words (the admin's campaign page) ---------------------------------------------
#
# The REST report above keeps its shape (clients read its codes and fractions); these helpers turn it
# into what an operator reads: counts and percentages, the conversion window, the uplift's interval and
# significance in words, the suppression reasons as sentences.

#: What the channel is called inside a sentence ("no consent for email").
CHANNEL_WORDS = {"in_app": "in-app messages", "email": "email", "push": "push notifications"}

FUNNEL_STEPS = ("sent", "delivered", "opened", "clicked")


def campaign_funnel(campaign: Campaign) -> list[dict]:
    """Sent → delivered → opened → clicked, each step counting the messages that got at least that far
    (an open reported before its delivery counts as delivered too), so a step never exceeds the one
    before it. Each step: its count, its share of the step before and its share of the sent."""
    sent = Q(status=DeliveryStatus.SENT)
    clicked = Q(clicked_at__isnull=False)
    opened = Q(opened_at__isnull=False) | clicked
    delivered = Q(delivered_at__isnull=False) | opened
    counts = Delivery.objects.filter(campaign=campaign).aggregate(
        sent=Count("id", filter=sent),
        delivered=Count("id", filter=sent & delivered),
        opened=Count("id", filter=sent & opened),
        clicked=Count("id", filter=sent & clicked),
    )
    steps, previous = [], None
    for name in FUNNEL_STEPS:
        n = counts[name]
        steps.append(
            {
                "step": name,
                "label": name.capitalize(),
                "count": n,
                "of_previous": None if previous is None else _rate(n, previous),
                "of_sent": _rate(n, counts["sent"]),
            }
        )
        previous = n
    return steps


def suppression_words(campaign: Campaign, code: str) -> str:
    """A suppression reason of the report as a phrase: ``no_consent`` on an email campaign → "no consent
    for email"; ``frequency_cap`` → "frequency cap: 3 messages in 7 days" (the campaign's cap)."""
    from django.conf import settings

    channel = CHANNEL_WORDS.get(campaign.channel, campaign.channel)
    if code == SuppressReason.CONTROL:
        return "held out as the control group"
    if code == SuppressReason.NO_CONSENT:
        return f"no consent for {channel}"
    if code == SuppressReason.FREQUENCY_CAP:
        count = campaign.frequency_cap_count
        count = settings.CAMPAIGN_FREQUENCY_CAP_COUNT if count is None else count
        days = campaign.frequency_cap_days
        days = settings.CAMPAIGN_FREQUENCY_CAP_DAYS if days is None else days
        return f"frequency cap: {count} message{'s' if count != 1 else ''} in {days} day{'s' if days != 1 else ''}"
    if code == SuppressReason.NO_ADDRESS:
        return "no email address" if campaign.channel == "email" else f"no address for {channel}"
    if code == SuppressReason.EXPIRED:
        return "the campaign had ended before the send"
    if code == "quiet_hours_deferred":
        return "waited for the customer's send window (quiet hours)"
    try:
        return str(SuppressReason(code).label).lower()
    except ValueError:
        return code.replace("_", " ")


def _goal_words(campaign: Campaign) -> str:
    from profiles.models import EventType

    try:
        what = str(EventType(campaign.goal_event_type).label).lower()
    except ValueError:
        what = campaign.goal_event_type.replace("_", " ")
    if campaign.goal_item_id:
        return f"{what} of {campaign.goal_item}"
    if campaign.goal_category:
        return f"{what} in {campaign.goal_category}"
    return what


def campaign_report_words(campaign: Campaign, report: dict) -> dict:
    """The report (``campaign_report``'s answer) as an operator reads it: the funnel with percentages, the
    conversions apart with their attribution window, the uplift with its interval and significance in
    words, revenue with the currency and the suppression reasons as phrases. Also the charts' data."""
    from common import display

    c = report["conversion"]
    days = campaign.attribution_days
    window = f"within {days} day{'s' if days != 1 else ''} of the message"
    funnel = campaign_funnel(campaign)
    for step in funnel:
        step["count_text"] = display.number(step["count"])
        step["of_previous_text"] = display.percent(step["of_previous"]) if step["of_previous"] is not None else ""
        step["of_sent_text"] = display.percent(step["of_sent"])

    treated_conv, control_conv = c["treated_conversions"], c["control_conversions"]
    noun = "conversion" if treated_conv == 1 else "conversions"
    headline = f"{display.number(treated_conv)} {noun} {window}"
    if c["treated_n"] and treated_conv + control_conv == 0:
        headline = f"No conversions yet {window}"
    elif c["treated_rate"] is not None:
        headline += f" — {display.percent(c['treated_rate'])} of recipients"
        if c["control_rate"] is not None:
            headline += f", against {display.percent(c['control_rate'])} in the control group"
    elif not c["treated_n"]:
        headline += " — no message sent yet"
    detail = (
        f"{display.number(treated_conv)} of {display.number(c['treated_n'])} recipients and "
        f"{display.number(control_conv)} of {display.number(c['control_n'])} held out made a "
        f"{_goal_words(campaign)} {window}."
    )

    uplift = {"measurable": False, "significant": None, "text": "", "relative": "", "significance": ""}
    if not c["control_n"]:
        uplift["why_not"] = "no control group — uplift cannot be measured"
    elif not c["treated_n"]:
        uplift["why_not"] = "no message sent yet — uplift cannot be measured"
    elif treated_conv + control_conv == 0:
        uplift["why_not"] = "no conversions yet — uplift cannot be measured"
    else:
        lo, hi = c["uplift_abs_ci"]
        uplift.update(
            measurable=True,
            significant=bool(c["significant"]),
            text=f"{display.points(c['uplift_abs'])} (95% confidence interval: "
            f"{display.signed_percent(lo).rstrip('%')} to {display.points(hi)})",
            significance=("significant" if c["significant"] else "not significant")
            + f" ({display.p_value(c['p_value'])})",
        )
        if c["uplift_rel"] is not None:
            uplift["relative"] = f"{display.signed_percent(c['uplift_rel'], 0)} relative to the control group"

    revenue = (
        f"{display.money(report['attributed_revenue'])} from recipients "
        f"({display.money(report['revenue_per_treated'])} per recipient)"
    )
    if report["revenue_per_control"] is not None:
        revenue += (
            f", against {display.money(report['control_revenue'])} from the control group "
            f"({display.money(report['revenue_per_control'])} per customer)"
        )

    suppressed = [
        {"code": code, "label": suppression_words(campaign, code), "count": n, "count_text": display.number(n)}
        for code, n in report["suppressed"].items()
        if n and code not in (SuppressReason.CONTROL, "quiet_hours_deferred")
    ]
    deferred = report["suppressed"].get("quiet_hours_deferred", 0)

    chart = {
        "funnel": {"labels": [s["label"] for s in funnel], "values": [s["count"] for s in funnel]},
        "uplift": None,
    }
    if uplift["measurable"]:
        lo, hi = c["uplift_abs_ci"]
        chart["uplift"] = {
            "point": c["uplift_abs"] * 100,
            "low": lo * 100,
            "high": hi * 100,
            "label": "Uplift, percentage points (95% CI)",
            "significant": uplift["significant"],
        }
    return {
        "variants": variant_report_words(campaign, report.get("variants")),
        "channel": Channel(campaign.channel).label if campaign.channel in Channel.values else campaign.channel,
        "audience": display.number(report["audience"]),
        "control": display.number(report["control"]),
        "control_share": display.percent(_rate(report["control"], report["audience"])),
        "funnel": funnel,
        "failed": report["failed"],
        "pending": report["pending"],
        "conversions": {"headline": headline, "detail": detail, "window": window, "goal": _goal_words(campaign)},
        "uplift": uplift,
        "revenue": revenue,
        "suppressed": suppressed,
        "suppressed_total": display.number(sum(s["count"] for s in suppressed)),
        "deferred": display.number(deferred) if deferred else "",
        "deferred_label": suppression_words(campaign, "quiet_hours_deferred"),
        "chart": chart,
    }


def variant_report_words(campaign: Campaign, v: dict | None) -> dict | None:
    """The variants' part of the report as the console shows it: a row per variant with counts, rates
    and intervals as percentages, the difference against A with its always-valid interval, the verdict,
    the split check and the winner send in words."""
    from common import display

    if v is None:
        return None

    def rate(value, ci):
        if value is None:
            return ""
        text = display.percent(value)
        # no interval where it is a single point (nothing opened yet, say)
        return f"{text} ({display.percent(ci[0])} to {display.percent(ci[1])})" if ci and ci[0] < ci[1] else text

    rows = []
    for r in v["rows"]:
        diff = ""
        if r["difference"] is not None:
            diff = display.points(r["difference"])
            if r["difference_ci"]:
                lo, hi = r["difference_ci"]
                diff += f" ({_signed(lo)} to {_signed(hi)}; {display.p_value(r['p_value'])})"
            else:
                diff += " (not measurable yet)"
        rows.append(
            {
                "label": r["label"],
                "share": display.percent(r["share"], 0),
                "sent": display.number(r["sent"]),
                "opened": rate(r["open_rate"], r["open_rate_ci"]),
                "clicked": rate(r["click_rate"], r["click_rate_ci"]),
                "converted": f"{display.number(r['converted'])} · {rate(r['conversion_rate'], r['conversion_rate_ci'])}"
                if r["sent"]
                else display.number(r["converted"]),
                "difference": diff or "compared against",
                "winner": r["label"] == v["winner"],
            }
        )
    srm = v["srm"]
    split = (
        f"The split does not fit the shares (chi-square {display.p_value(srm['p_value'])})."
        if srm["mismatch"]
        else f"The split fits the shares (chi-square {display.p_value(srm['p_value'])})."
    )
    test = ""
    if v["test_share"] is not None:
        test = (
            f"{display.percent(v['test_share'], 0)} of the recipients get the test; the rest get the winner "
            f"{v['test_hours']} h after the launch."
        )
        if v["winner_sent"] is None and v["waiting"]:
            test += f" {display.number(v['waiting'])} wait for it."
    sent = v["winner_sent"]
    return {
        "rows": rows,
        "verdict": v["verdict"],
        "text": v["text"],
        "split": split,
        "test": test,
        "winner_sent": f"{sent['text']} ({display.number(sent['customers'])} customers, {display.when(sent['at'])})"
        if sent
        else "",
        "mde": display.points(v["mde"]).lstrip("+"),
        "level": display.percent(v["level"], 1).replace(".0%", "%"),
    }


def _status_change_words(change: StatusChange) -> str:
    to, came_from = change.to_status, change.from_status
    if to == came_from:  # no move: the variants' test decided and its winner sent to the rest
        return "Test decided"
    if to == CampaignStatus.RUNNING:
        verb = "Resumed" if came_from == CampaignStatus.PAUSED else "Launched"
    elif to == CampaignStatus.DRAFT:
        verb = "Back to draft"
    else:
        verb = CampaignStatus(to).label if to in CampaignStatus.values else to
    return verb


def campaign_status_history(campaign: Campaign) -> list[dict]:
    """The campaign's status moves, oldest first, in words: "Launched by anna · 2 Dec 14:05"."""
    from django.utils import timezone
    from django.utils.dateformat import format as date_format

    now = timezone.localtime()
    rows = []
    for change in StatusChange.objects.filter(campaign=campaign).select_related("by").order_by("at", "id"):
        at = timezone.localtime(change.at)
        when = date_format(at, "j M H:i" if at.year == now.year else "j M Y H:i")
        what = _status_change_words(change)
        if change.by is not None:
            what += f" by {change.by.get_username()}"
        # the launch's own note ("launch") says nothing the verb does not
        note = "" if change.note.lower() in what.lower() else change.note
        rows.append({"text": f"{what} · {when}", "at": change.at, "note": note})
    return rows
