"""The rule builder's side on the server (issue #14): the grammar handed to the page covers every
field, operator and value the validator accepts, the form saves a rule in the builder's JSON shape,
and the segment pages speak in operator words."""

import json
from datetime import timedelta

import pandas as pd
import pytest
from django.test import override_settings
from django.utils import timezone

from pipeline import services as pipeline
from profiles import services
from profiles.models import CONSENT_FIELDS
from segments import rules
from segments.models import ClusteringRun, Segment, SegmentKind, SegmentSize
from segments.rules import RuleError, rule_audience_size, rule_grammar, validate_rule
from tests.factories import EventRow, SegmentFactory, ingest

pytestmark = pytest.mark.django_db

SAMPLE = {"number": 3, "choice": None, "text": "Garden", "rfm code": "545"}
SHAPED = {"startswith": "5", "matches": "5*5"}


def _value(field: dict, shape: str):
    one = field["choices"][0]["value"] if field["kind"] == "choice" else SAMPLE[field["kind"]]
    if "max" in field:  # a probability: the sample within its bounds
        one = field["max"]
    return {"one": one, "list": [one], "pair": [one, one]}.get(shape, SHAPED.get(shape))


def test_the_grammar_offers_every_field_and_operator_the_validator_accepts():
    grammar = rule_grammar()
    offered = {f["name"]: f for f in grammar["fields"]}
    assert list(offered) == list(rules.PROFILE_FIELDS)
    for name, spec in rules.PROFILE_FIELDS.items():
        assert offered[name]["kind"] == spec.kind
        assert offered[name]["ops"] == list(spec.ops)
        assert [c["value"] for c in offered[name]["choices"]] == list(spec.choices)
        assert offered[name]["label"] and offered[name]["label"] != name  # a word, not a column
    every_op = {op for spec in rules.PROFILE_FIELDS.values() for op in spec.ops}
    assert set(grammar["operators"]) == every_op
    assert grammar["combinators"] == ["all", "any", "not"] and grammar["leaves"] == list(rules.LEAF_KEYS)
    assert [t["value"] for t in grammar["event"]["types"]] == list(rules.EVENT_TYPES)
    assert [k["value"] for k in grammar["event"]["item_kinds"]] == list(rules.ITEM_KINDS)
    assert [p["key"] for p in grammar["event"]["params"]] == list(rules.EVENT_KEYS)
    assert [c["value"] for c in grammar["consent"]] == list(CONSENT_FIELDS)
    json.dumps(grammar)  # handed to the page as a json_script island


def test_every_field_with_every_operator_in_the_shape_the_grammar_gives_is_a_valid_rule():
    grammar = rule_grammar()
    for field in grammar["fields"]:
        for op in field["ops"]:
            shape = grammar["operators"][op]["value"]
            node = {"field": field["name"], "op": op}
            if shape != "none":
                node["value"] = _value(field, shape)
            validate_rule(node)  # raises if the grammar described a shape the validator refuses
            if shape == "none":
                with pytest.raises(RuleError):
                    validate_rule({**node, "value": 1})


def test_event_parameters_are_described_with_their_bounds():
    params = {p["key"]: p for p in rule_grammar()["event"]["params"]}
    validate_rule({"event": {"type": ["view", "purchase"], "within_days": params["within_days"]["max"]}})
    with pytest.raises(RuleError):
        validate_rule({"event": {"type": "view", "within_days": params["within_days"]["min"] - 1}})
    validate_rule({"event": {"type": "view", "max_count": params["max_count"]["min"]}})
    assert params["item_kind"]["choices"] == "item_kinds" and params["category"]["suggest"] == "categories"


@override_settings(RULE_MAX_CONDITIONS=7, RULE_MAX_EVENT_CONDITIONS=2, RULE_MAX_DEPTH=4, RULE_MAX_LIST_VALUES=9)
def test_the_limits_handed_to_the_builder_are_the_settings_in_force():
    assert rule_grammar()["limits"] == {"conditions": 7, "event_conditions": 2, "depth": 4, "list_values": 9}


@pytest.fixture
def garden_shop(db):
    now = timezone.now()
    ingest(
        customers=[{"external_id": f"c{i}", "name": f"Gardener {i}", "consent_email": i % 2 == 0} for i in range(6)],
        events=[
            EventRow(external_id=f"p{i}", customer=f"c{i}", item=f"rake{i % 2}", purchase=True, amount=40.0 * (i + 1))
            for i in range(6)
        ]
        + [EventRow(external_id="v9", customer="c5", item="lamp", occurred_at=now - timedelta(days=3))],
    )
    services.items_upsert(
        rows=pd.DataFrame(
            [
                {"external_id": "rake0", "category": "Garden"},
                {"external_id": "rake1", "category": "Garden"},
                {"external_id": "lamp", "category": "Home <b>& lights</b>"},
            ]
        )
    )
    pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles"]))


