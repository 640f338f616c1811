"""The profiles step's predictions (docs/profiles.md, "Predictions"): stored for every customer of the demo
shop, the prior for those who never bought, the last full run's parameters on an incremental run, no model
(and the step still succeeding) on a degenerate population, and nothing after the run's time counted."""

import pandas as pd
import pytest
from django.utils import timezone

from pipeline import figures
from pipeline import services as pipeline
from pipeline.models import Lease, PipelineRun, PipelineStep
from profiles import services
from profiles.demo import generate_shop
from profiles.models import Customer, Event, Item, Profile
from tests.factories import EventRow, ingest, key_client

N_CUSTOMERS = 600
N_EVENTS = 30_000


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A demo shop (six months of its personas' events) written once for the module."""
    demo = generate_shop(seed=11, n_customers=N_CUSTOMERS, n_events=N_EVENTS, n_products=150, n_posts=40)
    with django_db_blocker.unblock():
        services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
        services.items_upsert(rows=demo.items)
        for chunk in demo.iter_events():
            services.events_ingest(rows=chunk, create_unknown=False)
    yield demo
    with django_db_blocker.unblock():
        for model in (Profile, PipelineStep, PipelineRun, Lease, Event, Item, Customer):
            model.objects.all().delete()


def _run(**params):
    run = pipeline.pipeline_execute(
        run=pipeline.pipeline_create(steps=["profiles"]), step_params={"profiles": params} if params else None
    )
    assert run.status == "succeeded", run.error
    return run.step_runs.get()


def _profiles() -> pd.DataFrame:
    fields = [
        "customer_id",
        "orders_total",
        "lifecycle",
        "recency_days",
        "p_alive",
        "predicted_orders",
        "predicted_value",
        "churn_risk",
        "next_order_at",
        "prediction_basis",
        "prediction_horizon_days",
        "computed_at",
    ]
    return pd.DataFrame(list(Profile.objects.values(*fields))).set_index("customer_id")


@pytest.mark.django_db
def test_every_customer_of_the_demo_shop_gets_predictions_over_the_horizon(shop, settings):
    step = _run()
    p = _profiles()
    assert len(p) == N_CUSTOMERS
    bought = p["orders_total"] > 0
    assert bought.sum() > 100 and (~bought).sum() > 0  # the shop has buyers and browsers

    # buyers from the model, the never-bought from the population's prior; all over the horizon
    assert (p.loc[bought, "prediction_basis"] == "model").all()
    assert (p.loc[~bought, "prediction_basis"] == "prior").all()
    assert (p["prediction_horizon_days"] == settings.PREDICTION_HORIZON_DAYS).all()
    assert p["predicted_orders"].notna().all() and (p["predicted_orders"] >= 0).all()
    assert p["churn_risk"].between(0, 1).all()
    assert p.loc[bought, "p_alive"].between(0, 1).all() and p.loc[~bought, "p_alive"].isna().all()
    assert p["predicted_value"].notna().all() and (p["predicted_value"] >= 0).all()
    # the prior is one figure for everyone it covers, and no next order date is invented for them
    assert p.loc[~bought, "predicted_orders"].nunique() == 1 and p.loc[~bought, "next_order_at"].isna().all()
    # and it is below what the shop's best buyers are expected to spend: a "top 10% by predicted value"
    # audience is made of buyers, not of browsers who never ordered
    top = p["predicted_value"] >= p["predicted_value"].quantile(0.9)
    assert bought[top].all()
    # a next order date, where given, lies after the run's time
    dated = p["next_order_at"].notna()
    assert dated.any() and (p.loc[dated, "next_order_at"] > p.loc[dated, "computed_at"]).all()

    # what users care about: active buyers are expected to buy more, and are less at risk, than lapsed ones
    by_stage = p[bought].groupby("lifecycle")[["predicted_orders", "churn_risk"]].mean()
    assert by_stage.loc["active", "predicted_orders"] > by_stage.loc["lapsed", "predicted_orders"]
    assert by_stage.loc["active", "churn_risk"] < by_stage.loc["lapsed", "churn_risk"]

    # the run records the fitted parameters, the customers by basis and the time it took
    recorded = step.counts["predictions"]
    assert recorded["fitted"] is True and recorded["horizon_days"] == settings.PREDICTION_HORIZON_DAYS
    assert set(recorded["bgnbd"]) == {"r", "alpha", "a", "b", "buyers"} and recorded["bgnbd"]["buyers"] == bought.sum()
    assert recorded["gamma_gamma"]["q"] > 1
    assert recorded["basis"] == {"model": int(bought.sum()), "prior": int((~bought).sum())}
    assert recorded["seconds"] >= 0


@pytest.mark.django_db
def test_an_incremental_run_predicts_with_the_last_full_runs_parameters(shop):
    full = _run()
    someone = Profile.objects.filter(orders_total__gte=2).order_by("customer_id").first()
    before = Profile.objects.get(pk=someone.pk)
    customer = Customer.objects.get(pk=someone.customer_id)
    ingest(
        events=[
            EventRow(
                external_id="pred-new-order",
                customer=customer.external_id,
                item=Item.objects.filter(kind="product").first().external_id,
                purchase=True,
                amount=30.0,
                occurred_at=timezone.now(),
                context={"order_id": "pred-new-order"},
            )
        ]
    )

    step = _run(incremental=True)

    recorded = step.counts["predictions"]
    assert step.counts["incremental"] is True and recorded["fitted"] is False
    assert recorded["bgnbd"] == full.counts["predictions"]["bgnbd"]
    assert recorded["basis"] == {"model": 1}
    after = Profile.objects.get(pk=someone.pk)
    # an order just now: more expected orders, more likely still a buyer
    assert after.predicted_orders > before.predicted_orders
    assert after.p_alive >= before.p_alive and after.churn_risk < before.churn_risk


@pytest.mark.django_db
def test_the_run_page_tells_the_predictions_in_words(shop):
    step = _run()
    recorded = step.counts["predictions"]

    groups = figures.step_figures(step)
    group = next(g for g in groups if g["title"] == "Predictions of repeat buying")
    lines = [f"{row['label']} {row['value']}".strip() for row in group["rows"]]

    buyers, repeat = recorded["bgnbd"]["buyers"], recorded["gamma_gamma"]["buyers"]
    assert f"Fitting the model BG/NBD on {buyers:,} buyers and Gamma-Gamma on {repeat:,} repeat buyers" in lines
    assert "Horizon (days) 90" in lines and "Fitted in this run yes" in lines
    assert f"Model {recorded['basis']['model']:,}" in lines and f"Prior {recorded['basis']['prior']:,}" in lines
    assert "BG/NBD parameters (orders)" in lines and any(line.startswith("alpha ") for line in lines)
    assert any(line.startswith("Time ") for line in lines)
    assert not any("{" in line or "reason_code" in line for line in lines)


@pytest.mark.django_db
def test_the_profile_api_returns_the_predictions_with_their_horizon(shop):
    _run()
    api = key_client("manage_customers")
    buyer = Profile.objects.filter(prediction_basis="model").select_related("customer").order_by("customer_id").first()
    never = Profile.objects.filter(prediction_basis="prior").select_related("customer").order_by("customer_id").first()

    body = api.get(f"/api/customers/{buyer.customer.external_id}/profile/").json()
    assert body["prediction_basis"] == "model" and body["prediction_horizon_days"] == 90
    assert body["p_alive"] == pytest.approx(buyer.p_alive) and body["churn_risk"] == pytest.approx(buyer.churn_risk)
    assert body["predicted_orders"] == pytest.approx(buyer.predicted_orders)
    assert body["predicted_value"] == pytest.approx(buyer.predicted_value)
    # the category affinity: each candidate category's probability, as stored
    assert body["affinity"] and body["affinity"] == pytest.approx(buyer.affinity)
    assert all(0 <= v <= 1 for v in body["affinity"].values())

    body = api.get(f"/api/customers/{never.customer.external_id}/profile/").json()
    assert body["prediction_basis"] == "prior" and body["p_alive"] is None and body["next_order_at"] is None
    assert body["predicted_orders"] == pytest.approx(never.predicted_orders)
