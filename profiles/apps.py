from datetime import datetime, timezone

from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class ProfilesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "profiles"

    audit_actions = "profiles.models.ProfilesAuditAction"
    # Locks are the administrators' business only. Beyond viewing, a marketing operator changes
    # customers' consent (the customer page) and starts recomputations.
    # run_pipeline and view_lease move to the pipeline app.
    role_permissions = {
        ADMINISTRATOR: ["*"],
        MARKETING_OPERATOR: ["view_*", "!view_lease", "change_customer", "run_pipeline"],
        ANALYST: ["view_*", "!view_lease"],
    }

    def ready(self) -> None:
        from . import pipeline, services

        def profiles_step(*, step, progress, incremental: bool = False, as_of: str | None = None):
            # `as_of` (ISO 8601) computes profiles as of a past moment, e.g. for a historical dataset.
            now = datetime.fromisoformat(as_of) if as_of else None
            if now is not None and now.tzinfo is None:
                now = now.replace(tzinfo=timezone.utc)
            return services.profiles_compute(step=step, incremental=incremental, progress=progress, now=now)

        pipeline.register_step(
            "profiles", profiles_step, order=10,
            description="Per-customer features: RFM, interests, price band, activity, lifecycle.",
        )
