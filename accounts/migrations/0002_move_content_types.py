"""The content types of API keys and audit entries move from profiles to accounts.

Renaming the rows (app_label profiles -> accounts) carries along everything that points at them: the
permissions (`accounts.view_auditentry`, ...), the groups and users holding them, and the admin's
history (LogEntry). Audit entries that name an API key or an audit entry as their target name it by
its new label too (`accounts.apikey`), so the log keeps linking to it.

If `migrate` stopped between accounts 0001 and this migration, its post_migrate created fresh
accounts rows (and permissions) already: those are folded into the moved ones.
"""

from django.db import migrations

MODELS = ("apikey", "auditentry")


def _move(apps, *, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    LogEntry = apps.get_model("admin", "LogEntry")
    AuditEntry = apps.get_model("accounts", "AuditEntry")
    for model in MODELS:
        moving = ContentType.objects.filter(app_label=source, model=model).first()
        if moving is None:  # a fresh database: post_migrate creates the rows once migrate has run
            continue
        fresh = ContentType.objects.filter(app_label=target, model=model).first()
        if fresh is not None:
            held = set(Permission.objects.filter(content_type=moving).values_list("codename", flat=True))
            Permission.objects.filter(content_type=fresh, codename__in=held).delete()
            Permission.objects.filter(content_type=fresh).update(content_type=moving)
            LogEntry.objects.filter(content_type=fresh).update(content_type=moving)
            fresh.delete()
        moving.app_label = target
        moving.save(update_fields=["app_label"])
        AuditEntry.objects.filter(target_type=f"{source}.{model}").update(target_type=f"{target}.{model}")
    # The process's own cache of content types (get_for_model) may hold the rows under their old label.
    from django.contrib.contenttypes.models import ContentType as LiveContentType

    LiveContentType.objects.clear_cache()


def forwards(apps, schema_editor):
    _move(apps, source="profiles", target="accounts")


def backwards(apps, schema_editor):
    _move(apps, source="accounts", target="profiles")


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
