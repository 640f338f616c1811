"""Recommender configurations as operators use them: the presets, parameters checked against the
algorithm with the error next to the field, making one the default (audited), and the next run
serving the chosen configuration and recording it."""

import pandas as pd
import pytest
from django.test import Client

from accounts.models import AuditEntry
from pipeline import services as pipeline
from profiles import services
from profiles.demo import generate_shop
from profiles.models import Customer, Event
from recommendations import algorithms
from recommendations import services as reco_services
from recommendations.models import Algorithm, BlendComponent, Recommendation, RecommenderConfig, RecommenderRun
from tests.factories import OperatorFactory

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/recommendations/recommenderconfig/add/"
LIST_URL = "/admin/recommendations/recommenderconfig/"


def _signed_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def marketer(db):
    return _signed_in(OperatorFactory(username="marketer", role="Marketing operator"))


@pytest.fixture
def small_shop(db):
    demo = generate_shop(seed=5, n_customers=150, n_events=9_000, n_products=60, n_posts=20, chunk_size=30_000)
    services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
    services.items_upsert(rows=demo.items)
    for chunk in demo.iter_events():
        services.events_ingest(rows=chunk, create_unknown=False)
    run = pipeline.pipeline_create(steps=["profiles", "segments"])
    pipeline.pipeline_execute(run=run)
    return demo


def _form(name="Neighbours 75", algorithm="item_knn", **fields):
    data = {
        "name": name,
        "description": "",
        "algorithm": algorithm,
        "half_life_days": "",
        "components-TOTAL_FORMS": "0",
        "components-INITIAL_FORMS": "0",
        "components-MIN_NUM_FORMS": "0",
        "components-MAX_NUM_FORMS": "1000",
    }
    for algo in algorithms.ALGORITHMS.values():
        for p in algo.parameters:
            data[f"{algo.key}__{p.name}"] = (
                "on" if p.type is bool and p.default else ("" if p.type is bool else p.default)
            )
    data.update(fields)
    return {k: v for k, v in data.items() if v != "" or not k.endswith(("__binary",))}


def test_a_shop_starts_with_the_default_the_neighbourhood_methods_and_the_evaluated_blends():
    configs = {c.name: c for c in RecommenderConfig.objects.all()}
    assert [c.name for c in RecommenderConfig.objects.filter(is_default=True)] == ["Default (PureSVD)"]
    assert configs["Default (PureSVD)"].algorithm == "pure_svd"
    blend = configs["User-based + item-based CF"]
    assert sorted((c.config.algorithm, c.weight) for c in blend.components.all()) == [
        ("item_knn", 0.2),
        ("user_knn", 0.8),
    ]
    above = configs["PureSVD + RP3beta"]
    assert sorted((c.config.name, c.weight) for c in above.components.all()) == [
        ("Default (PureSVD)", 0.9),
        ("RP3beta", 0.1),
    ]
    # the presets' blends are what the engine's evaluation measured (docs/engine.md)
    from recommendations.engine import BLEND_PARAMS

    assert BLEND_PARAMS[("user_based", "item_based")]["weights"] == (0.8, 0.2)
    assert BLEND_PARAMS[("default", "rp3beta")]["weights"] == (0.9, 0.1)


def test_the_console_offers_exactly_the_algorithms_the_pipeline_can_build():
    assert set(algorithms.ALGORITHMS) == set(Algorithm.values)
    for key, algo in algorithms.ALGORITHMS.items():
        if not algo.is_blend:
            assert algorithms.build(algorithms.Spec(key), n_threads=1) is not None


def test_parameters_are_checked_against_the_algorithm_and_named():
    assert algorithms.validate("item_knn", {"k": "50", "shrinkage": 2}) == {"k": 50, "shrinkage": 2.0}
    with pytest.raises(algorithms.InvalidParameters) as exc:
        algorithms.validate("item_knn", {"k": 0, "factors": 8, "similarity": "jaccard"})
    assert exc.value.errors == {
        "k": "Neighbours (k) must be at least 1",
        "factors": "Item-based collaborative filtering has no parameter 'factors' (its parameters: k, similarity, "
        "shrinkage, value_transform, binary)",
        "similarity": "Similarity must be one of cosine, adjusted_cosine",
    }
    with pytest.raises(algorithms.InvalidParameters, match="whole number"):
        algorithms.validate("pure_svd", {"factors": 2.5})


