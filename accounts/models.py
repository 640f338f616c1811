"""API keys for the shop's backend and the audit log of operator actions.

Both tables were created by the profiles app and keep their names (`db_table`); their history is in
profiles' migrations 0006-0013 and accounts 0001 took them over in the migration state only.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .actions import audit_action_choices


class ApiKeyScope(models.TextChoices):
    INGEST_EVENTS = "ingest_events", "Ingest events"
    READ_RECOMMENDATIONS = "read_recommendations", "Read recommendations (and issue customer tokens)"
    MANAGE_CUSTOMERS = "manage_customers", "Manage customers and items"


class ApiKey(models.Model):
    """A key for the shop's backend. Only a hash of the secret is stored; the key is shown once."""

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'shop backend (production)'.")
    prefix = models.CharField(
        max_length=12, unique=True, help_text="The key's public part, to recognise it in lists and logs."
    )
    hashed_secret = models.CharField(max_length=128)
    scopes = models.JSONField(default=list, help_text="What the key may do.")
    created_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "profiles_apikey"
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AccountsAuditAction(models.TextChoices):
    """What operators do to API keys, accounts and groups, and their sign-ins (the audit log's actions of
    this app; every app declares its own, accounts/actions.py)."""

    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    API_KEY_CHANGED = "api_key.changed", "API key changed"
    USER_CREATED = "user.created", "User created"
    USER_CHANGED = "user.changed", "User changed"
    USER_DELETED = "user.deleted", "User deleted"
    USER_CHANGE_REFUSED = "user.change_refused", "User change refused (escalation)"
    GROUP_CREATED = "group.created", "Group created"
    GROUP_CHANGED = "group.changed", "Group changed"
    GROUP_DELETED = "group.deleted", "Group deleted"
    GROUP_CHANGE_REFUSED = "group.change_refused", "Group change refused (escalation)"
    LOGIN = "auth.login", "Signed in"
    LOGIN_FAILED = "auth.login_failed", "Sign-in refused"


class AuditEntry(models.Model):
    """Who did what, when: one row per operator action. Append-only; holds no personal data of customers."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(
        max_length=150,
        help_text="The operator's username, api-key:PREFIX, shell:USER or system; kept if the account goes.",
    )
    # The actions every installed app declares (a callable: an app adding an action needs no migration here).
    action = models.CharField(max_length=40, choices=audit_action_choices)
    source = models.CharField(max_length=20, help_text="admin, api, shell, schedule, system")
    target_type = models.CharField(max_length=60, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        db_table = "profiles_auditentry"
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["action", "-at"], name="audit_action_at_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
            models.Index(fields=["actor_label", "-at"], name="audit_actor_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label}: {self.get_action_display()} {self.target_label}".strip()
