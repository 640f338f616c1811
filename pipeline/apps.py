from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class PipelineConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "pipeline"
    verbose_name = "Pipeline"

    audit_actions = "pipeline.models.PipelineAuditAction"
    # Locks are the administrators' business only. A marketing operator starts recomputations.
    role_permissions = {
        ADMINISTRATOR: ["*"],
        MARKETING_OPERATOR: ["view_*", "!view_lease", "run_pipeline"],
        ANALYST: ["view_*", "!view_lease"],
    }

    def ready(self) -> None:
        from django.core import checks

        from .steps import check_backend, check_listed_steps

        checks.register(check_listed_steps)
        checks.register(check_backend)
