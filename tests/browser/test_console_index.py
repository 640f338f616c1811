"""Issue #14 in a real browser: the admin index and its sidebar grouped by the work, the plumbing for
administrators only, and the dashboard's recent campaigns with their uplift in words."""

import pytest
from django.contrib.auth.models import Group

from campaigns import services as campaign_services
from campaigns.stats import two_proportion
from common import display
from tests.browser.conftest import shot, sign_in
from tests.factories import CampaignFactory
from tests.test_dashboard import _audience, _converted

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WORK = ["Customers", "Segments", "Recommendations", "Experiments", "Campaigns", "Pipeline"]


def _captions(page, where: str) -> list[str]:
    return [c.strip() for c in page.locator(f"{where} caption").all_inner_texts()]


def test_an_operator_finds_the_work_in_order_and_no_plumbing(page, live_server, django_user_model):
    user = django_user_model.objects.create_user("marketer", "m@example.com", "a-good-passphrase", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing operator"))
    sign_in(page, live_server, "marketer", "a-good-passphrase")

    assert [c.lower() for c in _captions(page, "#content-main")] == [w.lower() for w in WORK]
    body = page.inner_text("body")
    for plumbing in ("Periodic tasks", "Crontabs", "Solar events", "Authentication", "Schedules"):
        assert plumbing.lower() not in body.lower(), plumbing
    assert "Marketing console" in body

    page.click("#content-main >> text=Campaigns >> nth=1")  # the model, under its group's caption
    page.wait_for_url("**/admin/campaigns/campaign/")
    assert [c.lower() for c in _captions(page, "#nav-sidebar")] == [w.lower() for w in WORK]
    assert page.console_errors == []


def test_an_administrator_sees_access_and_the_schedules_last(page, live_server, django_user_model):
    django_user_model.objects.create_superuser("chief", "chief@example.com", "chief-passphrase-1")
    sign_in(page, live_server, "chief", "chief-passphrase-1")
    assert [c.lower() for c in _captions(page, "#content-main")] == [
        w.lower() for w in [*WORK, "Access", "Schedules (administrators)"]
    ]
    shot(page, "console-index-administrator")
    page.click("#content-main >> text=Users")
    page.wait_for_url("**/admin/auth/user/")
    assert "Access" in page.inner_text(".breadcrumbs") and "Authentication" not in page.inner_text("body")


def test_the_dashboard_lists_recent_campaigns_with_their_uplift_in_words(page, live_server, django_user_model):
    audience = _audience("br", 300)
    boots = CampaignFactory(name="Winter boots", segments=[audience], control_percent=50)
    campaign_services.campaign_launch(campaign=boots)  # the sends run as the launch commits (eager)
    counts = _converted(boots, treated=60, control=6)
    campaign_services.campaigns_tick()
    test = two_proportion(*counts)
    user = django_user_model.objects.create_user("marketer", "m@example.com", "a-good-passphrase", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing operator"))
    sign_in(page, live_server, "marketer", "a-good-passphrase")

    page.click("text=Open the dashboard")
    page.wait_for_selector("#dash-campaigns table")
    row = page.locator("#dash-campaigns tbody tr").first.inner_text()
    assert "Winter boots" in row and "In-app inbox" in row and "Completed" in row
    assert f"{display.percent(test['treated_rate'])} / {display.percent(test['control_rate'])}" in row
    assert display.points(test["uplift_abs"]) in row and "95% CI" in row
    assert f"significant ({display.p_value(test['p_value'])})" in row
    assert "Suggestions" not in row
    shot(page, "console-dashboard-recent-campaigns")
    assert page.console_errors == []

    page.click("#dash-campaigns >> text=Winter boots")
    page.wait_for_url(f"**/admin/campaigns/campaign/{boots.pk}/change/")
