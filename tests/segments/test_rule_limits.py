"""A rule's cost is bounded before it reaches the database (issue #12, finding 5).

An Analyst's preview of a rule with 199 event conditions ran 14.9 s and four of them at once
slowed a customer's recommendations to 22 s. Every event condition is a scan of the events
table, so the compiler refuses rules beyond RULE_MAX_CONDITIONS conditions,
RULE_MAX_EVENT_CONDITIONS event conditions, RULE_MAX_DEPTH levels or RULE_MAX_LIST_VALUES values
in a list, with a 400 that names the limit and the path of the condition that crosses it, in the
API and next to the rule field in the admin.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from segments.models import Segment
from segments.rules import RuleError, validate_rule

pytestmark = pytest.mark.django_db

EVENT_TYPES = ["view", "click", "add_to_cart", "purchase", "favorite"]


def attack_rule(n: int = 199) -> dict:
    """The rule of the report: 199 event conditions, each a scan of the events table."""
    return {
        "any": [
            {"event": {"type": EVENT_TYPES[i % len(EVENT_TYPES)], "min_count": 2 + i % 5, "within_days": 30 + i}}
            for i in range(n)
        ]
    }


def realistic_rule() -> dict:
    """A rule as the docs and the demo write them: a few profile, consent and event conditions."""
    return {
        "all": [
            {
                "any": [
                    {"field": "recency_days", "op": "<=", "value": 30},
                    {
                        "all": [
                            {"field": "lifecycle", "op": "in", "value": ["at-risk", "lapsed"]},
                            {"event": {"type": "purchase", "min_count": 3, "within_days": 90}},
                        ]
                    },
                ]
            },
            {"event": {"type": "view", "category": "Books", "within_days": 14}},
            {"not": {"event": {"type": "purchase", "category": "Books", "within_days": 14}}},
            {"event": {"type": ["like", "comment"], "item_kind": "post", "min_count": 5, "within_days": 30}},
            {"consent": "email"},
        ]
    }


def errors_of(rule, **kwargs) -> dict[str, str]:
    with pytest.raises(RuleError) as caught:
        validate_rule(rule, **kwargs)
    return {e["path"]: e["message"] for e in caught.value.errors}


def test_the_199_event_condition_preview_is_refused_with_400_naming_the_limit_and_the_path(analyst):
    with CaptureQueriesContext(connection) as queries:
        resp = analyst.post("/api/segments/preview/", {"rule": attack_rule()}, format="json")
    assert resp.status_code == 400
    body = resp.json()
    by_path = {e["path"]: e["message"] for e in body["errors"]}
    # The first event condition beyond the limit is named, with the limit and the setting behind it.
    assert "any[10].event" in by_path, body
    assert "at most 10 event conditions" in by_path["any[10].event"]
    assert "RULE_MAX_EVENT_CONDITIONS" in by_path["any[10].event"]
    # The rule also has more conditions than allowed: named at the first condition past 50.
    assert "any[49]" in by_path and "at most 50 conditions" in by_path["any[49]"]
    assert "error" in body["detail"]
    # Refused before any scan of the events table.
    assert not [q for q in queries.captured_queries if "profiles_event" in q["sql"]]


def test_a_realistic_rule_is_well_within_the_limits_and_previews(analyst):
    resp = analyst.post("/api/segments/preview/", {"rule": realistic_rule()}, format="json")
    assert resp.status_code == 200, resp.json()
    assert resp.json()["size"] == 0


def test_exactly_at_each_limit_is_allowed_one_past_is_refused():
    ten = {"all": [{"event": {"type": "view", "within_days": d}} for d in range(1, 11)]}
    validate_rule(ten)
    eleven = {"all": [*ten["all"], {"not": {"event": {"type": "purchase"}}}]}
    errors = errors_of(eleven)
    assert list(errors) == ["all[10].not.event"] and "at most 10 event conditions" in errors["all[10].not.event"]

    fifty = {"any": [{"consent": "email"}] * 49}  # 49 leaves + the `any` = 50 conditions
    validate_rule(fifty)
    errors = errors_of({"any": [{"consent": "email"}] * 50})
    assert list(errors) == ["any[49]"] and "51 conditions" in errors["any[49]"] and "at most 50" in errors["any[49]"]


def test_depth_and_list_limits_name_the_path():
    deep = {"consent": "email"}
    for _ in range(12):
        deep = {"not": deep}
    errors = errors_of(deep)
    path = ".".join(["not"] * 10)
    assert list(errors) == [path] and "deeper than 10 levels" in errors[path] and "RULE_MAX_DEPTH" in errors[path]

    long_list = {"field": "top_category", "op": "in", "value": [f"cat {i}" for i in range(201)]}
    errors = errors_of({"all": [{"consent": "email"}, long_list]})
    assert "at most 200 values" in errors["all[1].value"] and "RULE_MAX_LIST_VALUES" in errors["all[1].value"]
    many_types = {"event": {"type": ["view"] * 201}}
    assert "at most 200 values" in errors_of(many_types)["event.type"]


def test_the_limits_are_settings(settings):
    settings.RULE_MAX_EVENT_CONDITIONS = 2
    settings.RULE_MAX_CONDITIONS = 4
    rule = {"all": [{"event": {"type": "view"}}, {"event": {"type": "click"}}, {"event": {"type": "purchase"}}]}
    errors = errors_of(rule)
    assert list(errors) == ["all[2].event"] and "at most 2 event conditions" in errors["all[2].event"]
    errors = errors_of({"all": [{"consent": "email"}] * 4})
    assert "at most 4 conditions" in errors["all[3]"]
    settings.RULE_MAX_EVENT_CONDITIONS = 20
    validate_rule(rule)


def test_a_hostile_size_is_counted_without_walking_it_all():
    # 200,000 conditions: refused quickly, the message says "over" rather than counting them all.
    errors = errors_of({"any": [{"consent": "email"}] * 200_000})
    assert "over 500 conditions" in errors["any[49]"]


def test_the_admin_form_refuses_it_next_to_the_rule_field(admin_client):
    import json

    resp = admin_client.post(
        "/admin/segments/segment/add/",
        {
            "name": "Everything anyone did",
            "description": "",
            "kind": "rule",
            "active": "on",
            "rule": json.dumps(attack_rule()),
        },
    )
    assert resp.status_code == 200
    form = resp.context["adminform"].form
    rule_errors = form.errors["rule"]
    assert any(e.startswith("any[10].event: ") and "at most 10 event conditions" in e for e in rule_errors), rule_errors
    assert not Segment.objects.filter(name="Everything anyone did").exists()
    html = resp.content.decode()
    assert "any[10].event" in html and "RULE_MAX_EVENT_CONDITIONS" in html


def test_a_saved_rule_over_the_limits_keeps_its_members_and_is_reported_by_the_pipeline():
    """A rule saved before the limits (or under higher ones) is not run: the pipeline reports it."""
    from segments.services import rule_segments_refresh

    seg = Segment.objects.create(name="Legacy", kind="rule", rule=attack_rule(12))
    out = rule_segments_refresh()
    assert "at most 10 event conditions" in out["errors"]["Legacy"]
    seg.refresh_from_db()
    assert seg.refreshed_at is None
