"""The recomputation pages as operators read them: the runs list in words, a run's page with its steps'
figures as tables (no JSON), and the progress view the page polls while a run goes on."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from common import display
from pipeline import services as pipeline
from pipeline.models import PipelineRun, PipelineStep, RunStatus
from profiles import services
from profiles.demo import generate_shop
from tests.factories import ANALYST, MARKETING_OPERATOR, OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop_run():
    """A small demo shop, recomputed by a full pipeline run started by an operator."""
    demo = generate_shop(seed=5, n_customers=150, n_events=6_000, n_products=60, n_posts=20, chunk_size=6_000)
    services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
    services.items_upsert(rows=demo.items)
    for chunk in demo.iter_events():
        services.events_ingest(rows=chunk, create_unknown=False)
    starter = OperatorFactory(username="marketer", role=MARKETING_OPERATOR)
    run = pipeline.pipeline_start(trigger="admin", user=starter, steps=["profiles", "segments", "recommendations"])
    pipeline.pipeline_execute(run=run)
    assert run.status == "succeeded", run.error
    return run


@pytest.fixture
def analyst_client(client):
    client.force_login(OperatorFactory(username="ana", role=ANALYST))
    return client


def _text(response) -> str:
    """The page's visible text, roughly: tags out, whitespace collapsed."""
    html = response.content.decode()
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _running_run() -> PipelineRun:
    """A run in its first step, 40,000 of 120,000 customers through."""
    now = timezone.now()
    run = PipelineRun.objects.create(
        steps=["profiles", "segments", "recommendations"],
        trigger="schedule",
        status=RunStatus.RUNNING,
        started_at=now - timedelta(seconds=75),
    )
    PipelineStep.objects.create(
        pipeline=run,
        name="profiles",
        status=RunStatus.RUNNING,
        progress=1 / 3,
        message="40,000 of 120,000 customers",
        started_at=now - timedelta(seconds=75),
    )
    return run


def test_a_finished_run_page_shows_each_steps_figures_as_tables_in_words(analyst_client, shop_run):
    response = analyst_client.get(reverse("admin:pipeline_pipelinerun_change", args=[shop_run.pk]))
    assert response.status_code == 200
    text = _text(response)
    steps = {s.name: s for s in shop_run.step_runs.all()}
    profiles, segments, reco = steps["profiles"].counts, steps["segments"].counts, steps["recommendations"].counts

    assert f"Recomputation #{shop_run.pk}" in text
    assert "Succeeded" in text and "Profiles → Segments → Recommendations" in text
    assert "marketer (in the admin)" in text
    # profiles: customers computed, events read, lifecycle, time
    assert f"Events read {display.number(profiles['events_read'])}" in text
    assert f"Profiles written {display.number(profiles['profiles_written'])}" in text
    assert "Customers by lifecycle stage" in text
    assert f"Total {display.duration(profiles['seconds']['total'])}" in text
    # segments: k chosen, silhouette to three decimals, sizes
    clustering = segments["clustering"]
    assert f"Number of segments chosen (k) {clustering['chosen_k']}" in text
    assert f"{clustering['silhouette']:.3f}" in text
    assert ", ".join(f"{n:,}" for n in clustering["sizes"]) in text
    assert "Clustering run #" in text
    # recommendations: the model and its parameters a row each, metrics as numbers, a link to the run
    assert "Model PureSVD" in text
    assert f"Latent factors {reco['params']['model']['factors']}" in text
    assert "Suggestions per customer" in text
    metrics = reco["metrics"]["product"]
    assert "NDCG@10" in text and f"{metrics['ndcg@10']:.3f}" in text
    assert display.percent(metrics["coverage@10"]) in text
    assert f"Recommender run #{reco['run']}" in text
    # no JSON on the page, and the raw block is for administrators only
    assert '{"' not in text and "&quot;" not in text
    assert "Raw data" not in text
    # the run is over: the page does not poll
    assert '"active": false' in response.content.decode()


def test_administrators_also_get_the_raw_data_collapsed(client, shop_run):
    client.force_login(UserFactory(username="root", superuser=True))
    text = _text(client.get(reverse("admin:pipeline_pipelinerun_change", args=[shop_run.pk])))
    assert "Raw data (administrators)" in text


