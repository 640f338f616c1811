"""
The verbs that change customers, items, events and profiles, one module per idea:

- `catalogue`: customers and items created or updated in bulk (`customers_upsert`, `items_upsert`),
  consent changes (`customer_consent_set`, `consent_changes_record`, `CONSENT_CHANNELS`);
- `events`: the event write path (`events_ingest`, and its steps `events_validate`,
  `events_prepare`, `events_write`, `events_store`);
- `imports`: a file of events imported chunk by chunk, reading beside writing (`events_import_file`);
- `compute`: customers' profiles computed from their events (`profiles_compute`);
- `compute_spark`: the same on Apache Spark, switched in from a staging table (`profiles_compute_spark`).

The services are named here, as `django.db.models` names its parts, so callers write
`from profiles import services` and `services.events_ingest(...)` without knowing the module.
"""

from .catalogue import (
    CONSENT_CHANNELS,
    IngestRefused,
    UpsertResult,
    consent_changes_record,
    customer_consent_set,
    customers_upsert,
    items_upsert,
)
from .compute import profiles_compute
from .compute_spark import profiles_compute_spark
from .events import (
    IngestResult,
    PreparedEvents,
    events_ingest,
    events_ingest_plain,
    events_prepare,
    events_store,
    events_validate,
    events_write,
)
from .imports import ImportReport, events_import_file

__all__ = [
    "CONSENT_CHANNELS",
    "ImportReport",
    "IngestRefused",
    "IngestResult",
    "PreparedEvents",
    "UpsertResult",
    "consent_changes_record",
    "customer_consent_set",
    "customers_upsert",
    "events_import_file",
    "events_ingest",
    "events_ingest_plain",
    "events_prepare",
    "events_store",
    "events_validate",
    "events_write",
    "items_upsert",
    "profiles_compute",
    "profiles_compute_spark",
]
