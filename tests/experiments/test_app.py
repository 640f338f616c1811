"""Experiments between recommender configurations, through the real services on a demo shop: the
assignment, each variant's suggestions served by the API, impressions recording the variant, the
attribution, the demo's simulated customers (a real difference found, an A/A test finding nothing), the
SRM check on a tampered split, stop and promote, the console and the API's access rules."""

from datetime import timedelta
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from accounts.models import AuditEntry
from experiments import routing, selectors, services, stats
from experiments.models import Assignment, Experiment, ExperimentStatus, Metric, Variant
from experiments.simulation import simulate
from pipeline import services as pipeline
from pipeline.models import PipelineRun
from profiles import services as profile_services
from profiles.demo import generate_shop, response_probabilities
from profiles.models import Customer, Event, Item
from recommendations.models import (
    Impression,
    Recommendation,
    RecommenderConfig,
    RecommenderRun,
)
from tests.factories import OperatorFactory, client_for, customer_client, demo_shop_empty

N_CUSTOMERS = 500


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    demo = generate_shop(seed=5, n_customers=N_CUSTOMERS, n_events=30_000, n_products=150, n_posts=40)
    with django_db_blocker.unblock():
        profile_services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
        profile_services.items_upsert(rows=demo.items)
        for chunk in demo.iter_events():
            profile_services.events_ingest(rows=chunk, create_unknown=False)
        run = pipeline.pipeline_create(steps=["profiles", "segments", "recommendations"])
        pipeline.pipeline_execute(run=run)
        assert run.status == "succeeded", run.error
    yield demo
    with django_db_blocker.unblock():
        demo_shop_empty()


@pytest.fixture(autouse=True)
def fresh_router():
    routing.forget_running()
    yield
    routing.forget_running()


def _popularity():
    return RecommenderConfig.objects.get_or_create(name="Popularity", defaults={"algorithm": "popularity"})[0]


def _experiment(a, b, *, metric=Metric.CONVERSION, baseline=0.3, name="", **fields) -> Experiment:
    experiment = Experiment.objects.create(
        name=name or f"{a} vs {b}", primary_metric=metric, baseline=baseline, mde_percent=10, **fields
    )
    Variant.objects.create(experiment=experiment, position=0, config=a, share=50)
    Variant.objects.create(experiment=experiment, position=1, config=b, share=50)
    return experiment


def _start(experiment, *, now=None):
    run = services.experiment_start(experiment, source="test", now=now)
    pipeline.pipeline_execute(run=run)  # what the queued task does
    assert run.status == "succeeded", run.error
    experiment.refresh_from_db()
    return run


