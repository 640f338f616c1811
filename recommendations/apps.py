from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class RecommendationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recommendations"
    verbose_name = "Recommendations"

    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["view_*"], ANALYST: ["view_*"]}

    def ready(self) -> None:
        from profiles import pipeline

        from . import services

        def recommendations_step(*, step, progress):
            return services.recommendations_compute(step=step, progress=progress)

        from profiles import privacy

        from .models import Impression, Recommendation

        privacy.register_exporter("recommendations", lambda customer: [
            {"kind": kind, "rank": rank, "item": item, "score": score, "reason": reason, "reason_code": code, "reason_item": reason_item}
            for kind, rank, item, score, reason, code, reason_item in Recommendation.objects.filter(customer=customer, run__is_active=True)
            .order_by("kind", "rank")
            .values_list("kind", "rank", "item__external_id", "score", "reason_text", "reason", "reason_item__external_id")
        ])
        privacy.register_exporter("impressions", lambda customer: [
            {"item_kind": kind, "item": item, "shown_at": shown_at, "source": source}
            for kind, item, shown_at, source in Impression.objects.filter(customer=customer)
            .order_by("shown_at").values_list("item__kind", "item__external_id", "shown_at", "source")
        ])
        privacy.register_forgetter("recommendations", lambda customer: (
            Recommendation.objects.filter(customer=customer).delete()[0] + Impression.objects.filter(customer=customer).delete()[0]
        ))

        pipeline.register_step(
            "recommendations", recommendations_step, order=30,
            description="Suggestions per customer and kind (PureSVD), similar items, cold start by segment, offline metrics.",
            abandon=lambda *, step: services.recommender_run_abandon(step=step),
        )
