"""Message variants in a real browser (issue #17): the operator defines two variants in the campaign
form's folded inline, sees each rendered in the preview, launches, and reads the report's Variants part."""

import pytest

from campaigns.models import Campaign, CampaignVariant, Delivery
from tests.browser.conftest import shot, sign_in
from tests.factories import CampaignFactory, CustomerRow, SegmentFactory, ingest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def _console_errors(page):
    return [e for e in page.console_errors if "favicon" not in e]


def _add_variant(page, index: int, label: str, title: str, body: str, share: str) -> None:
    page.click("#variants-group .add-row a")
    page.fill(f"#id_variants-{index}-label", label)
    page.fill(f"#id_variants-{index}-share", share)
    page.fill(f"#id_variants-{index}-title_template", title)
    page.fill(f"#id_variants-{index}-body_template", body)


def test_two_variants_defined_in_the_form_are_sent_and_reported(page, live_server, operator_login):
    ingest(customers=[CustomerRow(external_id=f"bv{i}") for i in range(200)])
    draft = CampaignFactory(name="Spring variants", segments=[SegmentFactory(name="Everyone in the app")])
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{draft.pk}/change/")
    # the variants are folded: a draft's page stays short (two screens of the 1,000 px viewport)
    assert not page.is_visible("#variants-group .add-row a")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= 2 * 1000, height
    page.click("#variants-group summary")
    _add_variant(page, 0, "A", "", "", "50")
    _add_variant(page, 1, "B", "Spring is here, {{ customer.first_name }}", "Our B offer", "50")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    assert list(CampaignVariant.objects.filter(campaign=draft).values_list("label", flat=True)) == ["A", "B"]
    # the preview shows the message of each variant for the sample member
    assert page.inner_text(".variant-preview[data-variant=A] strong") == "Hi Customer bv0"
    assert page.inner_text(".variant-preview[data-variant=B] strong") == "Spring is here, Customer"

    page.click("a#launch-link")
    page.wait_for_selector("#launch-audience")
    assert page.inner_text("#launch-audience .launch-variants") == "split among the variants: A 50%, B 50%"
    page.click("input[value='Yes, launch']")
    page.wait_for_selector("#report-variants")
    assert Campaign.objects.get(pk=draft.pk).status in ("running", "completed")
    sent = Delivery.objects.filter(campaign=draft, status="sent")
    assert sent.filter(variant__label="A").exists() and sent.filter(variant__label="B").exists()
    assert page.inner_text("#variants-verdict") == "No difference yet: keep the test running or stop it."
    rows = page.locator("#variants-table tbody tr")
    assert rows.count() == 2
    assert page.inner_text("#variants-table tr[data-variant=B] td.sent") == str(sent.filter(variant__label="B").count())
    assert "The split fits the shares" in page.inner_text("#report-variants")
    shot(page, "campaign-variants")
    assert _console_errors(page) == []
