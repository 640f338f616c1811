# PipelineStep moved to the `pipeline` app with its table: the foreign key to it changes in Django's
# state only. Recommender runs take the one run status enum (the values stored are the same).

import django.db.models.deletion
from django.db import migrations, models

STATUS = [
    ("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"),
    ("skipped", "Skipped"), ("stale", "Stale (a newer run finished first)"),
]


class Migration(migrations.Migration):

    dependencies = [
        ("pipeline", "0001_initial"),
        ("recommendations", "0002_derived_rows_unchecked_keys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="recommenderrun",
                    name="step",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="+", to="pipeline.pipelinestep"),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="recommenderrun",
            name="status",
            field=models.CharField(choices=STATUS, db_index=True, default="running",
                                   max_length=16),
        ),
    ]
