"""A campaign's report in a real browser (issue #14): the operator reads it in words, the uplift is drawn
as one error bar (a point and its whisker), and launching still asks first."""

import pytest

from campaigns.models import Campaign
from tests.browser.conftest import shot, sign_in
from tests.campaigns.reporting import reported_campaign
from tests.factories import MARKETING_OPERATOR, CampaignFactory, OperatorFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

PASSWORD = "a-good-passphrase"


@pytest.fixture
def marketer(db):
    return OperatorFactory(username="anna", role=MARKETING_OPERATOR, password=PASSWORD)


def _console_errors(page):
    return [e for e in page.console_errors if "favicon" not in e]


def test_the_report_reads_in_words_and_draws_the_uplift_as_one_error_bar(page, live_server, marketer):
    campaign = reported_campaign(prefix="br", p_treated=0.3, p_control=0.05, seed=1, by=marketer)
    sign_in(page, live_server, marketer.username, PASSWORD)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    page.wait_for_selector("#campaign-report")
    assert page.inner_text("#report-significance").startswith("significant (p")
    assert "conversions within 7 days of the message" in page.inner_text("#report-conversions")
    assert "% of recipients, against " in page.inner_text("#report-conversions")
    assert "no consent for in-app messages" in page.inner_text("#report-suppressed")
    assert page.inner_text("#report-funnel tr[data-step=sent] td.of-sent") == "100.0%"
    assert "Launched by anna · " in page.inner_text("#status-history")

    # the error bar: one point (the estimate) and a whisker from the interval's low to its high end
    page.wait_for_selector("#uplift-chart[data-whisker]")
    drawn = page.evaluate("""() => {
        const ch = Chart.getChart("uplift-chart"), ds = ch.data.datasets;
        const [lo, hi] = ch.canvas.dataset.whisker.split(",").map(Number);
        const point = ch.getDatasetMeta(0).data[0].x;
        const px = ch.ctx.getImageData(0, 0, ch.width, ch.height).data; let n = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
        return {type: ch.config.type, datasets: ds.length, points: ds[0].data.length, lo, hi, point, painted: n};
    }""")
    assert drawn["type"] == "scatter" and drawn["datasets"] == 1 and drawn["points"] == 1, drawn
    assert drawn["lo"] < drawn["point"] < drawn["hi"] and drawn["painted"] > 500, drawn
    funnel = page.evaluate("() => Chart.getChart('funnel-chart').data.labels")
    assert funnel == ["Sent", "Delivered", "Opened", "Clicked"]
    shot(page, "campaign-report")
    assert _console_errors(page) == []


def test_a_campaign_without_effect_reads_not_significant(page, live_server, marketer):
    campaign = reported_campaign(prefix="bf", p_treated=0.1, p_control=0.1, seed=8, by=marketer)
    sign_in(page, live_server, marketer.username, PASSWORD)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    page.wait_for_selector("#uplift-chart[data-whisker]")
    assert page.inner_text("#report-significance").startswith("not significant (p = ")
    assert _console_errors(page) == []


def test_launch_asks_first_then_the_report_says_no_conversions_yet(page, live_server, marketer):
    from tests.factories import CustomerRow, SegmentFactory, ingest

    # enough customers that the control share (drawn by hashing the ids) is never empty
    ingest(customers=[CustomerRow(external_id=f"bl{i}") for i in range(200)])
    draft = CampaignFactory(name="Spring hello", segments=[SegmentFactory(name="Everyone in the app")])
    sign_in(page, live_server, marketer.username, PASSWORD)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{draft.pk}/change/")
    # the preview's Render asks for another sample member; it does not submit (or save) the campaign form
    page.fill("#message-preview input[name=sample]", "bl7")
    page.click("#message-preview button:has-text('Render')")
    page.wait_for_url("**/change/?sample=bl7")
    assert page.inner_text("#message-preview h2").lower() == "message preview for customer bl7"
    assert "Hi Customer bl7" in page.inner_text("#message-preview")
    page.click("a#launch-link")
    page.wait_for_selector("#launch-audience")
    assert page.inner_text("#launch-audience td.members") == "200"
    assert Campaign.objects.get(pk=draft.pk).status == "draft"
    page.click("input[value='Yes, launch']")
    page.wait_for_selector("#campaign-report")
    assert Campaign.objects.get(pk=draft.pk).status in ("running", "completed")
    assert page.inner_text("#report-significance") == "No conversions yet — uplift cannot be measured"
    assert "Launched by anna · " in page.inner_text("#status-history")
    assert _console_errors(page) == []