@pytest.mark.django_db
def test_each_customer_gets_their_variants_suggestions_from_the_api(shop):
    default = RecommenderConfig.objects.get(is_default=True)
    experiment = _experiment(default, _popularity())
    main_run = RecommenderRun.objects.get(is_active=True, channel="")
    _start(experiment)

    # every customer enrolled, about half in each variant, exactly as the hash says (sticky)
    rows = pd.DataFrame(
        list(Assignment.objects.filter(experiment=experiment).values("customer_id", "variant__position"))
    )
    assert len(rows) == Customer.objects.count()
    expected = stats.assign(rows["customer_id"].to_numpy(), salt=experiment.salt, shares=[0.5, 0.5])
    assert (rows["variant__position"].to_numpy() == expected).all()
    assert abs((expected == 1).mean() - 0.5) < 4 * np.sqrt(0.25 / len(rows))

    # each variant has its own run in service on its channel; the shop's own run is untouched
    a, b = experiment.variants.order_by("position")
    assert RecommenderRun.objects.get(is_active=True, channel="") == main_run
    b_run = RecommenderRun.objects.get(is_active=True, channel=b.channel)
    assert b_run.config.name == "Popularity"
    assert set(Recommendation.objects.filter(run=b_run).values_list("customer_id", flat=True)) == set(
        rows.loc[rows["variant__position"] == 1, "customer_id"]
    )

    key = client_for(OperatorFactory(username="reader", permissions=["recommendations.view_recommendation"]))
    in_a = Customer.objects.get(pk=int(rows.loc[rows["variant__position"] == 0, "customer_id"].iloc[0]))
    in_b = Customer.objects.get(pk=int(rows.loc[rows["variant__position"] == 1, "customer_id"].iloc[0]))
    served_b = key.get(f"/api/customers/{in_b.external_id}/recommendations/", {"limit": 10}).json()
    assert served_b["run"] == b_run.pk
    # exactly B's list for this customer, not the shop's own
    shown = [r["item"]["external_id"] for r in served_b["results"]]

    def stored(run):
        rows = Recommendation.objects.filter(run=run, customer=in_b, kind="product").order_by("rank")[:10]
        return list(rows.values_list("item__external_id", flat=True))

    assert shown == stored(b_run) and len(shown) == 10
    assert shown != stored(main_run)
    served_a = key.get(f"/api/customers/{in_a.external_id}/recommendations/").json()
    assert served_a["run"] == RecommenderRun.objects.get(is_active=True, channel=a.channel).pk

    # the shop reports what it showed: the impressions record the variant's channel
    token_client = customer_client(in_b.external_id)
    answer = token_client.post(
        f"/api/customers/{in_b.external_id}/impressions/",
        {"kind": "product", "items": shown[:3], "source": "home"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["channel"] == b.channel
    assert list(Impression.objects.filter(customer=in_b).values_list("channel", flat=True)) == [b.channel] * 3
    bad = token_client.post(
        f"/api/customers/{in_b.external_id}/impressions/", {"items": ["no-such-item", shown[0]]}, format="json"
    )
    assert bad.status_code == 400 and "no-such-item" in bad.json()["detail"], bad.json()
    assert [e["field"] for e in bad.json()["errors"]] == ["items"]
    assert Impression.objects.filter(customer=in_b).count() == 3  # nothing of the bad batch
    assert (
        token_client.post(
            f"/api/customers/{in_a.external_id}/impressions/", {"items": shown[:1]}, format="json"
        ).status_code
        == 403
    )

    # the customer's variant, for the shop's analytics; a customer sees only their own
    mine = token_client.get(f"/api/customers/{in_b.external_id}/experiments/").json()
    assert [(e["experiment"], e["variant"], e["configuration"]) for e in mine["experiments"]] == [
        (experiment.pk, "B", "Popularity")
    ]
    assert token_client.get(f"/api/customers/{in_a.external_id}/experiments/").status_code == 403

    # the customer page says which variant they are in, and shows the suggestions they are served
    boss = _console(OperatorFactory(username="boss", is_superuser=True))
    page = boss.get(f"/admin/profiles/customer/{in_b.pk}/change/").content.decode()
    assert "Variant B: Popularity" in page and 'id="c360-experiment"' in page
    first_b = Recommendation.objects.filter(run=b_run, customer=in_b, kind="product", rank=1).get()
    assert escape(first_b.item.title) in page

    # stopped: the variants' runs leave service and everyone gets the shop's own suggestions again
    services.experiment_stop(experiment, source="test")
    assert not RecommenderRun.objects.filter(channel__startswith="experiment-").exists()
    routing.forget_running()
    assert key.get(f"/api/customers/{in_b.external_id}/recommendations/").json()["run"] == main_run.pk


@pytest.mark.django_db
def test_clicks_and_purchases_count_for_the_impression_of_the_same_item_before_them(shop):
    customer, other = Customer.objects.order_by("pk")[:2]
    shown, not_shown = Item.objects.filter(kind="product").order_by("pk")[:2]
    start = timezone.now() - timedelta(days=20)
    Impression.objects.create(customer=customer, item=shown, shown_at=start + timedelta(days=1), channel="x")
    Impression.objects.create(customer=other, item=shown, shown_at=start + timedelta(days=1), channel="x")
    at = start + timedelta(days=1)
    for who, item, etype, delay, amount in [
        (customer, shown, "click", timedelta(hours=1), None),  # counts
        (customer, shown, "purchase", timedelta(days=2), 30),  # counts (within 7 days)
        (customer, not_shown, "click", timedelta(hours=1), None),  # never shown: no
        (other, shown, "purchase", timedelta(days=9), 50),  # too late: no
        (other, shown, "click", -timedelta(hours=1), None),  # before the impression: no
    ]:
        Event.objects.create(customer=who, item=item, type=etype, occurred_at=at + delay, amount=amount)
    frame = selectors.customer_metrics(
        channels=["x"], start=start, end=start + timedelta(days=5), window_days=7
    ).set_index("customer_id")
    assert frame.loc[customer.pk, ["impressions", "clicks", "converted", "revenue"]].tolist() == [1, 1, 1, 30]
    assert frame.loc[other.pk, ["impressions", "clicks", "converted", "revenue"]].tolist() == [1, 0, 0, 0]


def _run_simulated(experiment, *, days=10, visitors=250, seed=3):
    now = timezone.now()
    start = now - timedelta(days=days)
    _start(experiment, now=start)
    simulate(
        days=days,
        visitors=visitors,
        start=start,
        seed=seed,
        on_day=lambda d, t, c: services.look_take(experiment, now=t + timedelta(days=1) - timedelta(seconds=1)),
    )
    return experiment.looks.order_by("-day").first()


@pytest.mark.slow
@pytest.mark.django_db
def test_the_demo_finds_the_better_recommender_and_the_winner_is_promoted(shop):
    item_based = RecommenderConfig.objects.get(algorithm="item_knn")
    experiment = _experiment(_popularity(), item_based)
    last = _run_simulated(experiment)
    assert last.verdict == stats.B_BETTER, last.analysis
    assert last.winner.config == item_based
    a, b = last.analysis["variants"]
    assert b["value"] > a["value"]
    assert not last.analysis["srm"]["mismatch"]

    winner = services.experiment_promote(experiment, source="test")
    assert winner.config == item_based
    assert RecommenderConfig.objects.get(is_default=True) == item_based
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED and experiment.winner == winner
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"experiment.started", "experiment.stopped", "experiment.promoted"} <= actions
    assert "recommender_config.made_default" in actions


@pytest.mark.slow
@pytest.mark.django_db
def test_an_aa_test_in_the_demo_names_no_winner(shop):
    default = RecommenderConfig.objects.get(is_default=True)
    experiment = _experiment(default, default)
    last = _run_simulated(experiment, seed=4)
    assert last.winner is None and last.verdict == stats.NO_DIFFERENCE_YET, last.analysis

    # a wave of visitors now (what an operator runs in the demo after starting in the console) counts too
    exposed = last.analysis["variants"][0]["impressions"] + last.analysis["variants"][1]["impressions"]
    call_command("simulate_demo_traffic", waves=1, visitors=100, seed=9, stdout=StringIO())
    today = experiment.looks.order_by("-day").first()
    assert sum(v["impressions"] for v in today.analysis["variants"]) == exposed + 100 * 10
    with pytest.raises(services.ExperimentError, match="has no winner"):
        services.experiment_promote(experiment, source="test")


@pytest.mark.django_db
def test_a_broken_split_is_flagged_and_names_no_winner(shop):
    default = RecommenderConfig.objects.get(is_default=True)
    experiment = _experiment(default, _popularity())
    _start(experiment)
    a, b = experiment.variants.order_by("position")
    # a bug sends a third of B's customers to A, and everyone sees suggestions
    moved = list(Assignment.objects.filter(variant=b).values_list("pk", flat=True))[::3]
    Assignment.objects.filter(pk__in=moved).update(variant=a)
    at = experiment.started_at + timedelta(hours=1)
    items = list(Item.objects.filter(kind="product").values_list("pk", flat=True)[:3])
    for customer_id, variant_id in Assignment.objects.filter(experiment=experiment).values_list(
        "customer_id", "variant_id"
    ):
        channel = Variant(pk=variant_id, experiment_id=experiment.pk).channel
        Impression.objects.bulk_create(
            [Impression(customer_id=customer_id, item_id=i, shown_at=at, channel=channel) for i in items]
        )
    look = services.look_take(experiment, now=at + timedelta(hours=1))
    assert look.verdict == stats.SAMPLE_RATIO_MISMATCH and look.winner is None
    assert look.analysis["srm"]["mismatch"]


def test_the_planted_truth_prefers_the_personas_categories():
    p_click, p_buy = response_probabilities(
        np.array(["loyal_big_spender", "loyal_big_spender", ""]),
        np.array(["Electronics", "Toys", "Electronics"]),
        np.ones(3),
    )
    assert p_click[0] > 4 * p_click[1] and p_click[1] == p_click[2]
    assert p_buy[0] > p_buy[1]


def _console(user) -> Client:
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_console_plans_starts_and_reports(shop):
    operator = _console(OperatorFactory(username="marketer", role="Marketing operator"))
    analyst_user = OperatorFactory(username="analyst", role="Analyst")
    analyst = _console(analyst_user)
    default = RecommenderConfig.objects.get(is_default=True)
    experiment = _experiment(default, _popularity())
    page = operator.get(f"/admin/experiments/experiment/{experiment.pk}/change/").content.decode()
    # the baseline was entered (30%): the sample is known, the duration not (no impressions reported yet)
    assert 'id="plan-sample"' in page and "No customers were shown suggestions in the last 28 days" in page
    assert analyst.post(f"/admin/experiments/experiment/{experiment.pk}/do/start/").status_code == 403
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.DRAFT
    answer = operator.post(f"/admin/experiments/experiment/{experiment.pk}/do/start/")
    assert answer.status_code == 302
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.RUNNING
    page = analyst.get(f"/admin/experiments/experiment/{experiment.pk}/change/").content.decode()
    assert "No customer has been shown a variant" in page and 'id="stop-experiment"' not in page
    report = client_for(analyst_user).get(f"/api/experiments/{experiment.pk}/report/")
    assert report.status_code == 200 and report.json()["status"] == "running"
    assert customer_client(Customer.objects.first().external_id).get("/api/experiments/").status_code == 403


@pytest.mark.django_db
def test_the_holdout_is_kept_out_of_every_experiment(shop, settings):
    settings.EXPERIMENTS_HOLDOUT_PERCENT = 20
    default = RecommenderConfig.objects.get(is_default=True)
    first, second = _experiment(default, _popularity()), _experiment(_popularity(), default, name="second")
    ids = np.fromiter(Customer.objects.values_list("pk", flat=True), dtype=np.int64)
    positions = [services.variant_of(e, ids, list(e.variants.order_by("position"))) for e in (first, second)]
    held_out = positions[0] < 0
    # the same customers are held out of both, about a fifth of them; the others are split by each salt
    assert (held_out == (positions[1] < 0)).all()
    assert abs(held_out.mean() - 0.2) < 4 * np.sqrt(0.16 / len(ids))
    recorded = services.assignments_record(
        first, ids, positions[0], list(first.variants.order_by("position")), now=timezone.now()
    )
    assert recorded == int((~held_out).sum())
    assert not Assignment.objects.filter(customer_id__in=ids[held_out].tolist()).exists()
    # enrolling again records nobody twice
    assert services.assignments_record(first, ids, positions[0], list(first.variants.all()), now=timezone.now()) == 0


@pytest.mark.django_db
def test_an_experiment_cannot_start_where_the_pipeline_has_no_experiments_step(settings):
    default = RecommenderConfig.objects.get(is_default=True)
    experiment = _experiment(default, _popularity())
    settings.PIPELINE_STEPS = [s for s in settings.PIPELINE_STEPS if not s.startswith("experiments.")]
    runs = PipelineRun.objects.count()
    with pytest.raises(services.ExperimentError, match="no experiments step"):
        services.experiment_start(experiment, source="test")
    experiment.refresh_from_db()
    assert experiment.status == "draft" and PipelineRun.objects.count() == runs
