"""The segments app's pipeline step (listed in settings.PIPELINE_STEPS; see pipeline/steps.py)."""

from pipeline.steps import Param, Step

from . import services


def segments_local(
    *, step, progress, k: int | None = None, method: str | None = None, incremental: bool = False
) -> dict:
    """The local backend: `services.segments_compute` (scikit-learn's k-means) in the worker."""
    return services.segments_compute(step=step, progress=progress, k=k, method=method, incremental=incremental)


def segments_spark(
    *, step, progress, k: int | None = None, method: str | None = None, incremental: bool = False
) -> dict:
    """The Spark backend: the clustering in Spark (`services.segments_cluster_spark`: spark.ml KMeans, or
    BisectingKMeans for "agglomerative"), memberships switched from Spark's staging table; rule
    segments stay SQL in the database. An incremental run places its few changed customers in the
    worker, as on the local backend (a full clustering, when one is needed, runs on Spark)."""
    return services.segments_compute(
        step=step, progress=progress, k=k, method=method, backend="spark", incremental=incremental
    )


segments = Step(
    name="segments",
    description="Clustering segments (k-means, elbow + silhouette) and rule segments.",
    params=(
        Param("k", int, None, help="pin the number of clusters instead of choosing it."),
        Param("method", str, None, help="the clustering method (kmeans or agglomerative) instead of SEGMENT_METHOD."),
        Param(
            "incremental",
            bool,
            False,
            help="only customers whose profiles changed since the last run, placed in the latest clustering.",
            admin=True,
        ),
    ),
    backends={"local": segments_local, "spark": segments_spark},
    abandon=lambda *, step: services.clustering_run_abandon(step=step),
)
