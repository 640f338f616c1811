"""What an operator does in a real browser: log in, read the dashboard, write a rule segment and see
its audience, start a recomputation, open a customer's 360 page."""

from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone

from pipeline import services as pipeline
from pipeline.models import PipelineRun
from profiles import services
from profiles.models import Customer
from segments.models import Segment
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


@pytest.fixture
def shop(db):
    now = timezone.now()
    rows = []
    for c in range(40):
        for i in range(1 + c % 4):
            purchase = (c + i) % 2 == 0
            rows.append(
                {
                    "external_id": f"b{c}-{i}",
                    "customer": f"cust{c:02d}",
                    "item": f"sku{(c + i) % 9}",
                    "type": "purchase" if purchase else "view",
                    "amount": 15.0 * (1 + c % 5) if purchase else None,
                    "occurred_at": now - timedelta(days=c * 4 + i),
                    "context": {"order_id": f"o{c}-{i}"} if purchase else {},
                }
            )
    services.events_ingest(rows=pd.DataFrame(rows))
    services.items_upsert(
        rows=pd.DataFrame(
            [
                {
                    "external_id": f"sku{i}",
                    "title": f"Lamp model {i}",
                    "category": ["Home", "Garden", "Books"][i % 3],
                    "price": 15 + i,
                }
                for i in range(9)
            ]
        )
    )
    services.customers_upsert(
        rows=pd.DataFrame(
            [{"external_id": f"cust{c:02d}", "name": f"Customer {c}", "consent_email": c % 3 != 0} for c in range(40)]
        )
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments"]))


def test_dashboard_renders_its_charts(page, live_server, shop, operator_login):
    sign_in(page, live_server, *operator_login)
    page.click("text=Open the dashboard")
    page.wait_for_selector("#chart-segments")
    page.wait_for_function("() => window.Chart && Object.keys(Chart.instances).length >= 3")
    assert page.inner_text("#fig-customers") == "40"
    # each chart drew something: its canvas is not blank
    drawn = page.evaluate("""() => Object.values(Chart.instances).map(ch => {
        const d = ch.ctx.getImageData(0, 0, ch.width, ch.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })""")
    assert all(n > 500 for n in drawn), drawn
    shot(page, "dashboard")
    assert page.console_errors == []


def test_operator_writes_a_rule_segment_and_sees_its_audience_before_saving(page, live_server, shop, operator_login):
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.fill("#id_name", "Emailable buyers")
    expected = Customer.objects.filter(consent_email=True, events__type="purchase").distinct().count()
    page.click("#rule-json-toggle")  # the JSON is the rule builder's advanced view (tests/browser/test_rule_builder.py)
    page.fill("#id_rule", '{"all": [{"consent": "email"}, {"event": {"type": "purchase", "within_days": 365}}]}')
    page.wait_for_function(f"() => document.getElementById('rule-preview-size').textContent === '{expected} customers'")
    assert "consents to email" in page.inner_text("#rule-preview-description")
    # a mistake is named while typing
    page.fill("#id_rule", '{"all": [{"consent": "fax"}]}')
    page.wait_for_function("() => document.querySelectorAll('#rule-preview-errors li').length > 0")
    assert "all[0].consent" in page.inner_text("#rule-preview-errors")
    page.fill("#id_rule", '{"all": [{"consent": "email"}, {"event": {"type": "purchase", "within_days": 365}}]}')
    shot(page, "rule-segment-preview")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    assert f"now has {expected} members" in page.inner_text(".messagelist")
    assert Segment.objects.get(name="Emailable buyers").size == expected
    # the only failed request is the preview of the rule we got wrong on purpose (a 400)
    assert all("/api/segments/preview/" in e and "400" in e for e in page.console_errors), page.console_errors


def test_operator_starts_a_recomputation_and_follows_it(page, live_server, shop, operator_login):
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/")
    page.click("text=Start a recomputation")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    run = PipelineRun.objects.order_by("-pk").first()
    assert run.trigger == "admin" and run.status == "succeeded"
    assert page.inner_text("#run-status") == "Succeeded"
    shot(page, "pipeline-run")


def test_customer_360_page(page, live_server, shop, operator_login):
    sign_in(page, live_server, *operator_login)
    customer = Customer.objects.get(external_id="cust07")
    page.goto(f"{live_server.url}/admin/profiles/customer/{customer.pk}/change/")
    text = page.inner_text("#content-main").lower()  # the admin's headings are upper-cased by CSS
    assert all(h in text for h in ("timeline", "interests", "suggestions", "segments", "consent"))
    assert customer.profile.get_lifecycle_display().lower() in text
    shot(page, "customer-360")
    assert page.console_errors == []


def test_operator_creates_a_campaign_sees_its_audience_and_launches_it(page, live_server, shop, operator_login):
    from campaigns.models import Campaign, Delivery

    rule = Segment.objects.create(name="Everyone with email", kind="rule", rule={"consent": "email"})
    from segments.rules import refresh_rule_memberships

    members = refresh_rule_memberships(rule)
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/add/")
    page.fill("#id_name", "Spring hello")
    page.select_option("#id_channel", "in_app")
    page.dblclick(f"#id_segments_from option[value='{rule.pk}']")  # the two-list picker: move it across
    page.wait_for_function("() => /members/.test(document.getElementById('audience-size').textContent)")
    assert page.inner_text("#audience-size").startswith(f"{members} members")
    page.fill("#id_title_template", "Hello {{ customer.name }}")
    page.fill(
        "#id_body_template", "We picked these for you: {% for item in recommendations %}{{ item.title }} {% endfor %}"
    )
    # the send time row shows only for a schedule that uses it
    assert not page.is_visible("#id_send_at_0")
    page.select_option("#id_schedule", "at")
    assert page.is_visible("#id_send_at_0")
    page.select_option("#id_schedule", "now")
    assert not page.is_visible("#id_send_at_0")
    page.locator("summary", has_text="Advanced: sending window").click()  # folded: rarely changed
    page.fill("#id_window_start", "00:00")
    page.fill("#id_window_end", "23:59")
    shot(page, "campaign-form")
    page.click("input[name=_continue]")
    page.wait_for_selector("#message-preview")
    assert "Hello Customer" in page.inner_text("#message-preview")  # rendered for a sample member
    page.click("a#launch-link")  # launching asks first, with who will get it
    page.wait_for_selector("#launch-audience")
    assert page.inner_text("#launch-audience td.members") == str(members)
    assert Campaign.objects.get(name="Spring hello").status == "draft"
    shot(page, "campaign-launch-confirmation")
    page.click("input[value='Yes, launch']")
    page.wait_for_selector(".messagelist")
    campaign = Campaign.objects.get(name="Spring hello")
    assert campaign.status in ("running", "completed")
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert deliveries.count() == members
    sent = deliveries.filter(status="sent")
    assert sent.count() + deliveries.filter(is_control=True).count() == members
    assert all(d.title.startswith("Hello Customer") for d in sent)
    shot(page, "campaign-launched")
    assert all("favicon" in e for e in page.console_errors), page.console_errors


def test_administrator_reads_in_the_audit_log_what_an_operator_did_and_a_guessed_password_locks_the_account(
    page, live_server, shop, operator_login, django_user_model, browser
):
    from django.test import override_settings

    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.fill("#id_name", "Big spenders")
    page.click("#rule-json-toggle")
    page.fill("#id_rule", '{"field": "monetary", "op": ">=", "value": 30}')
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    page.context.clear_cookies()

    django_user_model.objects.create_superuser("chief", "chief@example.com", "chief-passphrase-1")
    sign_in(page, live_server, "chief", "chief-passphrase-1")
    page.goto(f"{live_server.url}/admin/accounts/auditentry/")
    rows = page.inner_text("#result_list")
    assert "marketer" in rows and "Segment created" in rows and "Big spenders" in rows
    page.click("#changelist-filter >> text=Segment created")  # the filter on the right
    page.wait_for_selector("#changelist-filter li.selected >> text=Segment created")
    page.click("#result_list tbody tr:first-child th a")
    assert '"monetary"' in page.inner_text(".field-changes_text")
    assert page.query_selector("input[name=_save]") is None  # read-only
    shot(page, "audit-log-entry")

    # five wrong guesses lock the account: even the right password is then refused, and the page says why
    context = browser.new_context()
    guest = context.new_page()
    with override_settings(LOGIN_FAILURE_LIMIT=5):
        for _ in range(5):
            guest.goto(f"{live_server.url}/admin/login/")
            guest.fill("#id_username", "marketer")
            guest.fill("#id_password", "guess")
            guest.click("input[type=submit]")
        guest.fill("#id_username", "marketer")
        guest.fill("#id_password", operator_login[1])
        guest.click("input[type=submit]")
        guest.wait_for_selector(".errornote")
        assert "Too many failed sign-in attempts" in guest.inner_text(".errornote")
    shot(guest, "sign-in-locked")
    context.close()
