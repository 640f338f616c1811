"""Celery tasks: they take ids, call one service, and are safe to run twice.

The recomputation itself runs as the pipeline's "recommendations" step (profiles.tasks).
Transient database or broker errors are retried with backoff (config.celery.RETRY_TRANSIENT);
each service call is one transaction, so a retried call never leaves half its work behind.
"""
from celery import shared_task

from config.celery import RETRY_TRANSIENT

from . import services


@shared_task(name="recommendations.tasks.impressions_record", **RETRY_TRANSIENT, soft_time_limit=110, time_limit=120)
def impressions_record_task(customer_ids: list[int], item_ids: list[int], source: str = "", shown_at: str | None = None) -> int:
    """Record shown items for a batch (campaigns enqueue this after delivery; ISO timestamp or now)."""
    from django.utils.dateparse import parse_datetime

    return services.impressions_record(customer_ids=customer_ids, item_ids=item_ids, source=source,
                                       shown_at=parse_datetime(shown_at) if shown_at else None)


@shared_task(name="recommendations.tasks.runs_prune", **RETRY_TRANSIENT, soft_time_limit=540, time_limit=600)
def runs_prune_task(keep: int | None = None) -> int:
    return services.recommender_runs_prune(keep=keep or services.recommender_settings()["keep_runs"])
