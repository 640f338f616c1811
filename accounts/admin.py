"""Operator screens of accounts and access: API keys, the audit log, operator accounts and groups.

API keys are created here (the key is shown once) and revoked, never deleted. The audit log is
read-only: nobody edits or deletes history through the admin.

Operator accounts and groups: no escalation, every change in the audit log.
Django's own UserAdmin and GroupAdmin let anyone with `auth.change_user` make any account a
superuser or give it any permission — so a script running in an Administrator's browser (issue
#12, finding 1) could make its author superuser. Here, for an operator who is not a superuser:

- `is_superuser` is not on the form, and a posted `is_superuser` is refused (form error, audited);
- the permissions they add to a user or a group must be permissions they hold themselves, and the
  groups they add to a user must carry only permissions they hold;
- a superuser's account (change, password, delete) is out of their reach;
- their own groups, permissions and staff/active flags are not theirs to change.

The checks live in the forms' validation (the server refuses whatever the page sent), not only in
what the page shows. Every created, changed or deleted user or group is recorded in the audit log
(`user.*`, `group.*`): which fields changed, flags before and after, groups and permissions added
and removed — and for a password only the fact that it changed, never a hash.
"""

from __future__ import annotations

import json

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from common import display
from common.paginators import EstimatedCountPaginator

