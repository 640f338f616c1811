"""What recommendations hold about a customer, for profiles/privacy.py (listed in settings.PRIVACY_HOOKS)."""

from .models import Impression, Recommendation


def export(customer) -> dict:
    suggestions = (
        Recommendation.objects.filter(customer=customer, run__is_active=True, run__channel="")
        .order_by("kind", "rank")
        .values_list("kind", "rank", "item__external_id", "score", "reason_text", "reason", "reason_item__external_id")
    )
    impressions = (
        Impression.objects.filter(customer=customer)
        .order_by("shown_at")
        .values_list("item__kind", "item__external_id", "shown_at", "source", "channel")
    )
    return {
        "recommendations": [
            {
                "kind": kind,
                "rank": rank,
                "item": item,
                "score": score,
                "reason": reason,
                "reason_code": code,
                "reason_item": reason_item,
            }
            for kind, rank, item, score, reason, code, reason_item in suggestions
        ],
        "impressions": [
            {"item_kind": kind, "item": item, "shown_at": shown_at, "source": source, "channel": channel}
            for kind, item, shown_at, source, channel in impressions
        ],
    }


def forget(customer) -> dict:
    removed = Recommendation.objects.filter(customer=customer).delete()[0]
    removed += Impression.objects.filter(customer=customer).delete()[0]
    return {"recommendations": removed}
