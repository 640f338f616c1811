"""Celery tasks: they take ids, call one service, and are safe to run twice.

The recomputation itself runs as the pipeline's "recommendations" step (profiles.tasks).
"""
from celery import shared_task

from . import services


@shared_task(name="recommendations.tasks.impressions_record")
def impressions_record_task(customer_ids: list[int], item_ids: list[int], source: str = "", shown_at: str | None = None) -> int:
    """Record shown items for a batch (campaigns enqueue this after delivery; ISO timestamp or now)."""
    from django.utils.dateparse import parse_datetime

    return services.impressions_record(customer_ids=customer_ids, item_ids=item_ids, source=source,
                                       shown_at=parse_datetime(shown_at) if shown_at else None)


@shared_task(name="recommendations.tasks.runs_prune")
def runs_prune_task(keep: int | None = None) -> int:
    return services.recommender_runs_prune(keep=keep or services.recommender_settings()["keep_runs"])