def test_an_operator_creates_a_configuration_storing_only_what_differs_from_the_defaults(marketer):
    response = marketer.post(ADD_URL, _form(item_knn__k="75", weight__view="0.5"))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    config = RecommenderConfig.objects.get(name="Neighbours 75")
    assert (config.algorithm, config.params, config.event_weights, config.is_default) == (
        "item_knn",
        {"k": 75},
        {"view": 0.5},
        False,
    )
    entry = AuditEntry.objects.get(action="recommender_config.created")
    assert entry.target_label == "Neighbours 75"
    page = marketer.get(f"{LIST_URL}{config.pk}/change/").content.decode()
    assert "Item-based collaborative filtering" in page and "No run has served this configuration yet" in page


def test_a_bad_parameter_is_refused_next_to_its_field_and_nothing_is_saved(marketer):
    response = marketer.post(ADD_URL, _form(name="Broken", item_knn__k="0"))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["item_knn__k"] == ["Neighbours (k) must be at least 1"]
    assert not RecommenderConfig.objects.filter(name="Broken").exists()
    # the other algorithms' fields are not checked: only the chosen algorithm's parameters count
    ok = marketer.post(ADD_URL, _form(name="Fine", algorithm="popularity", item_knn__k="0"))
    assert ok.status_code == 302
    assert RecommenderConfig.objects.get(name="Fine").params == {}


def test_a_blend_needs_two_plain_configurations(marketer):
    item = RecommenderConfig.objects.get(name="Item-based CF")
    data = _form(name="Lonely blend", algorithm="blend")
    data.update({"components-TOTAL_FORMS": "1", "components-0-config": str(item.pk), "components-0-weight": "1"})
    response = marketer.post(ADD_URL, data)
    assert response.status_code == 200
    assert "A blend needs at least two configurations." in response.content.decode()
    assert not RecommenderConfig.objects.filter(name="Lonely blend").exists()


def test_analysts_read_configurations_but_cannot_create_them():
    reader = _signed_in(OperatorFactory(username="ana", role="Analyst"))
    assert reader.get(LIST_URL).status_code == 200
    assert reader.post(ADD_URL, _form(name="Sneaky")).status_code == 403
    assert not RecommenderConfig.objects.filter(name="Sneaky").exists()


def test_the_default_cannot_be_deleted(marketer):
    default = RecommenderConfig.objects.get(is_default=True)
    assert marketer.post(f"{LIST_URL}{default.pk}/delete/", {"post": "yes"}).status_code == 403
    assert RecommenderConfig.objects.filter(pk=default.pk).exists()


def test_the_chosen_default_is_served_by_the_next_run_and_recorded(marketer, small_shop):
    item = RecommenderConfig.objects.get(name="Item-based CF")
    response = marketer.post(LIST_URL, {"action": "make_default", "_selected_action": [item.pk]}, follow=True)
    assert "“Item-based CF” is now the default: the next recomputation serves it." in response.content.decode()
    assert list(RecommenderConfig.objects.filter(is_default=True)) == [item]
    entry = AuditEntry.objects.get(action="recommender_config.made_default")
    assert entry.changes == {"previous default": "Default (PureSVD)"}

    figures = reco_services.recommendations_compute()
    run = RecommenderRun.objects.get(is_active=True)
    assert (run.config, run.algorithm, run.params["configuration"]) == (item, "item_knn", "Item-based CF")
    assert run.params["model"] == algorithms.effective("item_knn", {})
    assert figures["configuration"] == "Item-based CF" and run.metrics["configuration"] == "Item-based CF"
    # item-based suggestions are explained by the customer's own items
    reasons = pd.Series(Recommendation.objects.filter(run=run, rank=1).values_list("reason", flat=True))
    assert (reasons == "item").mean() > 0.8
    page = marketer.get(f"{LIST_URL}{item.pk}/change/").content.decode()
    assert f"/admin/recommendations/recommenderrun/{run.pk}/change/" in page


def test_a_run_can_name_a_configuration_and_a_name_that_is_none_is_refused(small_shop):
    RecommenderConfig.objects.create(name="Best-sellers", algorithm="popularity")
    run = pipeline.pipeline_start(
        trigger="shell", steps=["recommendations"], options={"recommender_config": "Best-sellers"}
    )
    pipeline.pipeline_execute(run=run, step_params=run.step_params)
    assert run.status == "succeeded", run.error
    served = RecommenderRun.objects.get(is_active=True)
    assert served.algorithm == "popularity"
    texts = set(Recommendation.objects.filter(run=served).values_list("reason_text", flat=True))
    assert texts <= {"popular right now", "popular in your segment"}

    # a name that is no configuration is refused when the run is started, naming the ones there are
    with pytest.raises(ValueError, match=r"recommender_config must be one of 'Default \(PureSVD\)', .*not 'Nope'"):
        pipeline.pipeline_start(trigger="shell", steps=["recommendations"], options={"recommender_config": "Nope"})
    # one deleted between the start and the step fails the step, and the served run stays in service
    gone = pipeline.pipeline_start(
        trigger="shell", steps=["recommendations"], options={"recommender_config": "Best-sellers"}
    )
    RecommenderConfig.objects.filter(name="Best-sellers").delete()
    pipeline.pipeline_execute(run=gone, step_params=gone.step_params)
    assert gone.status == "failed"
    assert "no recommender configuration named 'Best-sellers'" in gone.step_runs.get().error
    assert RecommenderRun.objects.get(is_active=True) == served


