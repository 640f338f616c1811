from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    audit_actions = "campaigns.models.CampaignsAuditAction"
    # A marketing operator manages campaigns in full (launching, pausing, ...); an analyst views them.
    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["*"], ANALYST: ["view_*"]}

    def ready(self) -> None:
        from profiles import privacy

        from .models import Delivery

        privacy.register_exporter("messages", _export_messages)

        def forget_messages(customer) -> int:
            # The delivery stays, so campaign reports keep counting it (status, times, revenue, control
            # flag); what it said to the customer goes, and so does an error text that may quote them.
            rows = Delivery.objects.filter(customer=customer)
            rows.exclude(error="").update(error=privacy.ERASED_ERROR)
            return rows.update(title="", body="", items=[])

        privacy.register_forgetter("messages", forget_messages)


def _export_messages(customer) -> list[dict]:
    """Every delivery to the customer: the campaign, what it said and carried, what became of it."""
    from profiles.models import Item

    from .models import Delivery

    rows = list(Delivery.objects.filter(customer=customer).order_by("created_at", "id").values(
        "campaign__name", "campaign__channel", "is_control", "status", "reason", "title", "body", "items", "attempts", "error",
        "created_at", "due_at", "deferred_until", "claimed_at", "sent_at", "delivered_at", "opened_at", "clicked_at",
        "converted_at", "revenue"))
    item_ids = {i for r in rows for i in (r["items"] or []) if isinstance(i, int)}
    items = {pk: {"kind": kind, "external_id": ext, "title": title}
             for pk, kind, ext, title in Item.objects.filter(pk__in=item_ids).values_list("pk", "kind", "external_id", "title")}
    for r in rows:
        r["campaign"] = r.pop("campaign__name")
        r["channel"] = r.pop("campaign__channel")
        r["items"] = [items.get(i, {"id": i}) for i in (r["items"] or [])]
        r["revenue"] = None if r["revenue"] is None else str(r["revenue"])
    return rows
