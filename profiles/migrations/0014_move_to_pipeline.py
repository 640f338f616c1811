# PipelineRun, PipelineStep and Lease moved to the `pipeline` app (pipeline 0001), keeping their
# tables and rows: they leave profiles' state only, once every foreign key to them points there.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("profiles", "0013_merge_security_round"),
        ("pipeline", "0002_move_content_types"),
        ("segments", "0003_pipeline_app"),
        ("recommendations", "0003_pipeline_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="profile",
                    name="run",
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="+", to="pipeline.pipelinestep"),
                ),
                migrations.DeleteModel(name="PipelineStep"),
                migrations.DeleteModel(name="PipelineRun"),
                migrations.DeleteModel(name="Lease"),
            ],
        ),
    ]
