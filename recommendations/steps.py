"""The recommendations app's pipeline step (listed in settings.PIPELINE_STEPS; see pipeline/steps.py)."""

from pipeline.steps import Param, Step

from . import selectors, services


def recommendations_local(*, step, progress, recommender_config: str = "") -> dict:
    """The local backend: `services.recommendations_compute` (the numpy engine) in the worker."""
    return services.recommendations_compute(step=step, progress=progress, config=recommender_config)


def recommendations_spark(*, step, progress, recommender_config: str = "") -> dict:
    """The Spark backend: `services_spark.recommendations_compute_spark` (docs/spark.md)."""
    from . import services_spark

    return services_spark.recommendations_compute_spark(step=step, progress=progress, config=recommender_config)


recommendations = Step(
    name="recommendations",
    description=(
        "Suggestions per customer and kind (the default recommender configuration, or the one named),"
        " similar items, cold start by segment, offline metrics."
    ),
    params=(
        Param(
            "recommender_config",
            str,
            "",
            "Recommender configuration to serve, by name (empty: the default one).",
            admin=True,
            choices=selectors.config_choices,
        ),
    ),
    backends={"local": recommendations_local, "spark": recommendations_spark},
    abandon=lambda *, step: services.recommender_run_abandon(step=step),
)
