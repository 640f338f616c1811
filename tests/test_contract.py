"""Contract: schemathesis generates requests from the OpenAPI schema for every documented operation and
checks, with the credentials of the caller each operation is for (the shop's API key, an operator, or,
on the customer-facing reads, the customer's own token), that nothing answers 5xx, that every
status code is one the operation declares, and that every answer's body and content type match the
schema (response schema conformance)."""

import base64
import re
import zlib
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline import services as pipeline
from tests.factories import ADMINISTRATOR, ApiKeyFactory, CustomerTokenFactory, EventRow, OperatorFactory, ingest

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
    CREDENTIALS["customer"] = CustomerTokenFactory(customer="c1").token
    yield schema
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")

# The shop's backend (an API key) calls the ingestion, customer and customer-facing operations; the
# operator-only ones (segments, campaign reports and previews) take an operator's HTTP Basic.
OPERATOR_ONLY = re.compile(r"^/api/(segments/|campaigns/)")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# What a customer's own token opens (docs/api.md, "Who may call what").
CUSTOMER_FACING = re.compile(
    r"^/api/customers/\{external_id\}/(recommendations|inbox|activities)/$|^/api/items/\{external_id\}/similar/$"
)


def _headers(path: str) -> dict[str, str]:
    if OPERATOR_ONLY.match(path):
        return {"Authorization": "Basic " + base64.b64encode(b"contract-admin:contract-pw").decode()}
    return {"Authorization": f"Api-Key {CREDENTIALS['key']}"}


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_honours_its_schema(case):
    headers = _headers(case.path)
    params = case.path_parameters if case.path_parameters is not None else {}
    wanted = params.get("external_id")
    if case.method == "GET" and isinstance(wanted, str) and zlib.crc32(wanted.encode("utf-8", "surrogatepass")) % 2:
        # half the reads name a customer (or item) the shop has, so answers full of real data are checked
        # too, and the customer-facing ones are called with that customer's own token
        params["external_id"] = "sku1" if case.path.startswith("/api/items/") else "c1"
        if CUSTOMER_FACING.match(case.path):
            headers = {"Authorization": f"Customer {CREDENTIALS['customer']}"}
    case.call_and_validate(headers=headers, checks=CHECKS)
