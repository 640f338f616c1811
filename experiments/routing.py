"""Which suggestions a customer is served while an experiment runs (settings.RECOMMENDATIONS_ROUTER).

Called on the API's hot path for every request of a customer's suggestions, so it costs nothing when
no experiment is running: each process keeps the running experiment's id for
EXPERIMENTS_ROUTER_CACHE_SECONDS and asks the database only when one is. Then one indexed lookup
finds the customer's recorded assignment: customers are served their variant only once the pipeline
has computed the variant's suggestions and recorded them in it (experiments.services), so a customer
is never routed to a list that does not exist yet.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection

from profiles.models import Customer

from .models import Assignment, Experiment, ExperimentStatus, Variant

_running: tuple[float, int | None] = (0.0, None)


def running_experiment_id() -> int | None:
    """The running experiment's id (at most one runs), from this process's short-lived memory."""
    global _running
    checked, experiment_id = _running
    now = time.monotonic()
    if now - checked >= settings.EXPERIMENTS_ROUTER_CACHE_SECONDS:
        experiment_id = Experiment.objects.filter(status=ExperimentStatus.RUNNING).values_list("pk", flat=True).first()
        _running = (now, experiment_id)
    return experiment_id


def forget_running() -> None:
    """Drop this process's memory (after starting or stopping an experiment here, and in tests)."""
    global _running
    _running = (0.0, None)


_SQL = f"""
SELECT a.variant_id FROM {Assignment._meta.db_table} a
JOIN {Customer._meta.db_table} c ON c.id = a.customer_id
WHERE a.experiment_id = %s AND c.external_id = %s
"""


def channel_for(external_id: str) -> str:
    """The run channel of the customer's variant in the running experiment, "" when not in one."""
    experiment_id = running_experiment_id()
    if experiment_id is None:
        return ""
    with connection.cursor() as cursor:
        cursor.execute(_SQL, [experiment_id, external_id])
        row = cursor.fetchone()
    if row is None:
        return ""
    return Variant(pk=row[0], experiment_id=experiment_id).channel
