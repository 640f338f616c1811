from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        from profiles import privacy

        from .models import Delivery

        privacy.register_exporter("messages", lambda customer: list(
            Delivery.objects.filter(customer=customer).order_by("created_at").values(
                "campaign__name", "status", "reason", "title", "body", "sent_at", "opened_at", "clicked_at", "converted_at")
        ))
        # The delivery stays, so campaign reports keep counting it; what it said to the customer goes.
        privacy.register_forgetter("messages", lambda customer: Delivery.objects.filter(customer=customer).update(title="", body="", items=[]))
