"""An operator defines an experiment between two recommender configurations in the console, sees its
plan, starts it, reads the report as customers answer, and stops it (issue #17)."""

from io import StringIO

import pytest
from django.core.management import call_command

from experiments.models import Assignment, Experiment
from experiments.routing import forget_running
from recommendations.models import RecommenderConfig, RecommenderRun
from tests.browser.conftest import shot, sign_in
from tests.browser.test_operator_journeys import shop  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_operator_runs_an_experiment_from_the_console(page, live_server, shop, operator_login):  # noqa: F811
    # a flushing test may have emptied the presets the migration made
    default = RecommenderConfig.objects.get_or_create(
        name="Default (PureSVD)", defaults={"algorithm": "pure_svd", "is_default": True}
    )[0]
    popularity = RecommenderConfig.objects.get_or_create(name="Best-sellers", defaults={"algorithm": "popularity"})[0]
    forget_running()
    sign_in(page, live_server, *operator_login)

    page.goto(f"{live_server.url}/admin/experiments/experiment/add/")
    page.fill("#id_name", "Personal picks vs best-sellers")
    page.select_option("#id_primary_metric", "conversion")
    page.check("input[name=guardrail_metrics][value=revenue]")
    page.fill("#id_baseline", "0.2")
    for row, config in enumerate((default, popularity)):
        page.fill(f"#id_variants-{row}-position", str(row))
        page.select_option(f"#id_variants-{row}-config", str(config.pk))
        page.fill(f"#id_variants-{row}-share", "50")
    page.click("input[name=_continue]")
    page.wait_for_selector("#experiment-plan")
    plan = page.inner_text("#experiment-plan")
    assert "To detect a lift of 10%" in plan and "customers" in plan  # the sample size from the baseline
    experiment = Experiment.objects.get(name="Personal picks vs best-sellers")
    assert experiment.status == "draft" and experiment.guardrail_metrics == ["revenue"]

    page.click("#start-experiment")
    page.wait_for_selector(".messagelist")
    assert "started" in page.inner_text(".messagelist")
    experiment.refresh_from_db()
    assert experiment.status == "running"
    assert Assignment.objects.filter(experiment=experiment).count() == 40  # the pipeline ran (eagerly)
    assert RecommenderRun.objects.filter(is_active=True).exclude(channel="").count() == 2

    # customers visit and answer
    call_command("simulate_demo_traffic", waves=3, visitors=40, seed=1, stdout=StringIO())
    page.reload()
    page.wait_for_selector("#experiment-report")
    rows = page.locator("#experiment-variants tbody tr")
    assert rows.count() == 2
    assert "A (control)" in rows.nth(0).inner_text() and "Best-sellers" in rows.nth(1).inner_text()
    assert page.locator("#experiment-comparisons tbody tr").count() == 1
    assert page.inner_text("#experiment-verdict")  # a verdict in words
    assert page.locator("#experiment-chart rect").count() == 2
    shot(page, "experiment-report")

    page.click("#stop-experiment")
    page.wait_for_selector(".messagelist")
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.outcome
    assert not RecommenderRun.objects.exclude(channel="").exists()  # the variants' runs left service
    assert "Report · Stopped" in page.inner_text("#experiment-report")
    assert page.console_errors == []
