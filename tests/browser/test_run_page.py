"""The run page follows a recomputation by itself: an operator opens a running run and, without
reloading, sees its step's progress move on, then the run succeed and the step's figures appear."""

import threading
import time

import pytest
from django.db import connections

from pipeline import services as pipeline
from pipeline.models import PipelineStep, RunStatus
from pipeline.steps import Step
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# The held step waits at each gate until the test opens it.
GATES = {"second": threading.Event(), "finish": threading.Event()}


def _held_profiles(*, step, progress, **params) -> dict:
    progress(0.25, "30,000 of 120,000 customers")
    if not GATES["second"].wait(60):
        raise TimeoutError("the test never opened the first gate")
    time.sleep(1.1)  # progress is recorded at most once a second
    progress(0.5, "60,000 of 120,000 customers")
    if not GATES["finish"].wait(60):
        raise TimeoutError("the test never opened the second gate")
    return {
        "customers": 120_000,
        "profiles_written": 120_000,
        "events_read": 1_234_567,
        "lifecycle": {"active": 80_000, "at-risk": 40_000},
        "seconds": {"read": 95.2, "total": 135.4},
    }


held_profiles = Step(
    name="profiles", description="Profiles, held at gates by the test.", backends={"local": _held_profiles}
)


@pytest.fixture
def held_pipeline(settings):
    settings.PIPELINE_STEPS = ["tests.browser.test_run_page.held_profiles"]
    for gate in GATES.values():
        gate.clear()
    yield
    for gate in GATES.values():
        gate.set()  # never leave the thread waiting


def _execute_in_thread(run):
    def work():
        try:
            pipeline.pipeline_execute(run=run)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, name=f"pipeline-{run.pk}", daemon=True)
    thread.start()
    return thread


def _wait_for_step(run, message: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if PipelineStep.objects.filter(pipeline=run, message=message).exists():
            return
        time.sleep(0.2)
    raise AssertionError(f"the step never reported {message!r}")


def test_the_run_page_follows_a_running_run_until_it_succeeds(page, live_server, held_pipeline, operator_login):
    run = pipeline.pipeline_start(trigger="admin", steps=["profiles"])
    thread = _execute_in_thread(run)
    _wait_for_step(run, "30,000 of 120,000 customers")  # before the page is open: the database is quiet

    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/{run.pk}/change/")
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloaded

    assert page.inner_text("#run-status") == "Running"
    step_text = page.locator('.run-step[data-step="profiles"] .run-step-text')
    assert step_text.inner_text() == "Profiles — 30,000 of 120,000 customers (25%)"
    assert page.get_attribute('.run-step[data-step="profiles"] .run-step-bar', "aria-valuenow") == "25"
    assert "This page follows the run" in page.inner_text("#run-summary")
    shot(page, "run-page-running")

    # the step moves on: the page shows it by itself
    GATES["second"].set()
    page.wait_for_function(
        "() => document.querySelector('.run-step[data-step=\"profiles\"] .run-step-text').textContent"
        ".includes('60,000 of 120,000 customers (50%)')",
        timeout=20_000,
    )
    assert page.get_attribute('.run-step[data-step="profiles"] .run-step-bar', "aria-valuenow") == "50"
    assert "running for" in page.inner_text('.run-step[data-step="profiles"] .run-step-took')

    # the run ends: status, step badge and the step's figures, still without a reload
    GATES["finish"].set()
    page.wait_for_function("() => document.getElementById('run-status').textContent === 'Succeeded'", timeout=20_000)
    thread.join(10)
    assert not thread.is_alive()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert page.evaluate("() => window.sameDocument") is True
    assert page.inner_text('.run-step[data-step="profiles"] .run-step-status') == "Succeeded"
    assert page.inner_text('.run-step[data-step="profiles"] .run-step-text').startswith("Profiles — done")
    assert page.inner_text('.run-step[data-step="profiles"] .run-step-took').startswith("took ")
    figures = page.inner_text('.run-figures-box[data-step="profiles"]')
    assert "Events read\t1,234,567" in figures
    assert "Total\t2 min 15 s" in figures
    assert "At risk\t40,000" in figures
    assert not page.is_visible("#run-following")
    shot(page, "run-page-finished")

    # and it stops asking
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/progress/" in r.url else None)
    page.wait_for_timeout(4500)
    assert asked == []
    assert page.console_errors == []
