"""The profiles app's pipeline step (listed in settings.PIPELINE_STEPS; see pipeline/steps.py)."""

from datetime import UTC, datetime

from pipeline.steps import Param, Step

from . import services


def profiles_local(*, step, progress, incremental: bool = False, as_of: str | None = None) -> dict:
    """The local backend: `services.profiles_compute` in the worker."""
    return services.profiles_compute(step=step, incremental=incremental, progress=progress, now=_as_of(as_of))


def _as_of(as_of: str | None) -> datetime | None:
    """`as_of` (ISO 8601) computes profiles as of a past moment, e.g. for a historical dataset."""
    now = datetime.fromisoformat(as_of) if as_of else None
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now


def profiles_spark(*, step, progress, incremental: bool = False, as_of: str | None = None) -> dict:
    """The Spark backend (docs/spark.md): `services.profiles_compute_spark`, a full run (an incremental
    one computes everyone; its counts say so)."""
    return services.profiles_compute_spark(step=step, incremental=incremental, progress=progress, now=_as_of(as_of))


profiles = Step(
    name="profiles",
    description="Per-customer features: RFM, interests, price band, activity, lifecycle.",
    params=(
        Param("incremental", bool, False, help="only customers with new events since the last run.", admin=True),
        Param("as_of", str, None, help="as of this ISO date/time instead of now (historical data)."),
    ),
    backends={"local": profiles_local, "spark": profiles_spark},
)
