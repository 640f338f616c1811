from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class ExperimentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "experiments"
    verbose_name = "Experiments"

    audit_actions = "experiments.models.ExperimentsAuditAction"
    # Marketing operators define, start, stop and decide experiments; assignments and looks are computed.
    role_permissions = {
        ADMINISTRATOR: ["*"],
        MARKETING_OPERATOR: ["view_*", "*_experiment", "*_variant"],
        ANALYST: ["view_*"],
    }
