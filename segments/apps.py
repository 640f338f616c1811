from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


def _abandon_clustering(*, step) -> int:
    """The pipeline found `step`'s worker dead: its clustering run is failed (memberships were never swapped)."""
    from django.utils import timezone

    from .models import ClusteringRun

    return ClusteringRun.objects.filter(step=step, status="running").update(
        status="failed", error="Abandoned: the worker running it stopped.", finished_at=timezone.now())


class SegmentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "segments"

    audit_actions = "segments.models.SegmentsAuditAction"
    # A marketing operator manages segments in full; an analyst views them.
    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["*"], ANALYST: ["view_*"]}

    def ready(self) -> None:
        from profiles import pipeline

        from . import services

        def segments_step(*, step, progress, k: int | None = None, method: str | None = None):
            return services.segments_compute(step=step, progress=progress, k=k, method=method)

        pipeline.register_step(
            "segments", segments_step, order=20,
            description="Clustering segments (k-means, elbow + silhouette) and rule segments.",
            abandon=_abandon_clustering,
        )

        from profiles import privacy

        from .models import Membership

        privacy.register_exporter("segments", lambda customer: [
            {"segment": name, "since": since}
            for name, since in Membership.objects.filter(customer=customer).values_list("segment__name", "since")
        ])
        privacy.register_forgetter("memberships", lambda customer: Membership.objects.filter(customer=customer).delete()[0])
