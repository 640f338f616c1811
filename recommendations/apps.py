from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class RecommendationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recommendations"
    verbose_name = "Recommendations"

    role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["view_*"], ANALYST: ["view_*"]}