def test_blend_components_are_protected_while_a_blend_uses_them():
    user = RecommenderConfig.objects.get(name="User-based CF")
    assert BlendComponent.objects.filter(config=user).exists()
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        user.delete()


def test_the_start_form_and_the_command_offer_the_configurations(marketer):
    page = marketer.get("/admin/pipeline/pipelinerun/start/").content.decode()
    assert '<option value="Default (PureSVD)">Default (PureSVD) (default)</option>' in page
    assert '<option value="User-based + item-based CF">' in page
    from pipeline.management.commands.recompute import Command

    assert "--recommender-config" in Command().create_parser("manage.py", "recompute").format_help()


def test_user_based_cf_is_served_with_the_number_of_similar_customers_as_its_reason(small_shop):
    user_based = RecommenderConfig.objects.get(name="User-based CF")
    reco_services.config_make_default(user_based)
    reco_services.recommendations_compute()
    run = RecommenderRun.objects.get(is_active=True)
    assert (run.algorithm, run.params["model"]) == ("user_knn", algorithms.effective("user_knn", {}))
    rows = pd.DataFrame.from_records(
        Recommendation.objects.filter(run=run, reason="similar_users").values("reason_text")
    )
    assert len(rows) > 100
    counts = rows["reason_text"].str.extract(r"^(\d+) customers with similar taste bought this$")[0]
    singles = rows["reason_text"] == "a customer with similar taste bought this"
    assert (counts.notna() | singles).all(), rows["reason_text"][counts.isna() & ~singles].value_counts()
    assert counts.dropna().astype(int).between(2, 200).all()


def test_the_blend_preset_is_served_and_records_its_parts(small_shop):
    blend = RecommenderConfig.objects.get(name="User-based + item-based CF")
    figures = reco_services.recommendations_compute(config=blend.name)
    run = RecommenderRun.objects.get(is_active=True)
    assert run.algorithm == "blend" and figures["configuration"] == blend.name
    parts = {name: c["weight"] for name, c in run.params["model"]["components"].items()}
    assert parts == {"User-based CF": 0.8, "Item-based CF": 0.2}
    assert run.params["model"]["normalisation"] == "minmax"
    assert run.ndcg_at_10 is not None
    # both kinds of reasons: the item-based part explains by the customer's own items, the user-based by neighbours
    reasons = set(Recommendation.objects.filter(run=run).values_list("reason", flat=True))
    assert {"item", "similar_users"} <= reasons


def test_lists_are_full_and_what_the_model_had_no_evidence_for_is_said_to_be_popular(small_shop, settings):
    # few neighbours: some customers' neighbourhoods bought fewer products than a list holds
    RecommenderConfig.objects.filter(name="User-based CF").update(params={"k": 2})
    reco_services.recommendations_compute(config="User-based CF")
    run = RecommenderRun.objects.get(is_active=True)
    rows = pd.DataFrame.from_records(
        Recommendation.objects.filter(run=run, kind="product").values("customer_id", "rank", "reason", "score")
    )
    warm = rows.groupby("customer_id")
    assert (warm.size() == settings.RECOMMENDER_TOP_N).all()
    assert set(rows["reason"]) == {"similar_users", "popular"}
    # the popular fillers come after every item the neighbours chose, never before
    last_voted = rows[rows["reason"] == "similar_users"].groupby("customer_id")["rank"].max()
    first_filler = rows[rows["reason"] == "popular"].groupby("customer_id")["rank"].min()
    both = last_voted.index.intersection(first_filler.index)
    assert len(both) > 0 and (last_voted[both] < first_filler[both]).all()


def test_making_a_configuration_the_default_marks_both_as_changed():
    before = {c.name: c.updated_at for c in RecommenderConfig.objects.all()}
    rp3 = RecommenderConfig.objects.get(name="RP3beta")
    assert reco_services.config_make_default(rp3) is True
    assert reco_services.config_make_default(rp3) is False  # already the default: nothing recorded twice
    after = {c.name: c.updated_at for c in RecommenderConfig.objects.all()}
    assert after["RP3beta"] > before["RP3beta"] and after["Default (PureSVD)"] > before["Default (PureSVD)"]
    assert after["Item-based CF"] == before["Item-based CF"]
    assert AuditEntry.objects.filter(action="recommender_config.made_default").count() == 1


