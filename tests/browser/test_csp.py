"""Issue #12 finding 1, in a real browser: every console page works under the Content-Security-Policy
(no inline script, no eval) and hostile names an operator wrote never run.

Each page is opened as a superuser with a shop whose segment, campaign, customer and item names
are XSS payloads (tests/test_security_xss.py). A page fails on any CSP violation (the console's
"Refused to …" and the `securitypolicyviolation` event), any page error, or any payload that ran
(`window.__pwned`); the chart pages must also have drawn their charts.
"""

import pytest
from django.urls import reverse

from tests.browser.conftest import shot, sign_in
from tests.test_security_xss import console_pages, hostile_shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || "") + ":" + (e.lineNumber || ""));
});
"""
# page → how many charts it draws
CHART_PAGES = {
    "/admin/dashboard/": 3,
    "clusteringrun": 2,
    "/admin/recommendations/recommenderrun/": 1,
    "segment/{seg}/": 1,
    # the funnel; the uplift's error bar only once there is a control group and a conversion (issue #14)
    "campaign/{campaign}/": 1,
}


@pytest.fixture
def boss(django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "a-good-passphrase")
    return "boss", "a-good-passphrase"


def _charts_expected(url, objs) -> int:
    for pattern, n in CHART_PAGES.items():
        key = pattern.format(seg=objs["segments"][0].pk, campaign=objs["campaign"].pk)
        if key in url:
            return n
    return 0


def _visit(page, url, expect_charts=0):
    page.goto(url)
    page.wait_for_load_state("load")
    if expect_charts:
        page.wait_for_function(f"() => window.Chart && Object.keys(Chart.instances).length >= {expect_charts}")
        drawn = page.evaluate("""() => Object.values(Chart.instances).map(ch => {
            const d = ch.ctx.getImageData(0, 0, ch.width, ch.height).data; let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })""")
        assert all(n > 200 for n in drawn), (url, drawn)
    page.wait_for_timeout(150)  # let late violations (fetches, images) report
    violations = page.evaluate("() => window.__csp")
    pwned = page.evaluate("() => Object.keys(window).filter(k => k.startsWith('__pwned'))")
    return violations, pwned


def test_every_console_page_passes_the_csp_and_hostile_names_stay_text(page, live_server, boss):
    objs = hostile_shop()
    page.context.add_init_script(WATCH)
    sign_in(page, live_server, *boss)
    from django.contrib.auth.models import User

    from campaigns.models import Delivery

    me = User.objects.get(username="boss").pk
    Delivery.objects.create(
        campaign=objs["campaign"], customer=objs["customer"], status="suppressed", reason="no_consent"
    )
    urls = console_pages(objs) + [
        # the rest of the admin: index, lists and forms of each app, Django's own and django-celery-beat's pages
        "/admin/profiles/customer/",
        "/admin/profiles/customer/add/",
        "/admin/profiles/event/",
        "/admin/profiles/profile/",
        "/admin/accounts/apikey/",
        "/admin/accounts/apikey/add/",
        "/admin/pipeline/pipelinerun/start/",
        "/admin/campaigns/delivery/",
        "/admin/recommendations/recommenderrun/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        f"/admin/auth/user/{me}/change/",
        f"/admin/auth/user/{me}/password/",
        "/admin/auth/group/",
        "/admin/auth/group/add/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/django_celery_beat/periodictask/add/",
        "/admin/django_celery_beat/crontabschedule/add/",
        "/admin/password_change/",
        "/api/segments/",  # DRF's browsable API, with the hostile names in its JSON
    ]
    failures = {}
    for path in urls:
        violations, pwned = _visit(page, live_server.url + path, _charts_expected(path, objs))
        if violations or pwned or page.console_errors:
            failures[path] = {"csp": violations, "pwned": pwned, "console": list(page.console_errors)}
        page.console_errors.clear()
    shot(page, "csp-last-page")
    assert failures == {}
    # the names are on the pages as text
    page.goto(f"{live_server.url}/admin/segments/segment/")
    assert objs["segments"][0].name in page.inner_text("#result_list")


def test_a_pipeline_run_page_the_api_docs_and_the_unsubscribe_page_pass_the_csp(page, live_server, boss):
    from campaigns import services as campaign_services
    from pipeline import services as pipeline

    page.context.add_init_script(WATCH)
    sign_in(page, live_server, *boss)
    run = pipeline.pipeline_create(steps=["profiles"], trigger="admin")
    violations, pwned = _visit(page, f"{live_server.url}/admin/pipeline/pipelinerun/{run.pk}/change/")
    assert (violations, pwned, page.console_errors) == ([], [], [])

    # Swagger UI, served by the app (drf-spectacular-sidecar), renders the operations
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.evaluate("() => window.__csp") == [] and page.console_errors == []
    shot(page, "api-docs-under-csp")

    from profiles.models import Customer

    customer = Customer.objects.create(external_id="cust-x")
    token = campaign_services.unsubscribe_token(
        customer_external_id="cust-x", campaign_id=None, customer_id=customer.pk
    )
    violations, pwned = _visit(page, live_server.url + reverse("campaigns-unsubscribe", args=[token]))
    assert "Unsubscribe" in page.inner_text("h1")
    assert (violations, page.console_errors) == ([], [])


def test_the_policy_really_refuses_an_inline_script(page, live_server, boss):
    """The watch above is live: an inline script injected into a console page is refused and reported."""
    page.context.add_init_script(WATCH)
    sign_in(page, live_server, *boss)
    page.goto(f"{live_server.url}/admin/")
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.__pwned_inline = 1";
                             document.body.appendChild(s); }""")
    page.wait_for_timeout(150)
    assert page.evaluate("() => window.__pwned_inline") is None
    assert any("script-src" in v for v in page.evaluate("() => window.__csp"))
    page.console_errors.clear()


def test_celery_beats_periodic_task_form_still_reads_the_crontab_in_words(page, live_server, boss):
    """django-celery-beat's inline script moved to a static file: choosing a crontab still explains it."""
    from django_celery_beat.models import CrontabSchedule

    crontab = CrontabSchedule.objects.create(minute="0", hour="4", day_of_week="*", day_of_month="*", month_of_year="*")
    page.context.add_init_script(WATCH)
    sign_in(page, live_server, *boss)
    page.goto(f"{live_server.url}/admin/django_celery_beat/periodictask/add/")
    page.select_option("#id_crontab", str(crontab.pk))
    page.wait_for_function("() => document.querySelector('.field-crontab .help').textContent.includes('Translation:')")
    assert "4" in page.inner_text(".field-crontab .help")
    assert page.evaluate("() => window.__csp") == [] and page.console_errors == []
