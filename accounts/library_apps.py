"""Django's admin and auth apps and django-celery-beat as the console names them.

Listed in INSTALLED_APPS in place of the libraries' own configs: the same apps (labels, tables,
permissions and URLs unchanged) with the console's admin site and the names operators read in the
index, the sidebar and the breadcrumbs (accounts/sites.py). A module of its own because Django
picks an app's config from its ``apps.py`` only when that module holds one.
"""

from django.contrib.admin.apps import AdminConfig
from django.contrib.auth.apps import AuthConfig
from django_celery_beat.apps import BeatConfig


class MarketingAdminConfig(AdminConfig):
    """django.contrib.admin with the console's site as ``admin.site`` (groups named for the work)."""

    default_site = "accounts.sites.MarketingAdminSite"


class AccessAuthConfig(AuthConfig):
    """Django's users and groups, shown under Access with the API keys and the audit log."""

    verbose_name = "Access"


class SchedulesConfig(BeatConfig):
    """django-celery-beat's periodic tasks and their schedules: plumbing, for administrators only."""

    verbose_name = "Schedules"
