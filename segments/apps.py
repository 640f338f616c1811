from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "segments"

    def ready(self) -> None:
        from profiles import pipeline

        from . import services

        def segments_step(*, step, progress, k: int | None = None, method: str | None = None):
            return services.segments_compute(step=step, progress=progress, k=k, method=method)

        pipeline.register_step(
            "segments", segments_step, order=20,
            description="Clustering segments (k-means, elbow + silhouette) and rule segments.",
        )

        from profiles import privacy

        from .models import Membership

        privacy.register_exporter("segments", lambda customer: [
            {"segment": name, "since": since}
            for name, since in Membership.objects.filter(customer=customer).values_list("segment__name", "since")
        ])
        privacy.register_forgetter("memberships", lambda customer: Membership.objects.filter(customer=customer).delete()[0])
