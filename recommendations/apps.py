from django.apps import AppConfig


class RecommendationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recommendations"
    verbose_name = "Recommendations"

    def ready(self) -> None:
        from profiles import pipeline

        from . import services

        def recommendations_step(*, step, progress):
            return services.recommendations_compute(step=step, progress=progress)

        pipeline.register_step(
            "recommendations", recommendations_step, order=30,
            description="Suggestions per customer and kind (PureSVD), similar items, cold start by segment, offline metrics.",
        )
