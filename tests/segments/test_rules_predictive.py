"""Predictive segments (issue #16): the prediction fields, the affinity and top-N % leaves of the rule
language checked against pandas on the same profiles, the ready-made segments, the admin's preview."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.db.models import Count
from django.test import override_settings

from accounts.models import AuditEntry
from accounts.roles import MARKETING_OPERATOR
from pipeline import services as pipeline
from profiles import services
from profiles.demo import generate_shop
from profiles.models import Customer, Item, Profile
from segments.models import Membership, Segment
from segments.predictive import TEMPLATES
from segments.rules import (
    RuleError,
    describe_rule,
    refresh_rule_memberships,
    rule_grammar,
    rule_queryset,
    validate_rule,
)
from segments.services import predictive_segments_create
from tests.factories import OperatorFactory, predictions_set

pytestmark = pytest.mark.django_db

CATEGORY = "Garden"
# Category names an operator may type that a naive JSON path would misread or a spliced query break on.
ODD_CATEGORIES = ["2024", "Home__Garden", 'Tools "Pro"', "x'); DROP TABLE profiles_profile; --", "Café & Thé"]


def _predict(seed: int = 7) -> None:
    predictions_set(seed=seed, odd_categories=tuple(ODD_CATEGORIES))


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A demo shop of 240 customers with profiles and predictions, and 4 customers with no profile yet."""
    from tests.campaigns.conftest import wipe

    with django_db_blocker.unblock():
        demo = generate_shop(seed=5, n_customers=240, n_events=240 * 30, n_products=80, n_posts=20, chunk_size=30_000)
        services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
        services.items_upsert(rows=demo.items)
        for chunk in demo.iter_events():
            services.events_ingest(rows=chunk, create_unknown=False)
        run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles"]))
        assert run.status == "succeeded", run.error
        _predict()
        services.customers_upsert(rows=pd.DataFrame([{"external_id": f"newcomer{i}"} for i in range(4)]))
    yield demo
    with django_db_blocker.unblock():
        wipe()


def _frame() -> pd.DataFrame:
    """Every customer with its profile's figures (NaN without a profile) and its affinity dict."""
    customers = pd.DataFrame(list(Customer.objects.values("id")))
    cols = ["customer_id", "p_alive", "churn_risk", "predicted_orders", "predicted_value", "prediction_basis"]
    cols += ["monetary", "orders_total", "affinity"]
    profiles = pd.DataFrame(list(Profile.objects.values(*cols))).rename(columns={"customer_id": "id"})
    frame = customers.merge(profiles, on="id", how="left").set_index("id")
    frame["has_profile"] = frame["affinity"].notna()
    for col in ["p_alive", "churn_risk", "predicted_orders", "predicted_value", "monetary", "orders_total"]:
        frame[col] = frame[col].astype(float)
    return frame


def _affinity(frame: pd.DataFrame, category: str) -> pd.Series:
    """The affinity for `category`, 0 where the category is not in the dict, NaN without a profile."""
    return frame["affinity"].map(lambda a: a.get(category, 0.0) if isinstance(a, dict) else np.nan)


def _top(frame: pd.DataFrame, field: str, percent: float) -> pd.Series:
    known = frame[field].dropna().sort_values(ascending=False)
    threshold = known.iloc[math.ceil(len(known) * percent / 100) - 1]
    return frame[field] >= threshold


def _ids(mask: pd.Series) -> set[int]:
    return set(mask[mask.fillna(False).astype(bool)].index)


def _members(rule) -> set[int]:
    return set(rule_queryset(rule).values_list("pk", flat=True))


def _cases(f: pd.DataFrame) -> list[tuple[dict, pd.Series]]:
    garden = _affinity(f, CATEGORY)
    return [
        (
            {"all": [{"field": "p_alive", "op": "<", "value": 0.3}, {"field": "monetary", "op": ">=", "value": 500}]},
            (f["p_alive"] < 0.3) & (f["monetary"] >= 500),
        ),
        ({"field": "churn_risk", "op": ">=", "value": 0.7}, f["churn_risk"] >= 0.7),
        ({"field": "predicted_orders", "op": "between", "value": [1, 2.5]}, f["predicted_orders"].between(1, 2.5)),
        ({"field": "predicted_value", "op": ">", "value": 100}, f["predicted_value"] > 100),
        ({"field": "prediction_basis", "op": "=", "value": "prior"}, f["prediction_basis"] == "prior"),
        ({"field": "p_alive", "op": "is null"}, f["has_profile"] & f["p_alive"].isna() | ~f["has_profile"]),
        ({"affinity": {"category": CATEGORY, "op": ">=", "value": 0.4}}, garden >= 0.4),
        ({"affinity": {"category": CATEGORY, "op": "<", "value": 0.2}}, garden < 0.2),
        ({"affinity": {"category": CATEGORY, "op": "=", "value": 0}}, garden == 0),
        ({"affinity": {"category": CATEGORY, "op": "!=", "value": 0.5}}, f["has_profile"] & (garden != 0.5)),
        ({"affinity": {"category": CATEGORY, "op": "between", "value": [0.25, 0.5]}}, garden.between(0.25, 0.5)),
        ({"top": {"field": "predicted_value", "percent": 10}}, _top(f, "predicted_value", 10)),
        ({"top": {"field": "p_alive", "percent": 2.5}}, _top(f, "p_alive", 2.5)),
        ({"top": {"field": "monetary", "percent": 100}}, _top(f, "monetary", 100)),
    ]


