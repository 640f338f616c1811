"""The segments app's pipeline step (listed in settings.PIPELINE_STEPS; see pipeline/steps.py)."""

from pipeline.steps import Param, Step

from . import services


def segments_local(*, step, progress, k: int | None = None, method: str | None = None) -> dict:
    """The local backend: `services.segments_compute` (scikit-learn's k-means) in the worker."""
    return services.segments_compute(step=step, progress=progress, k=k, method=method)


segments = Step(
    name="segments",
    description="Clustering segments (k-means, elbow + silhouette) and rule segments.",
    params=(
        Param("k", int, None, help="pin the number of clusters instead of choosing it."),
        Param("method", str, None, help="the clustering method (kmeans or agglomerative) instead of SEGMENT_METHOD."),
    ),
    backends={"local": segments_local},
    abandon=lambda *, step: services.clustering_run_abandon(step=step),
)
