"""The steps listed in settings: their order, the parameters each declares, and one way to start a run."""

from io import StringIO

import pytest
from django.core.management import call_command

from pipeline import services
from pipeline.steps import Param, Step, available_steps, ordered

seen: list[tuple[str, dict]] = []


def _compute(name):
    def compute(*, step, progress, **params):
        seen.append((name, params))
        return {"params": params}

    return compute


early = Step(
    name="early",
    description="runs first",
    backends={"local": _compute("early")},
    params=(Param("incremental", bool, False, help="only what changed.", admin=True),),
)
late = Step(
    name="late",
    description="runs second",
    backends={"local": _compute("late")},
    params=(Param("k", int, None, help="how many."), Param("incremental", bool, False)),
)
plain = Step(name="plain", description="takes nothing", backends={"local": _compute("plain")})


@pytest.fixture
def listed(settings):
    seen.clear()
    settings.PIPELINE_STEPS = [f"{__name__}.{name}" for name in ("late", "plain", "early")]


def test_the_order_is_the_settings_order(listed):
    assert available_steps() == ["late", "plain", "early"]
    assert ordered(["early", "late", "early"]) == ["late", "early"]
    with pytest.raises(ValueError, match="unknown step"):
        ordered(["astrology"])


@pytest.mark.django_db
def test_each_step_gets_only_the_parameters_it_declares(listed):
    run = services.pipeline_start(trigger="shell", options={"incremental": True, "k": 4})
    assert run.steps == ["late", "plain", "early"]
    assert run.step_params == {"late": {"k": 4, "incremental": True}, "early": {"incremental": True}}
    services.pipeline_execute(run=run, step_params=run.step_params)
    assert seen == [("late", {"k": 4, "incremental": True}), ("plain", {}), ("early", {"incremental": True})]
    assert run.step_runs.get(name="late").params == {"k": 4, "incremental": True}


@pytest.mark.django_db
def test_a_parameter_no_step_takes_or_of_the_wrong_type_is_refused(listed):
    with pytest.raises(ValueError, match="no step takes the parameter"):
        services.pipeline_start(trigger="shell", options={"astrology": 1})
    with pytest.raises(ValueError, match="k must be of type int"):
        services.pipeline_start(trigger="shell", steps=["late"], options={"k": "four"})


@pytest.mark.django_db
def test_the_recompute_command_offers_the_declared_parameters(listed):
    out = StringIO()
    call_command("recompute", "--steps", "early,late", "--k", "3", "--no-progress", stdout=out, stderr=StringIO())
    assert seen == [("late", {"k": 3}), ("early", {})]
    assert "pipeline #" in out.getvalue() and "succeeded" in out.getvalue()