def test_each_predictive_condition_and_its_not_match_a_pandas_computation_on_the_same_profiles(shop):
    f = _frame()
    everyone = set(f.index)
    assert f["p_alive"].isna().sum() > 30 and (~f["has_profile"]).sum() == 4  # gaps the rules must handle
    for rule, expected in _cases(f):
        members = _members(rule)
        assert members == _ids(expected), rule
        assert 0 < len(members) < len(everyone), rule  # a case that separates customers
        # NOT is the exact complement over all customers, those without predictions or profile included.
        assert _members({"not": rule}) == everyone - members, rule


def test_a_missing_affinity_counts_as_zero_so_low_affinity_includes_non_candidates(shop):
    f = _frame()
    not_candidates = _ids(f["has_profile"] & f["affinity"].map(lambda a: isinstance(a, dict) and CATEGORY not in a))
    low = _members({"affinity": {"category": CATEGORY, "op": "<", "value": 0.2}})
    assert not_candidates and not_candidates <= low
    # ... and customers without a profile match no affinity condition, like every profile condition.
    newcomers = set(Customer.objects.filter(external_id__startswith="newcomer").values_list("pk", flat=True))
    assert not newcomers & low
    assert newcomers <= _members({"not": {"affinity": {"category": CATEGORY, "op": "<", "value": 0.2}}})


def test_odd_category_names_are_matched_as_written_never_spliced_into_the_sql(shop):
    f = _frame()
    for category in ODD_CATEGORIES:
        holders = _ids(_affinity(f, category) == 0.5)
        assert holders, category
        assert _members({"affinity": {"category": category, "op": "=", "value": 0.5}}) == holders, category
    assert Profile.objects.count() == 240  # the table is still there


def test_the_top_percent_includes_every_tie_at_the_threshold(shop):
    f = _frame()
    known = f["predicted_value"].dropna().sort_values(ascending=False)
    k = math.ceil(len(known) * 10 / 100)
    threshold = known.iloc[k - 1]
    members = _members({"top": {"field": "predicted_value", "percent": 10}})
    tied = _ids(f["predicted_value"] == threshold)
    assert len(tied) > 1 and tied <= members  # all of the tie, not an arbitrary part of it
    assert len(members) == (known >= threshold).sum() >= k
    assert min(f.loc[list(members), "predicted_value"]) == threshold


def test_top_over_a_figure_nobody_has_yet_is_nobody(shop):
    Profile.objects.update(predicted_orders=None)
    assert _members({"top": {"field": "predicted_orders", "percent": 50}}) == set()


@pytest.mark.parametrize(
    ("rule", "path", "words"),
    [
        ({"affinity": {"category": "", "op": ">=", "value": 0.4}}, "affinity.category", "category name"),
        ({"affinity": {"category": 12, "op": ">=", "value": 0.4}}, "affinity.category", "category name"),
        ({"affinity": {"op": ">=", "value": 0.4}}, "affinity.category", "is required"),
        ({"affinity": {"category": "Garden", "op": ">=", "value": 40}}, "affinity.value", "from 0 to 1"),
        ({"affinity": {"category": "Garden", "op": "in", "value": [0.4]}}, "affinity.op", "does not apply"),
        ({"affinity": {"category": "Garden", "op": ">=", "value": 0.4, "x": 1}}, "affinity.x", "unknown key"),
        ({"affinity": "Garden"}, "affinity", "must be an object"),
        ({"top": {"field": "predicted_value", "percent": 0}}, "top.percent", "above 0 and at most 100"),
        ({"top": {"field": "predicted_value", "percent": 150}}, "top.percent", "above 0 and at most 100"),
        ({"top": {"field": "predicted_value", "percent": "10"}}, "top.percent", "above 0 and at most 100"),
        ({"top": {"field": "lifecycle", "percent": 10}}, "top.field", "cannot rank by 'lifecycle'"),
        ({"top": {"percent": 10}}, "top.field", "is required"),
        ({"field": "p_alive", "op": "<", "value": 30}, "value", "probability from 0 to 1"),
        ({"field": "churn_risk", "op": "between", "value": [0.5, 2]}, "value[1]", "probability from 0 to 1"),
        ({"field": "prediction_basis", "op": "=", "value": "guess"}, "value", "unknown prediction_basis"),
    ],
)
def test_a_bad_predictive_condition_is_refused_naming_the_bad_part(rule, path, words):
    with pytest.raises(RuleError) as exc:
        validate_rule({"all": [{"consent": "email"}, rule]})
    errors = exc.value.errors
    assert [e["path"] for e in errors] == [f"all[1].{path}"]
    assert words in errors[0]["message"]


