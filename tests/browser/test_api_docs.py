"""The API docs render offline, under the CSP: Swagger UI at /api/docs/ and ReDoc at /api/redoc/.

The browser is cut off from everything but the live server (any other request is aborted, as on a
machine with no network), and the pages must show the operation list, find an operation, and log
no console error nor CSP violation. The one exception is ReDoc's own "API docs by Redocly" logo,
which its bundle always asks of its vendor's site: the CSP refuses it (as it should) and ReDoc
then leaves the logo out.
"""

import pytest

from tests.browser.conftest import shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def offline(page, live_server):
    """The page, with every request that leaves the live server aborted, and outside requests recorded."""
    page.outside = []

    def route(r):
        if r.request.url.startswith(live_server.url):
            return r.continue_()
        page.outside.append(r.request.url)
        return r.abort()

    page.context.route("**/*", route)
    page.context.add_init_script(WATCH)
    return page


def _errors(page, *, allowed=()):
    errors = [e for e in page.console_errors if not any(a in e for a in allowed)]
    violations = [v for v in page.evaluate("() => window.__csp") if not any(a in v for a in allowed)]
    return errors, violations


def test_swagger_ui_lists_the_operations_offline(offline, live_server):
    page = offline
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert "Marketing platform API" in page.inner_text(".info .title")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/customers/{external_id}/recommendations/" in paths and "/api/campaigns/{id}/report/" in paths
    # an operation opens with its declared answer: the report's conversion block is typed, not "object"
    page.locator(".opblock-summary-path", has_text="/api/campaigns/{id}/report/").click()
    page.wait_for_selector(".opblock.is-open .responses-table", timeout=10_000)
    assert "uplift_abs_ci" in page.locator(".opblock.is-open").inner_text()
    page.set_viewport_size({"width": 1300, "height": 900})
    shot(page, "api-docs-swagger-offline")
    assert page.outside == []
    assert _errors(page) == ([], [])


def test_redoc_renders_and_searches_offline(offline, live_server):
    page = offline
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("h1", timeout=30_000)
    assert "Marketing platform API" in page.inner_text("h1")
    menu = page.locator("[role=menu]").first.inner_text()
    for tag in ("campaigns", "customers", "events", "segments"):
        assert tag in menu
    page.locator("h2", has_text="A customer's suggestions of one kind, with reasons").wait_for()
    # the search runs in ReDoc's web worker (a blob: worker, which this page's CSP allows)
    page.fill("input[placeholder='Search...']", "erasure")
    found = page.locator("[data-role='search:results'] li").first
    found.wait_for(timeout=15_000)
    assert found.inner_text().upper().startswith("DEL")
    assert "Forget a customer" in found.inner_text()
    shot(page, "api-docs-redoc-offline")
    assert set(page.outside) <= {REDOC_LOGO}
    assert _errors(page, allowed=[REDOC_LOGO, "logo-mini.svg"]) == ([], [])
