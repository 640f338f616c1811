"""The API's docs tell the truth and are served offline: every example answer in docs/api.md parses
with the client generated from the schema, and the schema, Swagger UI and ReDoc are served from the
app's own files."""

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from tests.factories import OperatorFactory
from tests.generated_client import generate, parse_body

DOC = Path(settings.BASE_DIR) / "docs" / "api.md"
ANSWER = re.compile(r"<!-- answer: (GET|POST|DELETE|PUT|PATCH) (\S+) (\d{3}) -->\n```json\n(.*?)\n```", re.S)


@pytest.fixture(scope="session")
def api(tmp_path_factory, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return generate(tmp_path_factory.mktemp("doc-client"))


def _examples():
    text = DOC.read_text()
    return text, [m.groups() for m in ANSWER.finditer(text)]


def test_every_json_example_in_the_api_doc_names_its_operation():
    text, examples = _examples()
    assert text.count("```json") == len(examples) >= 10, "a ```json block in docs/api.md without its answer comment"


@pytest.mark.parametrize(("method", "path", "status", "body"), _examples()[1], ids=lambda v: str(v)[:40])
def test_each_example_answer_in_the_api_doc_matches_the_schema(api, method, path, status, body):
    parse_body(api, method.lower(), path, int(status), body.encode())


def test_the_recommendation_example_shows_the_item_nested_and_a_real_reason_code(api):
    _, examples = _examples()
    body = next(b for m, p, s, b in examples if p.endswith("/recommendations/") and s == "200")
    answer = parse_body(api, "get", "/api/customers/{external_id}/recommendations/", 200, body.encode())
    assert answer.results[0].item.external_id == "sku-19"
    assert {r.reason.value for r in answer.results} <= {"item", "similar_users", "segment_popular", "popular"}


@pytest.mark.django_db
def test_the_schema_is_served_as_yaml_and_as_json(client):
    as_yaml = client.get("/api/schema/")
    assert as_yaml.status_code == 200 and as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(as_yaml.content)["info"]["title"] == "Marketing platform API"
    as_json = client.get("/api/schema/?format=json")
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    spec = as_json.json()
    assert spec["openapi"].startswith("3.") and "/api/campaigns/{id}/report/" in spec["paths"]
    report = spec["paths"]["/api/campaigns/{id}/report/"]["get"]["responses"]["200"]
    assert report["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Report"}
    item = spec["components"]["schemas"]["ErrorItem"]["properties"]
    assert {"field", "row", "path", "reason"} <= set(item)


@pytest.mark.django_db
@pytest.mark.parametrize(("url", "bundle"), [("/api/docs/", "swagger-ui-dist"), ("/api/redoc/", "redoc/bundles")])
def test_swagger_ui_and_redoc_load_only_the_apps_own_files(client, url, bundle):
    client.force_login(OperatorFactory(username="docs-reader"))
    page = client.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and bundle in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "a file from outside the app"
    assert "<script>" not in html, "inline script, which the CSP refuses"
    csp = page["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    # ReDoc's search index runs in a blob: worker: allowed on the ReDoc page only
    assert ("worker-src 'self' blob:" in csp) == (url == "/api/redoc/")


def test_the_api_doc_names_the_schema_urls():
    text = DOC.read_text()
    for url in ("/api/schema/?format=json", "/api/docs/", "/api/redoc/"):
        assert url in text
