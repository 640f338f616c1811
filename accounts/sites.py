"""The operator console's admin site: Django's AdminSite with the index and sidebar grouped by the work.

Operators meet groups named for what they do — Customers, Segments, Recommendations, Campaigns,
Pipeline, Access — in that order (``settings.ADMIN_GROUPS``), not Django's apps in alphabetical
order. Django's Users and Groups sit under Access with the API keys and the audit log. The
plumbing (django-celery-beat's schedules, and any registered model no group lists) is shown to
superusers only, in groups whose names say so ("Schedules (administrators)").

The grouping only arranges what ``AdminSite._build_app_dict`` already allows: a model the operator
may not view stays hidden, and no permission check changes. The same list feeds the index, the
sidebar (``available_apps``) and the app index pages (``/admin/auth/`` shows the Access group).

The site is ``admin.site`` itself (``accounts.apps.MarketingAdminConfig.default_site``), so every
app keeps registering with ``@admin.register``. Its sign-in form throttles (accounts/signin.py) and
an operator's own password change is audited, as the user form's is.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse

from .signin import ThrottledAdminLoginForm

ADMINISTRATORS = "administrators"


def _group_name(app_label: str, administrators_only: bool) -> str:
    name = str(apps.get_app_config(app_label).verbose_name)
    return f"{name} ({ADMINISTRATORS})" if administrators_only and ADMINISTRATORS not in name.lower() else name


def _rank(label: str, patterns: list[str]) -> int | None:
    """The index of the first pattern matching ``app_label.model_name``, or None."""
    return next((i for i, pattern in enumerate(patterns) if fnmatchcase(label, pattern)), None)


def group_app_list(app_dict: dict, *, administrator: bool, site_name: str = "admin") -> list[dict]:
    """Django's per-app dictionaries (``AdminSite._build_app_dict``) regrouped as ``settings.ADMIN_GROUPS``
    says, in its order; plumbing for administrators only. Each group has Django's keys (``name``,
    ``app_label``, ``app_url``, ``models``) plus ``app_labels``, the apps whose models it shows."""
    plumbing = set(settings.ADMIN_ADMINISTRATOR_APPS)
    models = [
        (f"{app_label}.{m['object_name'].lower()}", m) for app_label, app in app_dict.items() for m in app["models"]
    ]
    groups, placed = [], set()
    for app_label, patterns in settings.ADMIN_GROUPS:
        members = []
        for label, model in models:
            rank = _rank(label, patterns)
            if label not in placed and rank is not None:
                members.append((rank, str(model["name"]), model))
                placed.add(label)
        admins_only = app_label in plumbing
        if not members or (admins_only and not administrator):
            continue
        members.sort(key=lambda m: m[:2])
        groups.append(_group(app_label, [m for *_, m in members], admins_only, site_name))
    # Registered models no group lists: Django's plumbing, for administrators, under their own app.
    if administrator:
        left: dict[str, list[dict]] = {}
        for label, model in models:
            if label not in placed:
                left.setdefault(label.partition(".")[0], []).append(model)
        for app_label, members in sorted(left.items()):
            members.sort(key=lambda m: str(m["name"]))
            groups.append(_group(app_label, members, True, site_name))
    return groups


def _group(app_label: str, models: list[dict], administrators_only: bool, site_name: str) -> dict:
    try:
        url = reverse("admin:app_list", kwargs={"app_label": app_label}, current_app=site_name)
    except NoReverseMatch:  # an app whose models are all registered elsewhere
        url = models[0]["admin_url"]
    return {
        "name": _group_name(app_label, administrators_only),
        "app_label": app_label,
        "app_url": url,
        "has_module_perms": True,
        "models": models,
        "app_labels": sorted({m["model"]._meta.app_label for m in models}),
        "administrators_only": administrators_only,
    }


class MarketingAdminSite(admin.AdminSite):
    site_header = "Marketing console"
    site_title = "Marketing console"
    index_title = "What would you like to work on?"
    login_form = ThrottledAdminLoginForm

    def get_app_list(self, request, app_label=None):
        groups = group_app_list(
            self._build_app_dict(request), administrator=request.user.is_superuser, site_name=self.name
        )
        if app_label is None:
            return groups
        # An app's index page (and its breadcrumb) shows the group the app belongs to.
        return [g for g in groups if app_label in g["app_labels"]][:1]

    def password_change(self, request, extra_context=None):
        """The admin's "Change password" (an operator's own): the fact is audited like the user form's."""
        from .audit import audit_record
        from .models import AccountsAuditAction

        response = super().password_change(request, extra_context)
        if request.method == "POST" and isinstance(response, HttpResponseRedirect):
            audit_record(
                action=AccountsAuditAction.USER_CHANGED,
                request=request,
                target=request.user,
                changes={"password": "(changed)"},
                source="admin",
            )
        return response
