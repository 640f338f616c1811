# The pipeline's models moved here from `profiles` (profiles 0003, 0004): their tables, indexes and
# rows stay as they are, so this creates them in Django's state only.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

ID = dict(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")
STATUS = [
    ("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"),
    ("skipped", "Skipped"), ("stale", "Stale (a newer run finished first)"),
]


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("profiles", "0013_merge_security_round"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Lease",
                    fields=[
                        ("id", models.BigAutoField(**ID)),
                        ("name", models.CharField(max_length=60, unique=True)),
                        ("holder", models.CharField(max_length=120)),
                        ("expires_at", models.DateTimeField()),
                    ],
                    options={"db_table": "profiles_lease"},
                ),
                migrations.CreateModel(
                    name="PipelineRun",
                    fields=[
                        ("id", models.BigAutoField(**ID)),
                        ("steps", models.JSONField(default=list, help_text="The steps asked for, in order.")),
                        ("trigger", models.CharField(default="shell", help_text="schedule, admin, shell or api",
                                                     max_length=16)),
                        ("status", models.CharField(choices=STATUS, db_index=True, default="queued", max_length=16)),
                        ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("error", models.TextField(blank=True)),
                        ("requested_by", models.ForeignKey(
                            blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                            to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "db_table": "profiles_pipelinerun",
                        "ordering": ["-created_at"],
                        "permissions": [("run_pipeline", "Can start a recomputation")],
                    },
                ),
                migrations.CreateModel(
                    name="PipelineStep",
                    fields=[
                        ("id", models.BigAutoField(**ID)),
                        ("name", models.CharField(db_index=True, max_length=40)),
                        ("status", models.CharField(choices=STATUS, default="queued", max_length=16)),
                        ("progress", models.FloatField(default=0, help_text="0 to 1 while running.")),
                        ("message", models.CharField(blank=True, max_length=300)),
                        ("params", models.JSONField(blank=True, default=dict)),
                        ("counts", models.JSONField(blank=True, default=dict,
                                                    help_text="Sizes, figures and timings the step reports.")),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("duration_s", models.FloatField(blank=True, null=True)),
                        ("error", models.TextField(blank=True)),
                        ("pipeline", models.ForeignKey(
                            blank=True, null=True, on_delete=django.db.models.deletion.CASCADE,
                            related_name="step_runs", to="pipeline.pipelinerun")),
                    ],
                    options={
                        "db_table": "profiles_pipelinestep",
                        "ordering": ["-created_at"],
                        "indexes": [
                            models.Index(fields=["name", "status", "-finished_at"], name="step_name_status_idx"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
