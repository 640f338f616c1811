"""The profiles step's predictions on small populations of their own: a degenerate one gets no model (and the
step still succeeds, saying why), and a run as of a past moment ignores everything after it."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from profiles.models import Event
from tests.factories import CustomerRow, EventRow, ingest
from tests.profiles.test_predictions_step import _profiles, _run


@pytest.mark.django_db
def test_a_population_without_repeat_buyers_gets_no_model_and_the_step_says_why():
    now = timezone.now()
    ingest(customers=[CustomerRow(external_id=f"c{i}") for i in range(30)])
    ingest(
        events=[
            EventRow(
                external_id=f"e{i}",
                customer=f"c{i}",
                item="sku1",
                purchase=True,
                amount=10.0,
                occurred_at=now - timedelta(days=i),
            )
            for i in range(30)
        ]
    )

    step = _run()

    assert step.counts["profiles_written"] == 30
    recorded = step.counts["predictions"]
    assert "repeat buyers" in recorded["reason"] and recorded["basis"] == {"none": 30}
    assert "bgnbd" not in recorded
    p = _profiles()
    assert (p["prediction_basis"] == "").all()
    assert p[["p_alive", "predicted_orders", "predicted_value", "churn_risk", "next_order_at"]].isna().all().all()
    assert p["prediction_horizon_days"].isna().all()
    # and an incremental run after it predicts nothing either, saying why
    ingest(events=[EventRow(external_id="late", customer="c0", item="sku1", purchase=True, amount=5.0)])
    inc = _run(incremental=True)
    assert "fitted no model" in inc.counts["predictions"]["reason"]


def _history(rng: np.random.Generator, cut: pd.Timestamp) -> list[dict]:
    """Forty customers' orders over the year before ``cut`` and the three months after it; after each order a
    customer stops buying with a chance of their own, as BG/NBD assumes."""
    rows = []
    for c in range(40):
        rate = rng.gamma(1.0, 1 / 20)  # orders a day
        stop = rng.beta(1.0, 6.0)
        start = cut - pd.Timedelta(days=int(rng.integers(30, 365)))
        t, k = start, 0
        while t < cut + pd.Timedelta(days=90):
            rows.append(
                EventRow(
                    external_id=f"h{c}-{k}",
                    customer=f"h{c}",
                    item=f"sku{k % 4}",
                    purchase=True,
                    amount=float(rng.gamma(4, 10)),
                    occurred_at=t.floor("s").to_pydatetime(),
                    context={"order_id": f"h{c}-{k}"},
                )
            )
            t += pd.Timedelta(days=float(rng.exponential(1 / rate)) + 1)
            k += 1
            if rng.random() < stop:
                break
    return rows


@pytest.mark.django_db
def test_predictions_as_of_a_past_moment_ignore_what_happened_after_it():
    cut = pd.Timestamp(timezone.now()).floor("D") - pd.Timedelta(days=100)
    rows = _history(np.random.default_rng(5), cut)
    assert any(r["occurred_at"] > cut for r in rows)  # there is something later to ignore
    ingest(customers=[CustomerRow(external_id=f"h{c}") for c in range(40)])
    ingest(events=rows)

    with_later = _run(as_of=cut.isoformat())
    seen = _profiles()
    Event.objects.filter(occurred_at__gt=cut).delete()
    without_later = _run(as_of=cut.isoformat())
    unseen = _profiles()

    assert with_later.counts["predictions"]["bgnbd"] == without_later.counts["predictions"]["bgnbd"]
    cols = ["p_alive", "predicted_orders", "predicted_value", "churn_risk", "next_order_at", "prediction_basis"]
    pd.testing.assert_frame_equal(seen[cols], unseen.loc[seen.index, cols])
    assert (seen["computed_at"] == cut).all()
