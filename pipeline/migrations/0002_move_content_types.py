# The content types of the moved models follow them (profiles -> pipeline), so their permissions
# (among them `run_pipeline`, now `pipeline.run_pipeline`), the groups and users holding those, and
# the admin's history of them stay attached. The audit log's entries about runs are renamed to
# match (`target_type` is the model's label).

from django.db import migrations

MODELS = ("pipelinerun", "pipelinestep", "lease")


def _move(apps, *, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        old = ContentType.objects.filter(app_label=source, model=model).first()
        if old is None:
            continue  # a fresh database: post_migrate creates them under their new app
        # One created meanwhile (post_migrate after a partial migrate) holds no grants: drop it.
        ContentType.objects.filter(app_label=target, model=model).delete()
        old.app_label = target
        old.save(update_fields=["app_label"])
    audit = _audit_entries(apps)
    if audit is not None:
        audit.objects.filter(target_type=f"{source}.pipelinerun").update(target_type=f"{target}.pipelinerun")
    from django.contrib.contenttypes.models import ContentType as LiveContentType

    LiveContentType.objects.clear_cache()


def _audit_entries(apps):
    # The audit log's model may have moved on to another app by the time this runs; its table stays.
    for app_label in ("profiles", "accounts"):
        try:
            return apps.get_model(app_label, "AuditEntry")
        except LookupError:
            continue
    return None


def forwards(apps, schema_editor):
    _move(apps, source="profiles", target="pipeline")


def backwards(apps, schema_editor):
    _move(apps, source="pipeline", target="profiles")


class Migration(migrations.Migration):

    dependencies = [
        ("pipeline", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