@override_settings(RULE_MAX_CONDITIONS=3)
def test_affinity_and_top_leaves_count_against_the_limits():
    leaves = [
        {"affinity": {"category": "Garden", "op": ">=", "value": 0.4}},
        {"top": {"field": "predicted_value", "percent": 10}},
        {"top": {"field": "p_alive", "percent": 5}},
    ]
    with pytest.raises(RuleError) as exc:
        validate_rule({"all": leaves})
    assert "at most 3 conditions" in exc.value.errors[0]["message"]
    validate_rule({"all": leaves[:2]})


def test_predictive_conditions_read_in_words():
    assert (
        describe_rule(
            {"all": [{"field": "p_alive", "op": "<", "value": 0.3}, {"field": "monetary", "op": ">=", "value": 500}]}
        )
        == "chance still a buyer below 30% AND monetary ≥ 500"
    )
    assert (
        describe_rule({"affinity": {"category": "Garden", "op": ">=", "value": 0.4}})
        == "affinity for Garden at least 40%"
    )
    assert describe_rule({"top": {"field": "predicted_value", "percent": 10}}) == "top 10% by predicted spend"
    assert describe_rule({"not": {"field": "churn_risk", "op": ">=", "value": 0.7}}) == "NOT churn risk at least 70%"
    assert describe_rule({"field": "p_alive", "op": "is null"}) == "chance still a buyer not predicted yet"


def test_the_grammar_offers_the_predictive_leaves_to_the_builder():
    grammar = rule_grammar()
    assert {"affinity", "top"} <= set(grammar["leaves"])
    fields = {f["name"]: f for f in grammar["fields"]}
    assert fields["p_alive"]["group"] == "Predictions" and fields["p_alive"]["max"] == 1
    assert fields["predicted_value"]["label"] == "Predicted spend"
    assert grammar["affinity"]["ops"][:6] == ["=", "!=", "<", "<=", ">", ">="]
    assert grammar["affinity"]["horizon_days"] == settings.PREDICTION_HORIZON_DAYS
    assert {"value": "predicted_value", "label": "Predicted spend"} in grammar["top"]["fields"]
    validate_rule({"top": {"field": grammar["top"]["default_field"], "percent": grammar["top"]["max_percent"]}})


# --- the ready-made predictive segments --------------------------------------------------------


def test_the_ready_made_segments_have_the_right_members_and_are_audited_once(shop):
    f = _frame()
    created = predictive_segments_create(category=CATEGORY, actor_label="shell:test", source="shell")
    by_name = {s.name: s for s in created}
    assert set(by_name) == {"Likely to churn", "High predicted value", f"Likely to buy {CATEGORY}"}
    expected = {
        "Likely to churn": (f["churn_risk"] >= 0.7) & (f["orders_total"] >= 1),
        "High predicted value": _top(f, "predicted_value", 10),
        f"Likely to buy {CATEGORY}": _affinity(f, CATEGORY) >= 0.4,
    }
    for name, mask in expected.items():
        seg = by_name[name]
        members = set(Membership.objects.filter(segment=seg).values_list("customer_id", flat=True))
        assert members == _ids(mask) and seg.size == len(members) > 0, name
        assert seg.kind == "rule" and seg.description
    assert AuditEntry.objects.filter(action="segment.created", actor_label="shell:test").count() == 3
    # Safe to run twice: nothing new, nothing audited again.
    assert predictive_segments_create(category=CATEGORY) == []
    assert Segment.objects.filter(name__in=list(expected)).count() == 3


def test_the_segments_step_refreshes_predictive_segments_after_the_profiles_step_of_the_same_run(shop, monkeypatch):
    """The profiles step writes the predictions; the segments step, after it in the same run, reads them."""
    [churn] = [s for s in predictive_segments_create(category=CATEGORY) if s.name == "Likely to churn"]
    compute = services.profiles_compute

    def compute_then_predict(**kwargs):  # the profiles step, with the model's output written by it
        result = compute(**kwargs)
        _predict(seed=99)
        return result

    monkeypatch.setattr(services, "profiles_compute", compute_then_predict)
    assert settings.PIPELINE_STEPS.index("profiles.steps.profiles") < settings.PIPELINE_STEPS.index(
        "segments.steps.segments"
    )
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["profiles", "segments"]))
    assert run.status == "succeeded", run.error
    f = _frame()  # the predictions of seed 99
    members = set(Membership.objects.filter(segment=churn).values_list("customer_id", flat=True))
    assert members == _ids((f["churn_risk"] >= 0.7) & (f["orders_total"] >= 1))


