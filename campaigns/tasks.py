"""Celery tasks: they take ids, call one service, and are safe to run twice.

Beat entries (the lead adds them to CELERY_BEAT_SCHEDULE):
  campaigns.tasks.campaigns_tick       every minute      scheduled launches, recurring refreshes, deferred sends, stranded chunks
  campaigns.tasks.campaigns_attribute  every 15 minutes  conversion attribution
"""
from celery import shared_task

from . import services


@shared_task(name="campaigns.tasks.deliveries_send", bind=True, acks_late=True)
def deliveries_send(self, campaign_id: int, first_id: int, last_id: int) -> dict:
    """Send one chunk. The task id is the claim key: a redelivery of the same message may take over
    the rows its dead predecessor claimed; rows already sent are skipped."""
    return services.deliveries_send(campaign_id=campaign_id, first_id=first_id, last_id=last_id, attempt=self.request.id or "")


@shared_task(name="campaigns.tasks.campaigns_tick")
def campaigns_tick() -> dict:
    return services.campaigns_tick()


@shared_task(name="campaigns.tasks.campaigns_attribute")
def campaigns_attribute() -> dict:
    return {str(k): v for k, v in services.campaigns_attribute().items()}
