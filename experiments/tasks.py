"""Celery tasks of experiments: they take ids, call one service, and are safe to run twice."""

from celery import shared_task

from common.retry import RETRY_TRANSIENT

from . import services


@shared_task(name="experiments.tasks.experiments_look", **RETRY_TRANSIENT, soft_time_limit=1700, time_limit=1800)
def experiments_look() -> dict:
    """Today's look at every running experiment (a second run the same day replaces the day's look)."""
    return {"looks": services.looks_take()}
