"""PIPELINE_BACKEND=spark where Spark cannot run (SQLite, no Java): the operator reads what is wrong,
from `recompute`, the admin's start page and `manage.py check`, and no run is created. These tests
start no JVM and run on every database."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, override_settings

from common import spark as common_spark
from pipeline.models import PipelineRun
from pipeline.steps import check_backend
from tests.factories import MARKETING_OPERATOR, OperatorFactory

NO_JAVA = "no Java runtime (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"


@pytest.fixture
def no_java(monkeypatch):
    monkeypatch.setattr(common_spark, "java_missing_reason", lambda: NO_JAVA)


@pytest.mark.django_db
@override_settings(PIPELINE_BACKEND="spark")
def test_recompute_on_spark_without_java_says_so_and_starts_nothing(no_java):
    with pytest.raises(CommandError) as caught:
        call_command("recompute", steps="profiles", no_progress=True)
    text = str(caught.value)
    if connection.vendor == "postgresql":
        assert "Spark cannot start here" in text and "no Java runtime" in text
    else:
        assert "needs PostgreSQL" in text and "sqlite" in text
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db
@override_settings(PIPELINE_BACKEND="spark")
def test_steps_without_a_spark_implementation_still_start_on_the_spark_backend(no_java, monkeypatch):
    from pipeline import services

    monkeypatch.setattr(services, "pipeline_create", lambda **kw: PipelineRun(steps=kw["steps"]))
    assert services.pipeline_start(trigger="shell", steps=["experiments"]).steps == ["experiments"]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor == "postgresql", reason="what SQLite users read; this database is PostgreSQL")
@override_settings(PIPELINE_BACKEND="spark")
def test_on_sqlite_the_spark_backend_names_the_database():
    with pytest.raises(CommandError, match="PIPELINE_BACKEND=spark needs PostgreSQL"):
        call_command("recompute", steps="profiles", no_progress=True)


@pytest.mark.django_db
@override_settings(PIPELINE_BACKEND="spark")
def test_the_admin_start_page_shows_the_reason_instead_of_failing(no_java):
    client = Client()
    client.force_login(OperatorFactory(username="mia", role=MARKETING_OPERATOR))
    answer = client.post("/admin/pipeline/pipelinerun/start/", {"steps": ["profiles"]}, follow=True)
    assert answer.status_code == 200
    shown = [str(m) for m in answer.context["messages"]]
    assert any("PIPELINE_BACKEND=spark" in m for m in shown), shown
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db
def test_manage_py_check_warns_about_a_spark_backend_that_cannot_run(no_java):
    with override_settings(PIPELINE_BACKEND="spark"):
        (warning,) = check_backend()
    assert warning.id == "pipeline.W002" and "PIPELINE_BACKEND=spark" in warning.msg
    with override_settings(PIPELINE_BACKEND="local"):
        assert check_backend() == []


@pytest.mark.django_db
def test_the_run_page_says_what_computed_the_run():
    from pipeline.models import PipelineStep

    run = PipelineRun.objects.create(steps=["profiles", "segments"], backend="spark", status="succeeded")
    PipelineStep.objects.create(pipeline=run, name="profiles", backend="spark", status="succeeded")
    PipelineStep.objects.create(pipeline=run, name="segments", backend="local", status="succeeded")
    local = PipelineRun.objects.create(steps=["profiles"], status="succeeded")
    PipelineStep.objects.create(pipeline=local, name="profiles", status="succeeded")
    client = Client()
    client.force_login(OperatorFactory(username="mia", role=MARKETING_OPERATOR))
    page = client.get(f"/admin/pipeline/pipelinerun/{run.pk}/change/").content.decode()
    assert "on Apache Spark (profiles); locally (segments)" in page
    page = client.get(f"/admin/pipeline/pipelinerun/{local.pk}/change/").content.decode()
    assert "locally (numpy and the database, in the worker)" in page
