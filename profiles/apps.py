from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "profiles"

    def ready(self) -> None:
        from . import pipeline, services

        def profiles_step(*, step, progress, incremental: bool = False):
            return services.profiles_compute(step=step, incremental=incremental, progress=progress)

        pipeline.register_step(
            "profiles", profiles_step, order=10,
            description="Per-customer features: RFM, interests, price band, activity, lifecycle.",
        )