def test_the_progress_view_tells_the_status_and_each_steps_progress_in_words(analyst_client):
    run = _running_run()
    response = analyst_client.get(reverse("admin:pipeline_pipelinerun_progress", args=[run.pk]))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    data = response.json()
    assert data["status"] == "running" and data["status_label"] == "Running" and data["active"] is True
    assert data["took"].startswith("running for 1 min")
    profiles, segments, reco = data["steps"]
    assert profiles["text"] == "Profiles — 40,000 of 120,000 customers (33%)"
    assert profiles["percent"] == 33 and profiles["status_label"] == "Running"
    assert re.fullmatch(r"1 min 1\d s", profiles["took"])  # 75 s ago, give or take a slow machine
    assert segments["status"] == "waiting" and segments["text"] == "Segments — waiting for the steps before it"
    assert reco["figures"] == [] and data["has_figures"] is False

    # the step goes on, then the run ends: the same view says so
    PipelineStep.objects.filter(pipeline=run).update(progress=0.8, message="120,000 of 120,000 customers")
    assert analyst_client.get(f"/admin/pipeline/pipelinerun/{run.pk}/progress/").json()["steps"][0]["percent"] == 80
    PipelineStep.objects.filter(pipeline=run).update(
        status=RunStatus.FAILED, error="MemoryError: out of memory\ntraceback...", duration_s=80
    )
    PipelineRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
    data = analyst_client.get(f"/admin/pipeline/pipelinerun/{run.pk}/progress/").json()
    assert data["active"] is False and data["status_label"] == "Failed"
    assert data["steps"][0]["text"] == "Profiles — failed: MemoryError: out of memory"
    assert data["steps"][0]["took"] == "1 min 20 s"


def test_the_progress_view_returns_a_finished_steps_figures(analyst_client, shop_run):
    data = analyst_client.get(reverse("admin:pipeline_pipelinerun_progress", args=[shop_run.pk])).json()
    profiles = data["steps"][0]
    labels = [row["label"] for group in profiles["figures"] for row in group["rows"]]
    assert "Events read" in labels and "Customers" in labels
    quality = next(g for g in data["steps"][2]["figures"] if g["title"] == "Offline quality (holdout)")
    assert quality["columns"][0] == "Products" and quality["rows"][0]["label"].endswith("@10")


def test_the_progress_view_needs_the_view_permission(client):
    run = _running_run()
    url = reverse("admin:pipeline_pipelinerun_progress", args=[run.pk])
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(OperatorFactory(username="nobody"))  # staff, no permission
    response = client.get(url)
    assert response.status_code == 403 and "running" not in response.content.decode()
    client.force_login(OperatorFactory(username="viewer", permissions=["pipeline.view_pipelinerun"]))
    assert client.get(url).json()["status"] == "running"
    assert client.get(reverse("admin:pipeline_pipelinerun_progress", args=[run.pk + 99])).status_code == 404


def test_a_running_run_page_follows_it_through_its_static_script(analyst_client):
    run = _running_run()
    response = analyst_client.get(reverse("admin:pipeline_pipelinerun_change", args=[run.pk]))
    html = response.content.decode()
    assert "marketing/js/pipeline-run.js" in html and 'http-equiv="refresh"' not in html
    assert f'"url": "/admin/pipeline/pipelinerun/{run.pk}/progress/"' in html and '"active": true' in html
    text = _text(response)
    assert "Profiles — 40,000 of 120,000 customers (33%)" in text and "This page follows the run" in text
    assert "The figures of each step appear here when it ends." in text


def test_the_runs_list_reads_in_words(analyst_client):
    now = timezone.now()
    starter = OperatorFactory(username="marketer")
    PipelineRun.objects.create(
        steps=["profiles", "segments"],
        trigger="admin",
        requested_by=starter,
        status=RunStatus.SUCCEEDED,
        created_at=now - timedelta(minutes=3),
        started_at=now - timedelta(minutes=3),
        finished_at=now - timedelta(minutes=3) + timedelta(seconds=135),
    )
    PipelineRun.objects.create(steps=["profiles"], trigger="schedule", status=RunStatus.QUEUED)
    text = _text(analyst_client.get(reverse("admin:pipeline_pipelinerun_changelist")))
    assert "Recomputations" in text
    assert "took 2 min 15 s" in text
    assert display.when(now - timedelta(minutes=3)) in text and "today" in text
    assert "Profiles → Segments" in text and "marketer (in the admin)" in text
    assert "Succeeded" in text and "Queued" in text and "The schedule" in text


