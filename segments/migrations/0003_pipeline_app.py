# PipelineStep moved to the `pipeline` app with its table: the foreign keys to it change in
# Django's state only. Clustering runs take the one run status enum (the values stored are the same).

import django.db.models.deletion
from django.db import migrations, models

STATUS = [
    ("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"),
    ("skipped", "Skipped"), ("stale", "Stale (a newer run finished first)"),
]


def _step():
    return models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                             to="pipeline.pipelinestep")


class Migration(migrations.Migration):

    dependencies = [
        ("pipeline", "0001_initial"),
        ("segments", "0002_rule_help_text"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="clusteringrun", name="step", field=_step()),
                migrations.AlterField(model_name="segmentsize", name="step", field=_step()),
            ],
        ),
        migrations.AlterField(
            model_name="clusteringrun",
            name="status",
            field=models.CharField(choices=STATUS, default="running", max_length=16),
        ),
    ]
