from django.apps import AppConfig

from .roles import ADMINISTRATOR


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Access"

    audit_actions = "accounts.models.AccountsAuditAction"
    # API keys and the audit log (which watches the operators) are the administrators' business only.
    role_permissions = {ADMINISTRATOR: ["*"]}

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed
        from django.db.models.signals import post_migrate

        # access: the API keys' and customers' signal receivers; schema: the OpenAPI auth schemes
        # (drf-spectacular registers an extension when its class is defined).
        from . import access, roles, schema, signin  # noqa: F401

        post_migrate.connect(roles.sync_role_permissions, dispatch_uid="accounts.sync_role_permissions")

        # Sign-in protection and its audit trail (accounts/signin.py).
        user_login_failed.connect(signin.on_login_failed, dispatch_uid="accounts.signin.failed")
        user_logged_in.connect(signin.on_logged_in, dispatch_uid="accounts.signin.logged_in")
