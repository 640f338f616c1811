"""An incremental profiles run: only the customers with new events are recomputed, from their own
events, and they get the profile a full run gives them."""

import pandas as pd
import pytest
from django.db import connection

from pipeline import services as pipeline
from profiles.models import Profile
from profiles.services import compute
from tests.factories import CustomerRow, ingest, purchases

N = 80
CHANGED = ["c03", "c77"]  # far apart: every id between them is unchanged
FIELDS = ["frequency", "monetary", "orders_total", "n_events", "lifecycle"]


def _run(incremental: bool = False):
    run = pipeline.pipeline_create(steps=["profiles"])
    pipeline.pipeline_execute(run=run, step_params={"profiles": {"incremental": incremental}})
    assert run.status == "succeeded", run.error
    return run.step_runs.get().counts


def _stored(external_ids) -> pd.DataFrame:
    rows = Profile.objects.filter(customer__external_id__in=external_ids).values("customer__external_id", *FIELDS)
    return pd.DataFrame(list(rows)).set_index("customer__external_id").sort_index()


@pytest.mark.django_db
def test_an_incremental_run_reads_only_the_changed_customers_and_gives_them_the_full_runs_profile(monkeypatch):
    names = [f"c{i:02d}" for i in range(N)]
    ingest(customers=[CustomerRow(external_id=x) for x in names], events=purchases(names, 4 * N, prefix="old"))
    _run()
    before = _stored(CHANGED)
    ingest(events=purchases(CHANGED, 6, prefix="new", amount=25.0, order_ids=True))

    read = []
    real = compute._events_frame_range

    def recording(*args, **kwargs):
        frame = real(*args, **kwargs)
        read.append(frame)
        return frame

    monkeypatch.setattr(compute, "_events_frame_range", recording)
    counts = _run(incremental=True)
    assert counts["incremental"] is True and counts["customers"] == counts["profiles_written"] == 2
    assert counts["events_read"] == 2 * 4 + 6  # four old purchases each, six new ones between them
    read = pd.concat(read)
    if connection.vendor == "postgresql":
        # the two customers' events were read, not the 76 customers' between their ids
        assert read["customer_id"].nunique() == 2 and len(read) == counts["events_read"]
    incremental = _stored(CHANGED)
    assert (incremental["monetary"] == before["monetary"] + 3 * 25).all()
    assert (incremental["n_events"] == before["n_events"] + 3).all()

    monkeypatch.setattr(compute, "_events_frame_range", real)
    _run()
    pd.testing.assert_frame_equal(_stored(CHANGED), incremental)