def test_the_list_costs_the_same_queries_for_more_configurations(marketer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert marketer.get(LIST_URL).status_code == 200
        return len(queries)

    few = count()
    for i in range(6):
        RecommenderConfig.objects.create(name=f"Extra {i}", algorithm="item_knn", params={"k": 10 + i})
    assert count() == few


# -- the sequence model (issue #18) ------------------------------------------------------------------

SMALL_SASREC = {"epochs": 3, "factors": 16, "max_len": 20, "blocks": 1, "batch_size": 64}


def test_the_sequence_model_is_a_preset_the_console_offers_but_not_the_default(marketer):
    preset = RecommenderConfig.objects.get(name="Sequence model (SASRec)")
    assert (preset.algorithm, preset.params, preset.is_default) == ("sasrec", {}, False)
    page = marketer.get(f"{LIST_URL}{preset.pk}/change/").content.decode()
    assert 'name="sasrec__max_len"' in page and "Sequence model (SASRec)" in page
    # its parameters are checked like any other's
    bad = marketer.post(ADD_URL, _form(name="Odd heads", algorithm="sasrec", sasrec__factors="10", sasrec__heads="3"))
    assert bad.status_code == 200 and not RecommenderConfig.objects.filter(name="Odd heads").exists()
    assert "Heads must divide the factors (10)" in bad.content.decode()


def test_the_service_orders_histories_by_each_pairs_latest_event(small_shop):
    cfg = reco_services.recommender_settings(RecommenderConfig.objects.get(name="Sequence model (SASRec)"))
    data = reco_services.load_interactions(cfg)
    # one time per stored pair of the training matrix: the latest of that pair's positive events
    assert (data.times.indptr == data.user_items.indptr).all() and (data.times.indices == data.user_items.indices).all()
    ev = data.events[data.events["positive"]]
    secs = ev["t"].to_numpy().astype("datetime64[s]").astype("int64")
    latest = pd.Series(secs).groupby([ev["u"].to_numpy(), ev["i"].to_numpy()]).max()
    u, i = data.times.nonzero()
    assert (latest.loc[list(zip(u, i, strict=True))].to_numpy() == data.times[u, i].A1).all()


def test_a_sasrec_run_stores_suggestions_with_reasons_that_the_api_serves(small_shop):
    from tests.factories import client_for

    preset = RecommenderConfig.objects.get(name="Sequence model (SASRec)")
    preset.params = SMALL_SASREC
    preset.save()
    figures = reco_services.recommendations_compute(config=preset.name)
    run = RecommenderRun.objects.get(is_active=True)
    assert (run.config, run.algorithm, figures["configuration"]) == (preset, "sasrec", preset.name)
    assert run.params["model"] == algorithms.effective("sasrec", SMALL_SASREC)
    # what the fit trained, within its budget of steps, is on the run page's figures
    training = run.sizes["training"]
    assert 0 < training["windows_trained"] <= training["windows"] and training["epochs_run"] >= 1
    assert 0 < training["updates"] <= run.params["model"]["max_updates"]
    # offline figures of the sequence model on the shop's own leave-last-out holdout
    assert run.metrics["configuration"] == preset.name and "ndcg@10" in run.metrics["product"]["default"]
    # suggestions are explained by an item of the customer's own history
    rows = pd.DataFrame.from_records(
        Recommendation.objects.filter(run=run).values("customer_id", "reason", "reason_item_id", "reason_text")
    )
    by_item = rows[rows["reason"] == "item"]
    assert len(by_item) > 0.5 * len(rows)
    had = set(Event.objects.filter(item__isnull=False).values_list("customer_id", "item_id"))
    assert all(pair in had for pair in zip(by_item["customer_id"], by_item["reason_item_id"], strict=True))
    assert by_item["reason_text"].str.startswith("because you ").all()

    customer = Customer.objects.get(pk=by_item["customer_id"].iloc[0])
    reader = client_for(OperatorFactory(username="reader", permissions=["recommendations.view_recommendation"]))
    answer = reader.get(f"/api/customers/{customer.external_id}/recommendations/", {"kind": "product", "limit": 5})
    assert answer.status_code == 200, answer.content
    served = answer.json()["results"]
    assert len(served) == 5 and any(r["reason"] == "item" for r in served)
