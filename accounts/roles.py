"""
The operator roles, as Django groups: Administrator, Marketing operator, Analyst.

The groups are created by a migration (profiles 0007); their permissions are (re)assigned after
every `migrate` by `sync_role_permissions`, so a permission that a later app adds (a new model, a
new action such as launching a campaign) reaches the right roles without another migration.

Each app says which of its own permissions each role holds, on its AppConfig:

    class SegmentsConfig(AppConfig):
        name = "segments"
        role_permissions = {ADMINISTRATOR: ["*"], MARKETING_OPERATOR: ["*"], ANALYST: ["view_*"]}

Entries are patterns over the app's permission codenames (`fnmatch`: `*` is every permission,
`view_*` every view permission); an entry starting with `!` takes a permission away whatever else
matches (`"!view_lease"`). A role the app does not name gets none of its permissions. Django's own
`auth` and django-celery-beat declare nothing themselves: their rows are in LIBRARY_ROLE_PERMISSIONS.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

ADMINISTRATOR = "Administrator"
MARKETING_OPERATOR = "Marketing operator"
ANALYST = "Analyst"
ROLES = (ADMINISTRATOR, MARKETING_OPERATOR, ANALYST)

# Operator accounts and groups, and the schedule's periodic tasks: the administrators' business.
LIBRARY_ROLE_PERMISSIONS: dict[str, dict[str, list[str]]] = {
    "auth": {ADMINISTRATOR: ["*"]},
    "django_celery_beat": {ADMINISTRATOR: ["*"]},
}


def declared_role_permissions() -> dict[str, dict[str, list[str]]]:
    """{app label: {role: patterns}} from every installed app that declares `role_permissions`."""
    from django.apps import apps

    declared = dict(LIBRARY_ROLE_PERMISSIONS)
    for config in apps.get_app_configs():
        if getattr(config, "role_permissions", None) is not None:
            declared[config.label] = config.role_permissions
    return declared


def _granted(codename: str, patterns: Iterable[str]) -> bool:
    granted = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if fnmatchcase(codename, pattern[1:]):
                return False
        elif fnmatchcase(codename, pattern):
            granted = True
    return granted


def role_permissions(role: str, all_perms: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (app_label, codename) pairs a role gets, from all the permissions that exist."""
    if role not in ROLES:
        raise ValueError(role)
    declared = declared_role_permissions()
    return sorted((app, code) for app, code in all_perms if _granted(code, declared.get(app, {}).get(role, ())))


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
