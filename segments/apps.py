from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class SegmentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "segments"
    verbose_name = "Segments"

    audit_actions = "segments.models.SegmentsAuditAction"
    # A marketing operator manages segments in full; an analyst views them.
    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["*"], ANALYST: ["view_*"]}