def test_the_add_page_hands_the_grammar_and_the_shops_categories_and_segments_to_the_builder(garden_shop, admin_client):
    SegmentFactory(name="<script>alert(1)</script> fans", rule={"consent": "email"})
    page = admin_client.get("/admin/segments/segment/add/").content.decode()
    for island in ("rule-grammar", "rule-choices", "segment-form-config"):
        assert f'id="{island}"' in page
    start = page.index('id="rule-choices"')
    island = page[page.index(">", start) + 1 : page.index("</script>", start)]
    choices = json.loads(island)
    assert choices["categories"] == ["Garden", "Home <b>& lights</b>"]
    assert [s["name"] for s in choices["segments"]] == ["<script>alert(1)</script> fans"]
    assert "<script>alert(1)" not in page and "<b>& lights" not in page  # escaped in the islands
    assert "marketing/js/rule-builder.js" in page
    # a rule segment's page does not carry the clustering's words
    form = page[page.index('id="content-main"') :]
    assert "clustering" not in form.lower() and "no later run matched" not in form


def test_the_form_saves_a_rule_in_the_builders_shape(garden_shop, admin_client):
    built = {
        "all": [
            {"consent": "email"},
            {
                "any": [
                    {"field": "monetary", "op": ">=", "value": 100},
                    {"event": {"type": "purchase", "within_days": 30, "category": "Garden"}},
                ]
            },
            {"not": {"field": "lifecycle", "op": "in", "value": ["lapsed", "at-risk"]}},
        ]
    }
    resp = admin_client.post(
        "/admin/segments/segment/add/",
        {"name": "Emailable gardeners", "description": "", "active": "on", "rule": json.dumps(built, indent=2)},
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    segment = Segment.objects.get(name="Emailable gardeners")
    assert segment.kind == SegmentKind.RULE and segment.rule == built
    assert segment.size == rule_audience_size(built) == 3
    page = admin_client.get(f"/admin/segments/segment/{segment.pk}/change/").content.decode()
    assert "consents to email AND (monetary ≥ 100 OR purchased in Garden in 30 days)" in page


def test_a_bad_condition_is_named_by_its_path_and_nothing_is_saved(garden_shop, admin_client):
    resp = admin_client.post(
        "/admin/segments/segment/add/",
        {"name": "Broken", "active": "on", "rule": json.dumps({"all": [{"consent": "email"}, {"any": []}]})},
    )
    assert "all[1].any: must be a non-empty list of conditions" in resp.content.decode()
    assert not Segment.objects.filter(name="Broken").exists()


def test_the_segment_list_speaks_in_operator_words(admin_client):
    now = timezone.now()
    seg = Segment.objects.create(name="Loyal", kind="rule", rule={"consent": "email"}, size=12345)
    Segment.objects.filter(pk=seg.pk).update(refreshed_at=now - timedelta(hours=2, minutes=5))
    SegmentSize.objects.create(segment=seg, at=now - timedelta(days=1), size=12000)
    SegmentSize.objects.create(segment=seg, at=now - timedelta(hours=2), size=12345)
    run = ClusteringRun.objects.create(status="succeeded", chosen_k=4)
    Segment.objects.create(
        name="Bargain hunters", kind="cluster", size=800, clustering_run=run, centroid={"monetary": 12.5}
    )
    page = admin_client.get("/admin/segments/segment/").content.decode()
    assert ">12,345</a>" in page and "+345" in page
    assert "2\xa0hours ago" in page or "2 hours ago" in page
    assert "consents to email" in page and "found by clustering" in page
    assert ">Rule<" in page and ">Clustering<" in page
    assert "object (" not in page


def test_a_clustering_segment_page_shows_its_centroid_in_words_and_no_rule_builder(admin_client):
    run = ClusteringRun.objects.create(status="succeeded", chosen_k=4)
    seg = Segment.objects.create(
        name="Bargain hunters", kind="cluster", size=800, clustering_run=run, centroid={"monetary": 1234.5}
    )
    page = admin_client.get(f"/admin/segments/segment/{seg.pk}/change/").content.decode()
    assert "Spend in the window" in page and "1,234.50" in page
    assert "the clustering of" in page and "4 segments" in page
    assert 'id="rule-grammar"' not in page and "rule-builder.js" in page  # the script is there, the builder not
    assert "no later run matched" in page
    assert "Active rule segments are refreshed" not in page and "object (" not in page
