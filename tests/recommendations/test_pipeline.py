"""The recommendations step on a demo shop, as the pipeline runs it, and what the API and admin show."""

from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command

from pipeline import services as pipeline
from pipeline.models import PipelineStep
from pipeline.steps import available_steps
from profiles import services
from profiles.demo import generate_shop
from profiles.models import Customer, Event, Item
from recommendations import selectors
from recommendations import services as reco_services
from recommendations.models import PopularItem, Recommendation, RecommenderRun, SimilarItem
from tests.factories import OperatorFactory, client_for, demo_shop_empty

N_CUSTOMERS = 600
N_EVENTS = 45_000
QUIET_ID = "c-quiet-001"  # a customer who signed up but did nothing before the run


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A demo shop written once through the ingestion services, then profiles, segments, recommendations."""
    demo = generate_shop(
        seed=11, n_customers=N_CUSTOMERS, n_events=N_EVENTS, n_products=200, n_posts=80, chunk_size=30_000
    )
    with django_db_blocker.unblock():
        services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
        services.customers_upsert(rows=pd.DataFrame([{"external_id": QUIET_ID, "name": "Quiet Newcomer"}]))
        services.items_upsert(rows=demo.items)
        for chunk in demo.iter_events():
            services.events_ingest(rows=chunk, create_unknown=False)
        run = pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"])
        pipeline.pipeline_execute(run=run)
        assert run.status == "succeeded", run.error
    yield demo
    with django_db_blocker.unblock():
        demo_shop_empty()


@pytest.fixture
def reader(db):
    return client_for(OperatorFactory(username="reader", permissions=["recommendations.view_recommendation"]))


def _suggestions(kind=None) -> pd.DataFrame:
    qs = Recommendation.objects.filter(run__is_active=True)
    if kind:
        qs = qs.filter(kind=kind)
    return pd.DataFrame.from_records(
        qs.values("customer_id", "item_id", "kind", "rank", "reason", "reason_item_id", "reason_text")
    )


@pytest.mark.django_db
def test_every_customer_gets_suggestions_of_every_kind_and_the_run_records_its_figures(shop):
    run = RecommenderRun.objects.get(is_active=True)
    assert run.status == "succeeded" and run.algorithm == "pure_svd"
    assert run.sizes["customers"] == N_CUSTOMERS + 1 and run.sizes["events"] > 0.9 * N_EVENTS
    assert 0 < run.ndcg_at_10 <= 1 and 0 < run.precision_at_10 <= 1 and 0 < run.coverage <= 1
    # the default beats the popularity baseline on the products' holdout
    assert run.metrics["product"]["default"]["ndcg@10"] > run.metrics["product"]["popularity"]["ndcg@10"]
    assert set(run.durations) >= {"read", "evaluate", "fit", "recommend", "cold_start", "similar_items", "total"}
    step = PipelineStep.objects.filter(name="recommendations").latest("created_at")
    assert step.status == "succeeded" and step.counts["run"] == run.pk

    rows = _suggestions()
    per_customer = rows.groupby(["customer_id", "kind"]).size().unstack()
    assert len(per_customer) == Customer.objects.count()
    assert set(per_customer.columns) == {"product", "activity", "post"}
    assert (
        (per_customer["product"] == 20).all()
        and (per_customer["post"] == 20).all()
        and (per_customer["activity"] >= 5).all()
    )
    # ranks are 1..n per list
    assert (rows.groupby(["customer_id", "kind"])["rank"].max() == rows.groupby(["customer_id", "kind"]).size()).all()


@pytest.mark.django_db
def test_nothing_bought_or_inactive_is_suggested_but_viewed_products_may_be(shop):
    rows = _suggestions("product")
    bought = pd.DataFrame.from_records(
        Event.objects.filter(type="purchase").values("customer_id", "item_id")
    ).drop_duplicates()
    clash = rows.merge(bought, on=["customer_id", "item_id"])
    assert clash.empty, clash.head()
    inactive = set(Item.objects.filter(active=False).values_list("id", flat=True))
    assert inactive and not set(_suggestions()["item_id"]) & inactive
    kinds = dict(Item.objects.values_list("id", "kind"))
    all_rows = _suggestions()
    assert (all_rows["item_id"].map(kinds) == all_rows["kind"]).all()
    viewed = pd.DataFrame.from_records(
        Event.objects.filter(type="view", item__kind="product").values("customer_id", "item_id")
    ).drop_duplicates()
    assert len(rows.merge(viewed, on=["customer_id", "item_id"])) > 0


@pytest.mark.django_db
def test_suggestions_favour_the_personas_categories(shop):
    rows = _suggestions("product")
    category = dict(Item.objects.values_list("id", "category"))
    ext = dict(Customer.objects.values_list("id", "external_id"))
    persona = shop.customers.set_index("external_id")["persona"]
    rows = rows.assign(
        category=rows["item_id"].map(category), persona=rows["customer_id"].map(ext).map(persona)
    ).dropna(subset=["persona"])
    products = shop.items[shop.items["kind"] == "product"]
    lifts = {}
    for p in shop.personas:
        mine = rows[rows["persona"] == p.name]
        share = mine["category"].isin(p.categories).mean()
        catalogue = products["category"].isin(p.categories).mean()
        lifts[p.name] = share / catalogue
    assert all(lift > 1.5 for lift in lifts.values()), lifts


@pytest.mark.django_db
def test_reasons_name_items_the_customer_really_had(shop):
    rows = _suggestions()
    assert set(rows["reason"]) <= {"item", "similar_users", "segment_popular", "popular"}
    by_item = rows[rows["reason"] == "item"]
    assert len(by_item) > 0.5 * len(rows)
    had = pd.DataFrame.from_records(Event.objects.filter(item__isnull=False).values("customer_id", "item_id", "type"))
    had = had.rename(columns={"item_id": "reason_item_id"})
    pairs = by_item.merge(
        had.drop_duplicates(["customer_id", "reason_item_id"]), on=["customer_id", "reason_item_id"], how="left"
    )
    assert pairs["type"].notna().all()
    title = dict(Item.objects.values_list("id", "title"))
    itself = by_item["reason_item_id"] == by_item["item_id"]
    assert all(
        title[i] in text
        for i, text in zip(by_item.loc[~itself, "reason_item_id"], by_item.loc[~itself, "reason_text"], strict=False)
    )
    # an item the customer looked at, suggested again, names itself as "it", not by its own title
    assert (
        itself.any()
        and by_item.loc[itself, "reason_text"].str.fullmatch(r"because you [a-z ]+ it( in your basket)?").all()
    )
    # the name sits where the verb wants it: "because you put <X> in your basket"
    basket = by_item[by_item["reason_text"].str.startswith("because you put ")]
    assert len(basket) and basket["reason_text"].str.endswith(" in your basket").all()
    bought_text = by_item[by_item["reason_text"].str.startswith("because you bought ")]
    bought = had[had["type"].isin(["purchase", "return"])].drop_duplicates(["customer_id", "reason_item_id"])
    assert len(bought_text) and len(bought_text.merge(bought, on=["customer_id", "reason_item_id"])) == len(bought_text)


@pytest.mark.django_db
def test_customers_without_history_get_popular_items_of_their_segment_or_overall(shop, reader):
    quiet = Customer.objects.get(external_id=QUIET_ID)
    recs = selectors.recommendations_for(quiet, kind="product", limit=10)
    assert len(recs) == 10
    assert {r.reason for r in recs} <= {"segment_popular", "popular"} and recs[0].reason == "segment_popular"
    assert recs[0].reason_text == "popular in your segment"

    # A customer who arrives after the run: the overall popular list, with that reason.
    services.customers_upsert(rows=pd.DataFrame([{"external_id": "c-brand-new", "name": "Brand New"}]))
    answer = reader.get("/api/customers/c-brand-new/recommendations/?kind=post&limit=5")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert len(body["results"]) == 5 and {r["reason"] for r in body["results"]} == {"popular"}
    assert body["results"][0]["reason_text"] == "popular right now" and body["results"][0]["item"]["kind"] == "post"
    overall = list(
        PopularItem.objects.filter(run__is_active=True, kind="post", segment__isnull=True)
        .order_by("rank")
        .values_list("item__external_id", flat=True)[:5]
    )
    assert [r["item"]["external_id"] for r in body["results"]] == overall


@pytest.mark.django_db
def test_api_answers_in_one_query_and_validates(shop, reader, client, django_assert_num_queries):
    customer = Customer.objects.exclude(external_id=QUIET_ID).order_by("external_id").first()
    url = f"/api/customers/{customer.external_id}/recommendations/"
    assert reader.get(url).status_code == 200  # warms the user's permission cache
    with django_assert_num_queries(1):
        answer = reader.get(url, {"kind": "product", "limit": 7})
    assert answer.status_code == 200
    body = answer.json()
    assert body["run"] == RecommenderRun.objects.get(is_active=True).pk
    assert [r["rank"] for r in body["results"]] == list(range(1, 8))
    expected = [r.item.external_id for r in selectors.recommendations_for(customer, kind="product", limit=7)]
    assert [r["item"]["external_id"] for r in body["results"]] == expected
    assert all(r["reason_text"] for r in body["results"])

    assert reader.get("/api/customers/nobody/recommendations/").status_code == 404
    bad = reader.get(url, {"kind": "spaceship"})
    assert bad.status_code == 400 and "kind must be one of product, activity, post" in bad.json()["detail"]
    for limit in ("0", "21", "ten"):
        bad = reader.get(url, {"limit": limit})
        assert bad.status_code == 400 and [e["field"] for e in bad.json()["errors"]] == ["limit"], limit
    assert client.get(url).status_code in (401, 403)  # anonymous: 401 once a token scheme is configured


@pytest.mark.django_db
def test_api_answer_is_what_the_documented_serializer_gives(shop, reader):
    """The hot path builds its answer from rows (no serializer); it must be the schema's
    RecommendationsOutSerializer output value for value, prices included."""
    from recommendations.serializers import RecommendationsOutSerializer

    customers = Customer.objects.exclude(external_id=QUIET_ID).order_by("external_id")[:5]
    priced = 0
    for customer in customers:
        for kind in ("product", "activity", "post"):
            body = reader.get(
                f"/api/customers/{customer.external_id}/recommendations/", {"kind": kind, "limit": 20}
            ).json()
            recs = selectors.recommendations_for(customer, kind=kind, limit=20)
            expected = RecommendationsOutSerializer(
                {
                    "customer": customer.external_id,
                    "kind": kind,
                    "run": recs[0].run_id if recs else None,
                    "results": recs,
                }
            ).data
            assert body == expected
            priced += sum(r["item"]["price"] is not None for r in body["results"])
    assert priced > 0  # the demo shop's products have prices: the price path was exercised


@pytest.mark.django_db
def test_deleting_an_item_or_a_run_takes_its_derived_rows_along(shop):
    """The derived tables' keys are not checked by the database; Django's on_delete still applies."""
    rec = (
        Recommendation.objects.filter(run__is_active=True, reason_item__isnull=False)
        .select_related("reason_item")
        .first()
    )
    reason = rec.reason_item
    recommended_too = (
        Recommendation.objects.filter(item=reason).count() + SimilarItem.objects.filter(item=reason).count()
    )
    assert recommended_too + SimilarItem.objects.filter(similar=reason).count() > 0
    reason.delete()
    assert not Recommendation.objects.filter(item_id=reason.pk).exists()
    assert (
        not SimilarItem.objects.filter(item_id=reason.pk).exists()
        and not SimilarItem.objects.filter(similar_id=reason.pk).exists()
    )
    assert not PopularItem.objects.filter(item_id=reason.pk).exists()
    assert (
        Recommendation.objects.filter(pk=rec.pk).values_list("reason_item", flat=True).get() is None
    )  # SET_NULL, the row stays

    run = RecommenderRun.objects.get(is_active=True)
    run.delete()
    assert (
        not Recommendation.objects.filter(run_id=run.pk).exists()
        and not PopularItem.objects.filter(run_id=run.pk).exists()
    )


def test_price_text_matches_the_decimal_field_for_any_decimal():
    from decimal import Decimal

    from recommendations.serializers import _PRICE, _price

    for value in ("12.50", "12.5", "0", "0.00", "1E+1", "999999999.99", "3.14159", "7"):
        assert _price(Decimal(value)) == _PRICE.to_representation(Decimal(value)), value
    assert _price(None) is None


@pytest.mark.django_db
def test_api_refuses_staff_without_the_permission(shop, api):
    customer = Customer.objects.order_by("external_id").first()
    answer = api.get(f"/api/customers/{customer.external_id}/recommendations/")
    assert answer.status_code == 403 and "recommendations.view_recommendation" in answer.json()["detail"]


@pytest.mark.django_db
def test_similar_items_are_of_the_same_kind_and_never_the_item_itself(shop, reader, django_assert_num_queries):
    popular_product = (
        Event.objects.filter(item__kind="product", item__active=True)
        .values("item__external_id")
        .order_by()
        .first()["item__external_id"]
    )
    reader.get(f"/api/items/{popular_product}/similar/")
    with django_assert_num_queries(1):
        answer = reader.get(f"/api/items/{popular_product}/similar/", {"limit": 10})
    results = answer.json()["results"]
    assert answer.status_code == 200 and len(results) == 10
    assert all(r["item"]["kind"] == "product" and r["item"]["external_id"] != popular_product for r in results)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    rows = pd.DataFrame.from_records(
        SimilarItem.objects.filter(run__is_active=True).values(
            "item__kind", "similar__kind", "similar__active", "item_id", "similar_id"
        )
    )
    assert (
        (rows["item__kind"] == rows["similar__kind"]).all()
        and rows["similar__active"].all()
        and (rows["item_id"] != rows["similar_id"]).all()
    )
    post = Item.objects.filter(kind="post").first().external_id
    assert all(
        r["item"]["kind"] == "post" for r in reader.get(f"/api/items/{post}/similar/?kind=post").json()["results"]
    )
    assert reader.get("/api/items/no-such-item/similar/").status_code == 404


@pytest.mark.django_db
def test_a_failed_run_leaves_the_previous_run_in_service(shop, reader, monkeypatch):
    before = RecommenderRun.objects.get(is_active=True)
    customer = Customer.objects.order_by("external_id").first()
    url = f"/api/customers/{customer.external_id}/recommendations/"
    answer_before = reader.get(url).json()

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory while computing neighbours")

    monkeypatch.setattr(reco_services, "similar_rows", boom)  # after the suggestions were written
    run = pipeline.pipeline_execute(run=pipeline.pipeline_create(steps=["recommendations"]))
    assert run.status == "failed" and "out of memory" in run.error
    failed = RecommenderRun.objects.order_by("-started_at").first()
    assert failed.status == "failed" and not failed.is_active and "out of memory" in failed.error
    assert not Recommendation.objects.filter(run=failed).exists()  # its partial rows are gone
    assert RecommenderRun.objects.get(is_active=True) == before
    assert reader.get(url).json() == answer_before


@pytest.mark.django_db
def test_old_runs_are_pruned_and_shown_items_are_down_weighted(shop, settings):
    settings.RECOMMENDER_KEEP_RUNS = 2
    customer = Customer.objects.exclude(external_id=QUIET_ID).order_by("external_id")[3]
    top = selectors.recommendations_for(customer, kind="product", limit=3)
    # a campaign showed the top product three times and the customer ignored it
    reco_services.impressions_record(
        customer_ids=[customer.pk] * 3, item_ids=[top[0].item_id] * 3, source="campaign:test"
    )
    for _ in range(3):
        counts = reco_services.recommendations_compute()
        assert counts["status"] == "succeeded"
    runs = list(RecommenderRun.objects.order_by("-started_at"))
    assert len(runs) == 2 and runs[0].is_active and counts["pruned_runs"] >= 1
    assert set(Recommendation.objects.values_list("run_id", flat=True).distinct()) == {r.pk for r in runs}
    after = [r.item_id for r in selectors.recommendations_for(customer, kind="product", limit=20)]
    assert counts["sizes"]["recent_impressions"] == 1, counts["sizes"]
    assert top[0].item_id not in after[:1]
    assert RecommenderRun.objects.filter(is_active=True).count() == 1


@pytest.mark.django_db
def test_top_items_for_many_customers_at_once(shop):
    ids = list(Customer.objects.order_by("id").values_list("id", flat=True)[:50])
    frame = selectors.top_items_for(ids, kind="activity", limit=3)
    assert list(frame.columns) == ["customer_id", "item_id", "rank", "score", "reason", "reason_text"]
    assert set(frame["customer_id"]) == set(ids) and frame.groupby("customer_id").size().max() == 3
    assert set(frame["item_id"]) <= set(Item.objects.filter(kind="activity").values_list("id", flat=True))


@pytest.mark.django_db
def test_admin_shows_suggestions_on_the_customer_page_and_metrics_over_runs(shop, admin_client):
    customer = Customer.objects.order_by("external_id").first()
    page = admin_client.get(f"/admin/profiles/customer/{customer.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    rec = selectors.recommendations_for(customer, kind="product", limit=1)[0]
    reason = rec.reason_text[:1].upper() + rec.reason_text[1:]  # the customer page's cards start it as a sentence
    assert "Suggestions" in html and reason.replace("'", "&#x27;") in html
    runs = admin_client.get("/admin/recommendations/recommenderrun/")
    assert runs.status_code == 200 and b"metrics-chart" in runs.content and b"chart.umd.min.js" in runs.content
    run = RecommenderRun.objects.get(is_active=True)
    detail = admin_client.get(f"/admin/recommendations/recommenderrun/{run.pk}/change/")
    assert detail.status_code == 200 and b"NDCG@10" in detail.content
    assert "recommendations" in available_steps()


@pytest.mark.django_db
def test_evaluate_recommender_on_the_shops_own_events(shop, tmp_path):
    out = StringIO()
    call_command(
        "evaluate_recommender",
        "--dataset",
        "db",
        "--algorithms",
        "popularity,default",
        "--json",
        str(tmp_path / "db.json"),
        stdout=out,
    )
    assert "ndcg@10" in out.getvalue() and "default" in out.getvalue()
    assert (tmp_path / "db.json").exists()


@pytest.mark.datasets
def test_evaluate_recommender_prints_ndcg_for_movielens(datasets_dir, tmp_path):
    out = StringIO()
    call_command(
        "evaluate_recommender",
        "--dataset",
        "movielens",
        "--algorithms",
        "popularity,default",
        "--datasets-dir",
        str(datasets_dir),
        "--json",
        str(tmp_path / "ml.json"),
        stdout=out,
    )
    text = out.getvalue()
    assert "ndcg@10" in text and "ml-100k" in text
    import json

    result = json.loads((tmp_path / "ml.json").read_text())
    assert result["results"]["default"]["ndcg@10"] >= 0.14 > result["results"]["popularity"]["ndcg@10"]