from . import access
from .audit import audit_record
from .models import AccountsAuditAction, ApiKey, ApiKeyScope, AuditEntry


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "prefix", "scopes_text", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("created_by",)
    search_fields = ("name", "=prefix")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ("prefix", "created_by", "created_at", "last_used_at", "revoked_at") if obj else ()

    @admin.display(description="scopes")
    def scopes_text(self, obj):
        labels = dict(ApiKeyScope.choices)
        return ", ".join(str(labels.get(scope, display.words(scope))) for scope in obj.scopes)

    def has_delete_permission(self, request, obj=None):
        return False  # a key is revoked (action "Revoke"), never deleted: the audit log and last use stay readable

    def save_model(self, request, obj, form, change):
        if change:
            before = ApiKey.objects.get(pk=obj.pk)
            super().save_model(request, obj, form, change)
            changes = {
                f: {"from": getattr(before, f), "to": getattr(obj, f)}
                for f in ("name", "scopes")
                if getattr(before, f) != getattr(obj, f)
            }
            if changes:
                audit_record(
                    action=AccountsAuditAction.API_KEY_CHANGED,
                    request=request,
                    target=obj,
                    source="admin",
                    changes=changes,
                )
            return
        key, full = access.api_key_create(name=obj.name, scopes=form.cleaned_data["scopes"], user=request.user)
        obj.pk = key.pk
        obj.prefix = key.prefix
        audit_record(
            action=AccountsAuditAction.API_KEY_CREATED,
            request=request,
            target=key,
            source="admin",
            changes={"scopes": key.scopes},
        )
        # Shown once: only a hash of the secret is stored.
        messages.warning(
            request,
            format_html(
                "The new key is <code style='user-select:all'>{}</code>. Copy it now: it is not stored and cannot be "
                "shown again. "
                "Send it as <code>Authorization: Api-Key {}</code>.",
                full,
                full,
            ),
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            access.api_key_revoke(key=key)
            audit_record(action=AccountsAuditAction.API_KEY_REVOKED, request=request, target=key, source="admin")
        messages.success(
            request, "Revoked; requests with these keys and the customer tokens they issued are refused from now on."
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read-only: nobody edits or deletes history through the admin."""

    list_display = ("when", "who", "action", "target_link", "source_text", "ip_address")
    list_filter = ("action", "source")
    date_hierarchy = "at"
    search_fields = ("=actor_label", "=target_id", "target_label")
    list_select_related = ("actor",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # what was acted on as words and a link (the stored type and id stay in the table, for queries)
    fields = ("when", "who", "action", "source_text", "target_kind", "target_link", "changes_text", "ip_address")
    readonly_fields = fields

    @admin.display(description="when", ordering="at")
    def when(self, obj):
        return obj.at

    @admin.display(description="who", ordering="actor_label")
    def who(self, obj):
        """The operator's username, api-key:PREFIX, shell:USER or system (kept when the account goes)."""
        return obj.actor_label

    @admin.display(description="IP address")
    def ip_address(self, obj):
        return obj.ip or display.MISSING

    @admin.display(description="source")
    def source_text(self, obj):
        return "API" if obj.source == "api" else display.words(obj.source)

    @admin.display(description="what")
    def target_kind(self, obj):
        if not obj.target_type:
            return display.MISSING
        try:
            return capfirst(str(apps.get_model(obj.target_type)._meta.verbose_name))
        except (LookupError, ValueError):
            return display.words(obj.target_type.rpartition(".")[2])

    @admin.display(description="target")
    def target_link(self, obj):
        """The target's name (as it was when acted on), linked to its page while it exists; never a bare id."""
        label = obj.target_label or (f"{self.target_kind(obj)} (no name recorded)" if obj.target_type else "")
        if obj.target_type and obj.target_id:
            app_label, _, model = obj.target_type.partition(".")
            try:
                url = reverse(f"admin:{app_label}_{model}_change", args=[obj.target_id])
            except Exception:
                return label
            return format_html('<a href="{}">{}</a>', url, label)
        return label or display.MISSING

    @admin.display(description="changes")
    def changes_text(self, obj):
        """One row per changed field, in words: "from A to B", "added: …; removed: …", or the value."""
        if not obj.changes:
            return display.MISSING
        rows = [(display.words(name), _change_words(value)) for name, value in obj.changes.items()]
        return format_html(
            '<table class="audit-changes">{}</table>', format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _value_words(value) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_words(v) for v in value) if value else "(none)"
    if isinstance(value, dict):  # structured values (a segment's rule): their own notation, compact
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _change_words(value) -> str:
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        return f"from {_value_words(value['from'])} to {_value_words(value['to'])}"
    if isinstance(value, dict) and set(value) <= {"added", "removed"} and value:
        parts = [f"{key}: {_value_words(value[key])}" for key in ("added", "removed") if value.get(key)]
        return "; ".join(parts) or "(none)"
    return _value_words(value)


# --- operator accounts and groups ----------------------------------------------------------------

FLAGS = ("is_active", "is_staff", "is_superuser")
# Account fields whose values are personal (the operator's own data): the log says they changed.
PERSONAL = ("first_name", "last_name", "email")


def perm_key(perm: Permission) -> str:
    return f"{perm.content_type.app_label}.{perm.codename}"


def _perm_keys(perms) -> set[str]:
    return (
        {perm_key(p) for p in perms.select_related("content_type")}
        if hasattr(perms, "select_related")
        else {perm_key(p) for p in perms}
    )


def _missing_for(actor, perms) -> list[str]:
    """The permissions among `perms` the actor does not hold (none for a superuser)."""
    if actor.is_superuser:
        return []
    held = actor.get_all_permissions()
    return sorted(k for k in _perm_keys(perms) if k not in held)


class GuardedFormMixin:
    """Set by the admin: the operator submitting the form (`actor`) and where refusals are reported."""

    actor: User | None = None
    on_refused = None  # callable(list[str]) recording a refused escalation

    def refuse(self, field: str | None, message: str) -> None:
        self.refusals = [*getattr(self, "refusals", []), message]
        self.add_error(field, message)

    def _post_clean(self):
        super()._post_clean()
        if getattr(self, "refusals", None) and self.on_refused:
            self.on_refused(self.refusals)


class GuardedUserChangeForm(GuardedFormMixin, DjangoUserAdmin.form):
    def clean(self):
        data = super().clean()
        actor, target = self.actor, self.instance
        if actor is None or actor.is_superuser:
            return data
        if target.is_superuser:
            self.refuse(None, "Only a superuser can change a superuser's account.")
        if "is_superuser" in self.data or data.get("is_superuser"):
            self.refuse(None, "Only a superuser can grant superuser status.")
        own = target.pk == actor.pk
        if own:
            for name in ("groups", "user_permissions", *FLAGS):
                if name in self.changed_data:
                    self.refuse(
                        name, "You cannot change your own groups, permissions or status; ask another administrator."
                    )
        if "user_permissions" in data and data["user_permissions"] is not None:
            before = set(target.user_permissions.values_list("pk", flat=True)) if target.pk else set()
            added = [p for p in data["user_permissions"] if p.pk not in before]
            missing = _missing_for(actor, added)
            if missing:
                self.refuse(
                    "user_permissions",
                    f"You can only grant permissions you hold yourself; you lack: {', '.join(missing)}.",
                )
        if "groups" in data and data["groups"] is not None:
            before = set(target.groups.values_list("pk", flat=True)) if target.pk else set()
            for group in data["groups"]:
                if group.pk in before:
                    continue
                missing = _missing_for(actor, group.permissions.all())
                if missing:
                    self.refuse(
                        "groups",
                        f"You can only add groups whose permissions you hold yourself; "
                        f"“{group.name}” has {', '.join(missing)}.",
                    )
        return data


class GuardedGroupForm(GuardedFormMixin, forms.ModelForm):
    class Meta:
        model = Group
        fields = ["name", "permissions"]

    def clean(self):
        data = super().clean()
        actor = self.actor
        if actor is None or actor.is_superuser or data.get("permissions") is None:
            return data
        before = set(self.instance.permissions.values_list("pk", flat=True)) if self.instance.pk else set()
        added = [p for p in data["permissions"] if p.pk not in before]
        missing = _missing_for(actor, added)
        if missing:
            self.refuse(
                "permissions", f"You can only grant permissions you hold yourself; you lack: {', '.join(missing)}."
            )
        if (
            self.instance.pk
            and actor.groups.filter(pk=self.instance.pk).exists()
            and "permissions" in self.changed_data
        ):
            self.refuse(
                "permissions", "You cannot change the permissions of a group you belong to; ask another administrator."
            )
        return data


def _snapshot(obj, relations) -> dict[str, set[str]]:
    if not obj.pk:
        return {name: set() for name in relations}
    out = {}
    for name in relations:
        related = getattr(obj, name).all()
        out[name] = {r.name for r in related} if name == "groups" else _perm_keys(related)
    return out


def _diff(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict:
    changes = {}
    for name in before:
        added, removed = sorted(after[name] - before[name]), sorted(before[name] - after[name])
        if added or removed:
            changes[name] = {"added": added, "removed": removed}
    return changes


class AuditedGuardedAdmin:
    """What the user and group admins share: the guarded form, the m2m snapshot and the audit entries."""

    relations: tuple[str, ...] = ()
    audit_actions: tuple[str, str, str] = ("", "", "")
    refused_action = ""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        actions = self.refused_action

        def on_refused(reasons, _obj=obj):
            audit_record(
                action=actions,
                request=request,
                target=_obj,
                target_type="" if _obj else self.model._meta.label_lower,
                target_label="" if _obj else "(new)",
                changes={"refused": reasons, "posted": sorted(k for k in request.POST if k != "csrfmiddlewaretoken")},
                source="admin",
            )

        return type(form.__name__, (form,), {"actor": request.user, "on_refused": staticmethod(on_refused)})

    audited_flags: tuple[str, ...] = ()

    def save_model(self, request, obj, form, change):
        stored = type(obj).objects.get(pk=obj.pk) if change else obj
        request._audit_before = (
            {f: getattr(stored, f) for f in self.audited_flags} if change else {},
            _snapshot(stored, self.relations),
        )
        super().save_model(request, obj, form, change)

    def plain_changes(self, form, flags_before: dict, obj) -> dict:
        changes = {}
        model_fields = {f.name for f in obj._meta.fields}
        for name in form.changed_data:
            if name in self.relations or name not in model_fields or name == "password":
                continue  # relations are diffed apart; the add form's password1/2 never reach the log
            if name in self.audited_flags:
                changes[name] = {"from": flags_before.get(name), "to": getattr(obj, name)}
            elif name in PERSONAL:
                changes[name] = "(changed)"
            else:
                value = getattr(obj, name, None)
                changes[name] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        return changes

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        obj = form.instance
        flags_before, relations_before = getattr(request, "_audit_before", ({}, _snapshot(obj, ())))
        changes = self.plain_changes(form, flags_before, obj)
        if not change:
            changes.update({f: getattr(obj, f) for f in self.audited_flags})
            if hasattr(obj, "has_usable_password"):
                changes["password"] = "(set)" if obj.has_usable_password() else "(password sign-in disabled)"
        changes.update(_diff(relations_before, _snapshot(obj, self.relations)))
        if change and not changes:
            return
        created, changed, _ = self.audit_actions
        audit_record(
            action=changed if change else created, request=request, target=obj, changes=changes, source="admin"
        )

    def delete_model(self, request, obj):
        label, pk = str(obj)[:200], obj.pk
        super().delete_model(request, obj)
        audit_record(
            action=self.audit_actions[2],
            request=request,
            target_type=obj._meta.label_lower,
            target_id=str(pk),
            target_label=label,
            source="admin",
        )

    def delete_queryset(self, request, queryset):
        gone = [(str(o.pk), str(o)[:200]) for o in queryset]
        super().delete_queryset(request, queryset)
        for pk, label in gone:
            audit_record(
                action=self.audit_actions[2],
                request=request,
                target_type=queryset.model._meta.label_lower,
                target_id=pk,
                target_label=label,
                source="admin",
            )


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(AuditedGuardedAdmin, DjangoUserAdmin):
    form = GuardedUserChangeForm
    relations = ("groups", "user_permissions")
    audited_flags = FLAGS
    audit_actions = (
        AccountsAuditAction.USER_CREATED,
        AccountsAuditAction.USER_CHANGED,
        AccountsAuditAction.USER_DELETED,
    )
    refused_action = AccountsAuditAction.USER_CHANGE_REFUSED

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        # not shown to a non-superuser (and refused if posted anyway: GuardedUserChangeForm)
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f != "is_superuser"]}) for name, opts in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.pk == request.user.pk and not request.user.is_superuser:
            readonly += ["groups", "user_permissions", *[f for f in FLAGS if f != "is_superuser"]]
        return readonly

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False  # a superuser's account (and its password) is a superuser's business
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        if not request.user.is_superuser and queryset.filter(is_superuser=True).exists():
            raise PermissionDenied("Only a superuser can delete a superuser's account.")
        super().delete_queryset(request, queryset)

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if (
            request.method == "POST"
            and isinstance(response, HttpResponseRedirect)
            and response.url != request.get_full_path()
        ):
            user = User.objects.get(pk=id)
            fact = "(changed)" if user.has_usable_password() else "(password sign-in disabled)"
            audit_record(
                action=AccountsAuditAction.USER_CHANGED,
                request=request,
                target=user,
                changes={"password": fact},
                source="admin",
            )
        return response


@admin.register(Group)
class GroupAdmin(AuditedGuardedAdmin, DjangoGroupAdmin):
    form = GuardedGroupForm
    relations = ("permissions",)
    audit_actions = (
        AccountsAuditAction.GROUP_CREATED,
        AccountsAuditAction.GROUP_CHANGED,
        AccountsAuditAction.GROUP_DELETED,
    )
    refused_action = AccountsAuditAction.GROUP_CHANGE_REFUSED

    def has_delete_permission(self, request, obj=None):
        # deleting a group takes its permissions from its members: not for a group with permissions the operator lacks
        if obj is not None and _missing_for(request.user, obj.permissions.all()):
            return False
        return super().has_delete_permission(request, obj)


# An operator's own password change is audited by the site itself (accounts/sites.py).
