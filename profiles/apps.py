from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class ProfilesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "profiles"
    verbose_name = "Customers"

    audit_actions = "profiles.models.ProfilesAuditAction"
    # Beyond viewing, a marketing operator changes customers' consent (the customer page).
    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["view_*", "change_customer"], ANALYST: ["view_*"]}
