"""An operator builds predictive segments in the console (issue #16): starts from a ready-made one,
adds an affinity condition and a top-N % condition with the builder, watches the audience, sees a bad
value named next to its condition, saves, and aims the result the way any segment is aimed."""

import json

import pytest

from segments.models import Membership, Segment
from segments.rules import rule_audience_size
from tests.browser.conftest import shot, sign_in
from tests.browser.test_rule_builder import shop  # noqa: F401  (the fixture: 40 customers with profiles)
from tests.factories import predictions_set

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

GARDEN = {"affinity": {"category": "Garden", "op": ">=", "value": 0.2}}


def _audience_is(page, n):
    page.wait_for_function(
        "n => document.getElementById('rule-preview-size').textContent === n.toLocaleString() + ' customers'", arg=n
    )


def _row(path):
    return f".rule-builder [data-rule-path='{path}']"


@pytest.fixture
def predicted(shop):  # noqa: F811
    predictions_set(seed=4)


def test_operator_starts_from_a_predictive_template_adds_affinity_and_saves(
    page, live_server, predicted, operator_login
):
    top = {"top": {"field": "predicted_value", "percent": 10}}
    wider = {"all": [{"top": {"field": "predicted_value", "percent": 50}}, GARDEN]}
    assert 0 < rule_audience_size(wider) < rule_audience_size(wider["all"][0])  # the affinity narrows it
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/")
    page.click("text=Add predictive segment")
    page.click("#predictive-templates a:has-text('High predicted value')")
    assert page.input_value("#id_name") == "High predicted value"
    _audience_is(page, rule_audience_size(top))
    assert "top 10% by predicted spend" in page.inner_text("#rule-preview-description")
    assert page.input_value(f"{_row('')} [data-key='top.percent']") == "10"

    # the top half by predicted spend, among those likely enough to buy garden things
    page.fill(f"{_row('')} [data-key='top.percent']", "50")
    _audience_is(page, rule_audience_size(wider["all"][0]))
    page.click(".rb-tree > .rb-group > .rb-add .rb-add-condition")
    page.select_option(f"{_row('all[1]')} select.rb-what", "affinity")
    page.fill(f"{_row('all[1]')} [data-key='affinity.category']", "Garden")
    page.fill(f"{_row('all[1]')} [data-key='affinity.value']", "40")  # 40 meant 40 %: named next to it
    error = page.wait_for_selector(f"{_row('all[1]')} > .rb-error")
    assert "probability from 0 to 1" in error.inner_text()
    assert page.get_attribute(f"{_row('all[1]')} [data-key='affinity.value']", "aria-invalid") == "true"
    assert page.inner_text("#rule-preview-size") == "–"
    page.fill(f"{_row('all[1]')} [data-key='affinity.value']", "0.2")
    _audience_is(page, rule_audience_size(wider))
    assert "top 50% by predicted spend AND affinity for Garden at least 20%" in page.inner_text(
        "#rule-preview-description"
    )
    shot(page, "rule-builder-predictive")

    page.click("#rule-json-toggle")  # the JSON view mirrors the builder
    assert json.loads(page.input_value("#id_rule")) == wider
    page.fill("#id_name", "Big spenders into gardening")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    segment = Segment.objects.get(name="Big spenders into gardening")
    assert segment.rule == wider
    assert Membership.objects.filter(segment=segment).count() == segment.size == rule_audience_size(wider)

    # reopened, the builder shows the predictive conditions as built
    page.goto(f"{live_server.url}/admin/segments/segment/{segment.pk}/change/")
    _audience_is(page, segment.size)
    assert page.eval_on_selector_all(".rb-what", "els => els.map(e => e.value)") == ["top", "affinity"]
    assert page.input_value(f"{_row('all[1]')} [data-key='affinity.category']") == "Garden"
    assert page.console_errors == [] or all("/api/segments/preview/" in e for e in page.console_errors)


def test_the_category_template_is_picked_from_the_shops_categories(page, live_server, predicted, operator_login):
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/segments/segment/add/")
    page.select_option("#predictive-category", "Books")
    with page.expect_navigation():
        page.click("#predictive-templates form button")
    assert page.input_value("#id_name") == "Likely to buy Books"
    rule = {"affinity": {"category": "Books", "op": ">=", "value": 0.4}}
    _audience_is(page, rule_audience_size(rule))
    assert page.eval_on_selector_all(".rb-what", "els => els.map(e => e.value)") == ["affinity"]
    page.select_option(f"{_row('')} [data-key='affinity.op']", "between")
    page.fill(f"{_row('')} [data-key='affinity.value'] >> nth=1", "0.8")
    rule = {"affinity": {"category": "Books", "op": "between", "value": [0.4, 0.8]}}
    _audience_is(page, rule_audience_size(rule))
    page.click("#rule-json-toggle")
    assert json.loads(page.input_value("#id_rule")) == rule
