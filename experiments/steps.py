"""The experiments app's pipeline step (listed in settings.PIPELINE_STEPS; see pipeline/steps.py)."""

from pipeline.steps import Step

from . import services


def experiments_local(*, step, progress) -> dict:
    """The local backend: each running experiment variant's suggestions with the numpy engine."""
    return services.experiments_compute(step=step, progress=progress)


experiments = Step(
    name="experiments",
    description=(
        "The running experiment's variants: each one's suggestions from its recommender configuration,"
        " and the new customers' assignments. Skipped when no experiment runs."
    ),
    params=(),
    backends={"local": experiments_local},
    abandon=lambda *, step: services.recommendation_services.recommender_run_abandon(step=step),
)
