from django.apps import AppConfig

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR


class RecommendationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recommendations"
    verbose_name = "Recommendations"

    audit_actions = "recommendations.models.RecommendationsAuditAction"
    # Operators choose and tune recommender configurations; the runs and their rows are the pipeline's.
    role_permissions = {
        ADMINISTRATOR: ["*"],
        MARKETING_OPERATOR: ["view_*", "*_recommenderconfig", "*_blendcomponent"],
        ANALYST: ["view_*"],
    }
