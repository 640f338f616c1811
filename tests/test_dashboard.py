"""The operator dashboard: figures from the stored runs, charts fed, no query that grows with the data."""

from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pipeline import services as pipeline
from profiles import services
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _shop(n, start=0):
    now = timezone.now()
    services.events_ingest(
        rows=pd.DataFrame(
            [
                {
                    "external_id": f"d{start + i}",
                    "customer": f"c{(start + i) % (n // 3 + 1)}",
                    "item": f"sku{i % 7}",
                    "type": "purchase" if i % 3 == 0 else "view",
                    "amount": 12.0 if i % 3 == 0 else None,
                    "occurred_at": now - timedelta(days=i % 60),
                    "context": {"order_id": f"o{start + i}"} if i % 3 == 0 else {},
                }
                for i in range(n)
            ]
        )
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments"]))


def test_dashboard_shows_the_platform_at_a_glance(admin_client):
    _shop(300)
    resp = admin_client.get("/admin/dashboard/")
    assert resp.status_code == 200
    figures = resp.context["figures"]
    assert figures["customers"] == 101 and figures["events_30d"] == 150
    charts = resp.context["charts"]
    assert sum(charts["segments"]["sizes"]) == 101
    assert charts["elbow"]["chosen_k"] in charts["elbow"]["ks"]
    html = resp.content.decode()
    assert "chart.umd.min.js" in html and "Pipeline runs" in html
    assert "Open the dashboard" in admin_client.get("/admin/").content.decode()


def test_dashboard_queries_do_not_grow_with_the_data_and_never_count_events(admin_client):
    _shop(120)
    with CaptureQueriesContext(connection) as small:
        admin_client.get("/admin/dashboard/")
    _shop(900, start=1000)
    with CaptureQueriesContext(connection) as large:
        admin_client.get("/admin/dashboard/")
    assert len(large.captured_queries) == len(small.captured_queries)
    assert not any("profiles_event" in q["sql"] for q in large.captured_queries)


def test_dashboard_is_for_staff_only(client):
    assert client.get("/admin/dashboard/").status_code == 302  # to the login page
    client.force_login(UserFactory(username="shopper"))
    assert client.get("/admin/dashboard/").status_code == 302
