from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "profiles"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import roles, schema, services  # noqa: F401 (schema registers OpenAPI extensions)

        post_migrate.connect(roles.sync_role_permissions, dispatch_uid="profiles.sync_role_permissions")

        # Sign-in protection and its audit trail (profiles/signin.py).
        from django.contrib import admin
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import signin

        user_login_failed.connect(signin.on_login_failed, dispatch_uid="profiles.signin.failed")
        user_logged_in.connect(signin.on_logged_in, dispatch_uid="profiles.signin.logged_in")
        admin.site.login_form = signin.ThrottledAdminLoginForm
