"""An operator builds a rule segment with the rule builder (issue #14): fields, operators and values
chosen from lists in groups of all / any, the audience counted as the rule changes, the JSON view in
step both ways, an error shown next to the condition it belongs to, and the segment reopened as built."""

import json
from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone

from pipeline import services as pipeline
from profiles import services
from segments.models import Segment
from segments.rules import rule_audience_size
from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

LIFECYCLE_ACTIVE = {"field": "lifecycle", "op": "=", "value": "active"}
BUILT = {
    "all": [
        LIFECYCLE_ACTIVE,
        {
            "any": [
                {"field": "monetary", "op": ">=", "value": 100},
                {"event": {"type": "purchase", "within_days": 30, "category": "Garden"}},
            ]
        },
    ]
}


@pytest.fixture
def shop(db):
    """40 customers buying lamps, books and garden tools over five months, with computed profiles."""
    now = timezone.now()
    rows = []
    for c in range(40):
        for i in range(1 + c % 4):
            purchase = (c + i) % 2 == 0
            rows.append(
                {
                    "external_id": f"e{c}-{i}",
                    "customer": f"cust{c:02d}",
                    "item": f"sku{(c + i) % 9}",
                    "type": "purchase" if purchase else "view",
                    "amount": 20.0 * (1 + c % 5) if purchase else None,
                    "occurred_at": now - timedelta(days=c * 4 + i),
                    "context": {"order_id": f"o{c}-{i}"} if purchase else {},
                }
            )
    services.events_ingest(rows=pd.DataFrame(rows))
    services.items_upsert(
        rows=pd.DataFrame(
            [
                {"external_id": f"sku{i}", "title": f"Thing {i}", "category": ["Home", "Garden", "Books"][i % 3]}
                for i in range(9)
            ]
        )
    )
    services.customers_upsert(
        rows=pd.DataFrame([{"external_id": f"cust{c:02d}", "name": f"Customer {c}"} for c in range(40)])
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles"]))


def _audience_is(page, n):
    page.wait_for_function(
        "n => document.getElementById('rule-preview-size').textContent === n.toLocaleString() + ' customers'", arg=n
    )


def _row(path):
    return f".rule-builder [data-rule-path='{path}']"


def test_operator_builds_a_rule_with_the_builder_saves_it_and_reopens_it(page, live_server, shop, operator_login):
    only_active, built = rule_audience_size({"all": [LIFECYCLE_ACTIVE]}), rule_audience_size(BUILT)
    assert 0 < built < only_active  # the data tells the two rules apart
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.fill("#id_name", "Active big or garden buyers")
    assert not page.is_visible("#id_rule")  # the JSON is the advanced view, folded away

    # the example rule: keep its first condition (lifecycle), make it "active", drop the others
    page.select_option(f"{_row('all[0]')} select[data-key=value]", "active")
    page.click(f"{_row('all[2]')} > .rb-remove")
    page.click(f"{_row('all[1]')} > .rb-remove")
    _audience_is(page, only_active)
    assert "lifecycle = active" in page.inner_text("#rule-preview-description")

    # a group of "any": spend at least 100, or bought in Garden in the last 30 days
    page.click(".rb-tree > .rb-group > .rb-add .rb-add-group")
    page.select_option(f"{_row('all[1]')} select.rb-combinator", "any")
    page.select_option(f"{_row('all[1].any[0]')} select.rb-what", "field:monetary")
    page.select_option(f"{_row('all[1].any[0]')} select.rb-op", ">=")
    page.fill(f"{_row('all[1].any[0]')} [data-key=value]", "100")
    page.click(f"{_row('all[1]')} > .rb-add .rb-add-condition")
    page.select_option(f"{_row('all[1].any[1]')} select.rb-what", "event")
    page.select_option(f"{_row('all[1].any[1]')} [data-key='event.type']", "purchase")
    page.fill(f"{_row('all[1].any[1]')} [data-key='event.within_days']", "30")
    page.fill(f"{_row('all[1].any[1]')} [data-key='event.category']", "Garden")
    _audience_is(page, built)
    text = page.inner_text("#rule-preview-description")
    assert "lifecycle = active AND (monetary ≥ 100 OR purchased in Garden in 30 days)" in text
    shot(page, "rule-builder")

    # the JSON view mirrors the builder
    page.click("#rule-json-toggle")
    assert json.loads(page.input_value("#id_rule")) == BUILT

    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    assert f"now has {built} members" in page.inner_text(".messagelist")
    segment = Segment.objects.get(name="Active big or garden buyers")
    assert segment.rule == BUILT and segment.size == built

    # reopened, the builder shows the rule as it was built
    page.goto(f"{live_server.url}/admin/segments/segment/{segment.pk}/change/")
    _audience_is(page, built)
    assert page.eval_on_selector_all(".rb-combinator", "els => els.map(e => e.value)") == ["all", "any"]
    assert page.eval_on_selector_all(".rb-what", "els => els.map(e => e.value)") == [
        "field:lifecycle",
        "field:monetary",
        "event",
    ]
    assert page.input_value(f"{_row('all[1].any[0]')} [data-key=value]") == "100"
    assert page.input_value(f"{_row('all[1].any[1]')} [data-key='event.category']") == "Garden"
    assert page.console_errors == []


def test_a_bad_value_is_shown_next_to_its_condition_and_the_preview_is_cleared(page, live_server, shop, operator_login):
    segment = Segment.objects.create(name="Built", kind="rule", rule=BUILT)
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/{segment.pk}/change/")
    _audience_is(page, rule_audience_size(BUILT))

    page.fill(f"{_row('all[1].any[0]')} [data-key=value]", "a hundred")
    error = page.wait_for_selector(f"{_row('all[1].any[0]')} > .rb-error")
    assert "monetary is a number" in error.inner_text()
    assert page.get_attribute(f"{_row('all[1].any[0]')} [data-key=value]", "aria-invalid") == "true"
    assert page.locator(".rb-error").count() == 1  # only that condition is marked
    assert page.inner_text("#rule-preview-size") == "–"  # the previous rule's audience is gone
    assert page.inner_text("#rule-preview-description") == ""
    assert page.inner_text("#rule-preview-errors") == "1 problem in the rule, marked above."
    shot(page, "rule-error")

    # fixed, the error goes and the audience comes back
    page.fill(f"{_row('all[1].any[0]')} [data-key=value]", "100")
    _audience_is(page, rule_audience_size(BUILT))
    assert page.locator(".rb-error").count() == 0


def test_editing_the_json_redraws_the_builder_and_bad_json_keeps_it(page, live_server, shop, operator_login):
    vip = Segment.objects.create(name="<b>VIP</b> & friends", kind="rule", rule={"consent": "email"})
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.click("#rule-json-toggle")
    page.fill("#id_rule", json.dumps({"any": [{"consent": "email"}, {"not": {"segment": 999}}]}))
    page.wait_for_selector(_row("any[1]"))
    assert page.eval_on_selector_all(".rb-combinator", "els => els.map(e => e.value)") == ["any", "not"]
    assert page.input_value(f"{_row('any[0]')} [data-key=consent]") == "email"
    # the unknown segment is named next to its condition
    error = page.wait_for_selector(f"{_row('any[1].not')} > .rb-error")
    assert "no segment with id 999" in error.inner_text()

    # another segment is chosen by its name, shown as the text it is
    page.select_option(f"{_row('any[1].not')} [data-key=segment]", str(vip.pk))
    assert json.loads(page.input_value("#id_rule"))["any"][1] == {"not": {"segment": vip.pk}}
    chosen = f"{_row('any[1].not')} [data-key=segment] option:checked"
    assert page.inner_text(chosen) == "<b>VIP</b> & friends"
    assert page.locator(".rule-builder b").count() == 0

    page.fill("#id_rule", '{"all": [')  # half-typed JSON: the builder stays as it was
    page.wait_for_function("() => document.getElementById('rule-json-error').textContent.includes('Not valid JSON')")
    assert page.eval_on_selector_all(".rb-combinator", "els => els.map(e => e.value)") == ["any", "not"]
    assert page.inner_text("#rule-preview-size") == "–"

    # a single condition as the whole rule is shown under the top group and kept as it is
    page.fill("#id_rule", json.dumps({"consent": "push"}))
    page.wait_for_function("() => document.querySelector(\".rule-builder [data-key=consent]\")?.value === 'push'")
    page.select_option(".rule-builder [data-key=consent]", "email")
    assert json.loads(page.input_value("#id_rule")) == {"consent": "email"}
    assert all("/api/segments/preview/" in e and "400" in e for e in page.console_errors), page.console_errors
