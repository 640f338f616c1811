from django.apps import AppConfig


class PipelineConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "pipeline"
    verbose_name = "Pipeline"

    def ready(self) -> None:
        from django.core import checks

        from .steps import check_listed_steps

        checks.register(check_listed_steps)
