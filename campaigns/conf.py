"""The campaigns app's settings: Django settings first, then the environment, then the default.

Every name is listed in docs/campaigns.md. Reading the environment as a fallback lets a worker
subprocess (tests, benchmarks) be tuned without a settings module of its own.
"""
from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "CAMPAIGN_FREQUENCY_CAP_COUNT": 3,          # at most N messages per customer ...
    "CAMPAIGN_FREQUENCY_CAP_DAYS": 7,           # ... in D days, across all campaigns and channels
    "CAMPAIGN_CHUNK_SIZE": 1000,                # deliveries per Celery task
    "CAMPAIGN_SEND_BATCH": 500,                 # deliveries marked sent per UPDATE within a chunk
    "CAMPAIGN_SEND_DELAY_SECONDS": 0.0,         # a pause per message (tests slow a channel down with it)
    "CAMPAIGN_CLAIM_TIMEOUT_SECONDS": 300,      # a row claimed longer ago by another attempt is reclaimable
    "CAMPAIGN_QUEUE": "",                       # Celery queue of the send tasks ("" = the default queue)
    "CAMPAIGN_PUBLIC_BASE_URL": "http://127.0.0.1:8000",  # for unsubscribe links
    "CAMPAIGN_ITEM_URL": "{base}/shop/{kind}/{external_id}/",  # an item's link when it has no attributes.url
    "CAMPAIGN_MESSAGE_MAX_CHARS": 65_536,       # a rendered title or body longer than this fails its delivery
    "CAMPAIGN_TEMPLATE_MAX_STEPS": 20_000,      # loop iterations + pieces of template + filters per message
    "CAMPAIGN_FROM_EMAIL": "",                  # default: DEFAULT_FROM_EMAIL
    "CAMPAIGN_PUSH_URL": "",                    # the shop's push service
    "CAMPAIGN_PUSH_SECRET": "",                 # HMAC-SHA256 key; no default (push refuses to send without it)
    "CAMPAIGN_PUSH_TIMEOUT_SECONDS": 5.0,
    "CAMPAIGN_PUSH_MAX_ATTEMPTS": 5,
    "CAMPAIGN_PUSH_BACKOFF_SECONDS": 0.5,       # first retry after this, doubling each time
    "CAMPAIGN_PUSH_CONCURRENCY": 8,             # parallel requests within a chunk
    "CAMPAIGN_EVENT_TYPES": {"delivered": "message_delivered", "opened": "message_opened", "clicked": "message_clicked"},
    "CAMPAIGN_ATTRIBUTION_LOOKBACK_DAYS": 60,   # campaigns launched longer ago (window closed) are not re-attributed
}


def conf(name: str) -> Any:
    default = DEFAULTS[name]
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, dict):
        return {**default, **json.loads(raw)}
    return raw
