"""
The audit log's actions: each app declares its own, accounts collects them.

An app names its actions on its AppConfig, as the dotted path of a TextChoices whose values read
`<thing>.<verb>` (at most 40 characters):

    class SegmentsConfig(AppConfig):
        name = "segments"
        audit_actions = "segments.models.SegmentsAuditAction"

and records them with `accounts.audit.audit_record(action=SegmentsAuditAction.SEGMENT_CREATED, ...)`.
`AuditEntry.action` takes its choices from `audit_action_choices` (a callable, so an app adding an
action needs no migration of the audit log); the admin's filter and labels offer them in the order of
INSTALLED_APPS, each app's in the order it declares them.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


def audit_action_choices() -> list[tuple[str, str]]:
    """(value, label) of every installed app's audit actions."""
    choices: dict[str, str] = {}
    for config in apps.get_app_configs():
        path = getattr(config, "audit_actions", None)
        if not path:
            continue
        for value, label in import_string(path).choices:
            if value in choices:
                raise ImproperlyConfigured(f"The audit action {value!r} of {path} is declared twice.")
            choices[value] = label
    return list(choices.items())
