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
    Config.objects.filter(name=NAME, algorithm="sasrec", is_default=False, in_blends__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("recommendations", "0007_sasrec_algorithm")]

    operations = [migrations.RunPython(create, remove)]
