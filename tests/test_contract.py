"""Contract: schemathesis generates requests from the OpenAPI schema for the main endpoints and checks,
with valid credentials, that nothing answers 5xx and every answer matches the schema."""

from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings

from pipeline import services as pipeline
from tests.factories import ADMINISTRATOR, ApiKeyFactory, EventRow, OperatorFactory, ingest

pytestmark = pytest.mark.contract
CREDENTIALS: dict[str, str] = {}


@pytest.fixture
def api_schema(db):
    now = timezone.now()
    ingest(
        events=[
            EventRow(
                external_id=f"k{i}",
                customer=f"c{i % 5}",
                item=f"sku{i % 4}",
                type=["view", "purchase"][i % 2],
                amount=9.5 if i % 2 else None,
                occurred_at=now - timedelta(days=i),
                context={"order_id": f"o{i}"} if i % 2 else {},
            )
            for i in range(30)
        ]
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"]))
    OperatorFactory(username="contract-admin", password="contract-pw", role=ADMINISTRATOR)  # HTTP Basic below
    key = ApiKeyFactory(name="contract", scopes=["ingest_events", "read_recommendations", "manage_customers"]).secret
    # Called in-process, the WSGI app would close the database connection after each request
    # (and with it the test's transaction); Django's own test client switches that off the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    CREDENTIALS["key"] = key
    yield schema
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


MAIN_ENDPOINTS = r"^/api/(events|customers|items|customer-tokens|segments)/|^/api/customers/\{external_id\}/(profile|segments|recommendations)/|^/api/items/\{external_id\}/similar/"
schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex=MAIN_ENDPOINTS)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_honours_its_schema(case):
    # Operators' basic auth opens everything except the token endpoint, which is for API keys.
    if case.path == "/api/customer-tokens/":
        headers = {"Authorization": f"Api-Key {CREDENTIALS['key']}"}
    else:
        import base64

        headers = {"Authorization": "Basic " + base64.b64encode(b"contract-admin:contract-pw").decode()}
    case.call_and_validate(headers=headers)
