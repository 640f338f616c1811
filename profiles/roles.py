"""
The operator roles, as Django groups: Administrator, Marketing operator, Analyst.

The groups are created by a migration (profiles 0008); their permissions are (re)assigned after
every `migrate` by `sync_role_permissions`, so a permission that a later app adds (a new model, a
new action such as launching a campaign) reaches the right roles without another migration.
"""
from __future__ import annotations

PRODUCT_APPS = ("profiles", "pipeline", "segments", "recommendations", "campaigns")

ADMINISTRATOR = "Administrator"
MARKETING_OPERATOR = "Marketing operator"
ANALYST = "Analyst"
ROLES = (ADMINISTRATOR, MARKETING_OPERATOR, ANALYST)

# Beyond viewing everything, what a marketing operator may change: segments and campaigns in
# full, customers' consent (the customer page), and starting recomputations.
OPERATOR_APPS_IN_FULL = ("segments", "campaigns")
OPERATOR_EXTRA = ("profiles.change_customer", "pipeline.run_pipeline")


def role_permissions(role: str, all_perms: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (app_label, codename) pairs a role gets, from all the permissions that exist."""
    product = [(app, code) for app, code in all_perms if app in PRODUCT_APPS]
    if role == ADMINISTRATOR:
        return [(app, code) for app, code in all_perms if app in (*PRODUCT_APPS, "auth", "django_celery_beat")]
    # API keys, locks and the audit log (which watches the operators) are the administrators' business only.
    views = [(app, code) for app, code in product if code.startswith("view_") and code not in ("view_apikey", "view_lease", "view_auditentry")]
    if role == ANALYST:
        return views
    if role == MARKETING_OPERATOR:
        full = [(app, code) for app, code in product if app in OPERATOR_APPS_IN_FULL]
        extra = [(app, code) for app, code in product if f"{app}.{code}" in OPERATOR_EXTRA]
        return sorted(set(views + full + extra))
    raise ValueError(role)


def sync_role_permissions(**kwargs) -> None:
    """post_migrate: give each role group exactly its permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission
    from django.db import DEFAULT_DB_ALIAS

    using = kwargs.get("using", DEFAULT_DB_ALIAS)
    perms = list(Permission.objects.using(using).select_related("content_type"))
    by_key = {(p.content_type.app_label, p.codename): p for p in perms}
    for role in ROLES:
        group, _ = Group.objects.using(using).get_or_create(name=role)
        wanted = [by_key[k] for k in role_permissions(role, list(by_key))]
        group.permissions.set(wanted)