def test_the_add_page_offers_the_templates_and_prefills_an_ordinary_rule_segment(shop, client):
    client.force_login(OperatorFactory(username="maria", role=MARKETING_OPERATOR))
    page = client.get("/admin/segments/segment/add/").content.decode()
    for template in TEMPLATES.values():
        assert template.title in page
    assert f'<option value="{CATEGORY}">' in page  # the shop's categories to pick from
    page = client.get("/admin/segments/segment/add/", {"template": "category", "category": CATEGORY}).content.decode()
    assert f'value="Likely to buy {CATEGORY}"' in page and "&quot;affinity&quot;" in page
    # A category the shop does not have fills in nothing and says so.
    page = client.get("/admin/segments/segment/add/", {"template": "category", "category": "Nope"}).content.decode()
    assert "pick one of the shop" in page and 'value="Likely to buy Nope"' not in page


def test_admin_preview_count_equals_the_members_after_saving(shop, client):
    client.force_login(OperatorFactory(username="maria", role=MARKETING_OPERATOR))
    rule = {
        "all": [
            {"affinity": {"category": CATEGORY, "op": ">=", "value": 0.3}},
            {"not": {"top": {"field": "predicted_value", "percent": 25}}},
            {"field": "p_alive", "op": ">=", "value": 0.2},
        ]
    }
    preview = client.post("/api/segments/preview/", {"rule": rule}, content_type="application/json").json()
    assert preview["description"] == (
        f"affinity for {CATEGORY} at least 30% AND NOT top 25% by predicted spend AND chance still a buyer at least 20%"
    )
    import json

    resp = client.post(
        "/admin/segments/segment/add/",
        {"name": "Garden fans, not yet big spenders", "description": "", "active": "on", "rule": json.dumps(rule)},
    )
    assert resp.status_code == 302
    seg = Segment.objects.get(name="Garden fans, not yet big spenders")
    assert Membership.objects.filter(segment=seg).count() == seg.size == preview["size"] > 0
    assert AuditEntry.objects.filter(action="segment.created", target_id=str(seg.pk), actor_label="maria").exists()
    # And a refresh by the pipeline's segments step keeps the same members (nothing changed).
    assert refresh_rule_memberships(seg) == preview["size"]


def test_the_demo_command_creates_the_predictive_segments_for_the_most_bought_category_once(shop):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("seed_predictive_segments", stdout=out)
    bought = (
        Item.objects.filter(events__type="purchase")
        .exclude(category="")
        .values("category")
        .annotate(n=Count("events"))
        .order_by("-n", "category")
    )
    assert f"Likely to buy {bought[0]['category']}" in out.getvalue()
    assert Segment.objects.filter(name__startswith="Likely to buy").count() == 1
    call_command("seed_predictive_segments", stdout=out)
    assert "there already" in out.getvalue() and Segment.objects.count() == 3
    Segment.objects.filter(name="Likely to churn").delete()  # an operator's choice the demo respects
    call_command("seed_predictive_segments", if_no_rule_segments=True, stdout=out)
    assert "rule segments already" in out.getvalue() and Segment.objects.count() == 2
    with pytest.raises(CommandError, match="No item is in the category 'Nope'"):
        call_command("seed_predictive_segments", category="Nope")


def test_a_predictive_rule_is_one_count_query(shop, django_assert_num_queries):
    rule = {
        "all": [
            {"affinity": {"category": CATEGORY, "op": ">=", "value": 0.2}},
            {"not": {"top": {"field": "predicted_value", "percent": 10}}},
            {"field": "churn_risk", "op": ">=", "value": 0.5},
        ]
    }
    with django_assert_num_queries(1):
        rule_queryset(rule).count()


def test_category_names_are_shown_as_text_on_the_add_page(shop, client):
    services.items_upsert(rows=pd.DataFrame([{"external_id": "xss-1", "title": "Odd", "category": "<b>Bold</b>"}]))
    client.force_login(OperatorFactory(username="maria", role=MARKETING_OPERATOR))
    page = client.get("/admin/segments/segment/add/", {"template": "category", "category": "<b>Bold</b>"})
    html = page.content.decode()
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt;" in html
    assert 'value="Likely to buy &lt;b&gt;Bold&lt;/b&gt;"' in html
