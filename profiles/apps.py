from datetime import datetime, timezone

from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "profiles"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import pipeline, roles, schema, services  # noqa: F401 (schema registers OpenAPI extensions)

        post_migrate.connect(roles.sync_role_permissions, dispatch_uid="profiles.sync_role_permissions")

        # Sign-in protection and its audit trail (profiles/signin.py).
        from django.contrib import admin
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import signin

        user_login_failed.connect(signin.on_login_failed, dispatch_uid="profiles.signin.failed")
        user_logged_in.connect(signin.on_logged_in, dispatch_uid="profiles.signin.logged_in")
        admin.site.login_form = signin.ThrottledAdminLoginForm

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