def test_when_says_today_and_yesterday():
    now = timezone.now()
    local = timezone.localtime(now)
    assert display.when(now) == f"today {local:%H:%M}"
    assert display.when(now - timedelta(days=1)).startswith("yesterday ")
    assert display.when(now - timedelta(days=400)).endswith(f"{timezone.localtime(now - timedelta(days=400)):%Y %H:%M}")
    assert display.when(None) == display.MISSING


def test_a_recommender_run_page_shows_parameters_and_metrics_as_tables(analyst_client, shop_run):
    from recommendations.models import RecommenderRun

    reco = RecommenderRun.objects.get(step__pipeline=shop_run)
    response = analyst_client.get(reverse("admin:recommendations_recommenderrun_change", args=[reco.pk]))
    text = _text(response)
    assert f"Recommender run #{reco.pk}" in text and "Succeeded" in text and "PureSVD" in text
    assert f"Recomputation #{shop_run.pk}" in text
    # parameters one row each, in words
    assert f"Latent factors {reco.params['model']['factors']}" in text
    assert f"Suggestions per customer {reco.params['top_n']}" in text
    assert "Weights of events" in text and "Add to cart" in text
    assert "item-kNN (cosine similarity)" in text
    # metrics: a column per kind and model, scores to three decimals, coverage as a percentage
    assert "Products, default model" in text and "Products, popularity baseline" in text
    product = reco.metrics["product"]["default"]
    assert f"{product['ndcg@10']:.3f}" in text and display.percent(product["coverage@10"]) in text
    assert f"Suggestions written {display.number(reco.sizes['recommendations'])}" in text
    assert f"Total {display.duration(reco.durations['total'])}" in text
    assert '{"' not in text and "Error" not in text

    listing = _text(analyst_client.get(reverse("admin:recommendations_recommenderrun_changelist")))
    assert f"Recommender run #{reco.pk}" in listing and f"{reco.ndcg_at_10:.3f}" in listing
    assert display.percent(reco.coverage) in listing and display.number(reco.n_recommendations) in listing


def test_a_clustering_run_page_shows_how_k_was_chosen_in_words(analyst_client, shop_run):
    from segments.models import ClusteringRun

    clustering = ClusteringRun.objects.get(step__pipeline=shop_run)
    text = _text(analyst_client.get(reverse("admin:segments_clusteringrun_change", args=[clustering.pk])))
    assert f"Clustering run #{clustering.pk}" in text and "k-means" in text
    assert f"Number of segments chosen (k) {clustering.chosen_k}" in text
    assert f"Customers clustered {display.number(clustering.n_customers)}" in text
    assert clustering.choice_reason in text
    assert "Days since last purchase" in text and "Spend" in text
    biggest = max(clustering.centroids, key=lambda c: c["size"])
    assert biggest["name"] in text and display.money(biggest["centroid"]["monetary"]) in text
    assert '{"' not in text and "recency_days" not in text

    listing = _text(analyst_client.get(reverse("admin:segments_clusteringrun_changelist")))
    assert f"Clustering run #{clustering.pk}" in listing and "k-means" in listing


def test_names_operators_wrote_are_text_on_the_run_page(analyst_client):
    evil = '<img src=x onerror="alert(1)">'
    run = _running_run()
    PipelineStep.objects.create(
        pipeline=run,
        name="segments",
        status=RunStatus.SUCCEEDED,
        progress=1.0,
        message=f"rule segment {evil}",
        counts={"rules": {"rule_segments": 1, "sizes": {evil: 12}, "errors": {}}},
        duration_s=2,
    )
    html = analyst_client.get(reverse("admin:pipeline_pipelinerun_change", args=[run.pk])).content.decode()
    assert evil not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    data = analyst_client.get(reverse("admin:pipeline_pipelinerun_progress", args=[run.pk])).json()
    rules = next(g for g in data["steps"][1]["figures"] if g["title"] == "Rule segments")
    assert {"label": evil, "value": "12", "depth": 1, "url": ""} in rules["rows"]  # the script writes it as text
    assert data["steps"][1]["text"] == f"Segments — done: rule segment {evil}"
