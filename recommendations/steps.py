"""The recommendations app's pipeline step (listed in settings.PIPELINE_STEPS; see pipeline/steps.py)."""

from pipeline.steps import Step

from . import services


def recommendations_local(*, step, progress) -> dict:
    """The local backend: `services.recommendations_compute` (the numpy engine) in the worker."""
    return services.recommendations_compute(step=step, progress=progress)


recommendations = Step(
    name="recommendations",
    description="Suggestions per customer and kind (PureSVD), similar items, cold start by segment, offline metrics.",
    backends={"local": recommendations_local},
    abandon=lambda *, step: services.recommender_run_abandon(step=step),
)
