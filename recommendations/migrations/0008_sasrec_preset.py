"""The sequence model as a configuration operators can choose (issue #18), not the default: SASRec with
its documented defaults (recommendations/algorithms.py, chosen on validation splits, docs/engine.md).
A shop that already has a configuration of that name keeps it."""

from django.db import migrations

NAME = "Sequence model (SASRec)"
DESCRIPTION = "What tends to come next after each customer's latest items (self-attention, TensorFlow)."


def create(apps, schema_editor):
    Config = apps.get_model("recommendations", "RecommenderConfig")
    if not Config.objects.filter(name=NAME).exists():
        Config.objects.create(name=NAME, algorithm="sasrec", description=DESCRIPTION, is_default=False)


def remove(apps, schema_editor):
    Config = apps.get_model("recommendations", "RecommenderConfig")
    preset = Config.objects.filter(name=NAME, algorithm="sasrec", is_default=False, in_blends__isnull=True)
    if "experiments_variant" in schema_editor.connection.introspection.table_names():
        preset.delete()  # PROTECTed where an experiment's variant uses it
        return
    # Migrating back past the experiments app: its tables are gone, but its models may still be in
    # this state, so Django's deletion (which looks at every model pointing here) would query them.
    # Nothing else protects the preset; its runs keep their rows, without the configuration.
    ids = list(preset.values_list("pk", flat=True))
    apps.get_model("recommendations", "RecommenderRun").objects.filter(config_id__in=ids).update(config=None)
    Config.objects.filter(pk__in=ids)._raw_delete(schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [("recommendations", "0007_sasrec_algorithm")]

    operations = [migrations.RunPython(create, remove)]
