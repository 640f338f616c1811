from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"
    verbose_name = "Campaigns"

    audit_actions = "campaigns.models.CampaignsAuditAction"
    # A marketing operator manages campaigns in full (launching, pausing, ...); an analyst views them.
    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["*"], ANALYST: ["view_*"]}
