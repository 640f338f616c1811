"""Celery tasks: they take ids, call one service, and are safe to run twice.

Beat entries (config/settings.py, CELERY_BEAT_SCHEDULE):
  campaigns.tasks.campaigns_tick       every minute      scheduled launches, recurring refreshes, deferred sends,
                                                         stranded chunks
  campaigns.tasks.campaigns_attribute  every 15 minutes  conversion attribution
  campaigns.tasks.campaigns_decide_winners  every 5 minutes  variants tests past their window decided, the
                                                         winner sent to the rest (once: under the campaign's
                                                         row lock, winner_sent_at)

Reliability (docs/reliability.md): transient database or broker errors are retried with
exponential backoff and jitter (common.retry.RETRY_TRANSIENT). Each task has time limits fitted
to its job instead of the global hour: a tick must finish before the next one starts, a chunk of
sends within a few minutes. A send retried (or redelivered) keeps its task id, which is its claim
key, so it takes over its own claimed rows and skips those already sent.
"""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from common.retry import RETRY_TRANSIENT

from . import services

# A chunk (CAMPAIGN_CHUNK_SIZE, 1,000 deliveries) goes out in seconds in-app and in well under
# a minute by email or push; the limit catches a channel that hangs. A retry after the soft limit
# continues where the chunk stopped, so a slow chunk still finishes.
SEND_LIMITS = {"soft_time_limit": 240, "time_limit": 300}
# Beat starts a tick every minute: one that runs longer would overlap the next.
TICK_LIMITS = {"soft_time_limit": 50, "time_limit": 60}
# Attribution runs every 15 minutes.
ATTRIBUTE_LIMITS = {"soft_time_limit": 840, "time_limit": 900}


@shared_task(
    name="campaigns.tasks.deliveries_send",
    bind=True,
    acks_late=True,
    **SEND_LIMITS,
    **{**RETRY_TRANSIENT, "autoretry_for": (*RETRY_TRANSIENT["autoretry_for"], SoftTimeLimitExceeded)},
)
def deliveries_send(self, campaign_id: int, first_id: int, last_id: int) -> dict:
    """Send one chunk. The task id is the claim key: a redelivery of the same message may take over
    the rows its dead predecessor claimed; rows already sent are skipped."""
    return services.deliveries_send(
        campaign_id=campaign_id, first_id=first_id, last_id=last_id, attempt=self.request.id or ""
    )


@shared_task(
    name="campaigns.tasks.campaigns_tick",
    **{**RETRY_TRANSIENT, "max_retries": 2, "retry_backoff_max": 20},
    **TICK_LIMITS,
)
def campaigns_tick() -> dict:
    # Few, short retries: the next tick comes within a minute and does the same work.
    return services.campaigns_tick()


@shared_task(name="campaigns.tasks.campaigns_attribute", **RETRY_TRANSIENT, **ATTRIBUTE_LIMITS)
def campaigns_attribute() -> dict:
    return {str(k): v for k, v in services.campaigns_attribute().items()}


# A look at the due tests: a few campaigns, each one attribution and one analysis.
DECIDE_LIMITS = {"soft_time_limit": 240, "time_limit": 280}


@shared_task(name="campaigns.tasks.campaigns_decide_winners", **RETRY_TRANSIENT, **DECIDE_LIMITS)
def campaigns_decide_winners() -> dict:
    # Safe to run twice: each campaign's decision happens once, under its row lock.
    return services.campaigns_decide_winners()
