"""Moving the pipeline's models out of profiles moves no data: a database migrated before the move
keeps its runs, its steps, the grants of `run_pipeline` and the audit log's links to runs."""

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import AuditEntry
from pipeline.models import PipelineRun

BEFORE = [
    ("profiles", "0013_merge_security_round"),
    ("segments", "0002_rule_help_text"),
    ("recommendations", "0002_derived_rows_unchecked_keys"),
    ("pipeline", None),
    ("accounts", None),
]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets if targets is not None else executor.loader.graph.leaf_nodes())
    return executor


@pytest.mark.django_db(transaction=True)
def test_a_database_from_before_the_move_keeps_its_runs_steps_grants_and_audit_links():
    # given a database as it was before the move, with a run, its steps, and a group allowed to start runs
    old = _migrate(BEFORE).loader.project_state(BEFORE[:3]).apps
    ContentType, Permission = old.get_model("contenttypes", "ContentType"), old.get_model("auth", "Permission")
    OldGroup, OldUser = old.get_model("auth", "Group"), old.get_model("auth", "User")
    ct, _ = ContentType.objects.get_or_create(app_label="profiles", model="pipelinerun")
    perm, _ = Permission.objects.get_or_create(
        content_type=ct, codename="run_pipeline", defaults={"name": "Can start a recomputation"}
    )
    group = OldGroup.objects.create(name="Recomputers")
    group.permissions.add(perm)
    OldUser.objects.create(username="night-operator", is_staff=True).groups.add(group)
    run = old.get_model("profiles", "PipelineRun").objects.create(steps=["profiles", "segments"], status="succeeded")
    Step = old.get_model("profiles", "PipelineStep")
    Step.objects.create(pipeline=run, name="profiles", status="succeeded", counts={"customers": 3})
    Step.objects.create(pipeline=run, name="segments", status="skipped")
    old.get_model("profiles", "AuditEntry").objects.create(
        action="pipeline.started",
        source="admin",
        actor_label="boss",
        target_type="profiles.pipelinerun",
        target_id=str(run.pk),
    )

    # when it is migrated forward
    _migrate(None)

    # then the rows are the pipeline app's, the grant is pipeline.run_pipeline, and the audit entry links the run
    moved = PipelineRun.objects.get(pk=run.pk)
    assert list(moved.step_runs.order_by("id").values_list("name", "status")) == [
        ("profiles", "succeeded"),
        ("segments", "skipped"),
    ]
    assert moved.step_runs.get(name="profiles").counts == {"customers": 3}
    granted = Group.objects.get(name="Recomputers").permissions.get()
    assert (granted.content_type.app_label, granted.codename) == ("pipeline", "run_pipeline")
    assert User.objects.get(username="night-operator").has_perm("pipeline.run_pipeline")
    assert AuditEntry.objects.get(target_id=str(run.pk)).target_type == "pipeline.pipelinerun"
