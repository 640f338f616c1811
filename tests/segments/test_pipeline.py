"""The profiles and segments steps on a demo shop, as the pipeline, the shell and the schedule run them."""

from datetime import timedelta
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from sklearn.metrics import adjusted_rand_score

from pipeline import services as pipeline
from pipeline.models import Lease, PipelineRun, PipelineStep
from profiles import services
from profiles.demo import generate_shop
from profiles.features import catalogue_price_cuts, compute_features, score_rfm
from profiles.models import Customer, Profile
from segments.models import ClusteringRun, Membership, Segment, SegmentSize
from tests.factories import demo_shop_empty

N_CUSTOMERS = 800
N_EVENTS = 60_000


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A demo shop written once for the module through the ingestion services."""
    demo = generate_shop(
        seed=7, n_customers=N_CUSTOMERS, n_events=N_EVENTS, n_products=200, n_posts=80, chunk_size=30_000
    )
    with django_db_blocker.unblock():
        services.customers_upsert(rows=demo.customers.drop(columns=["persona"]))
        services.items_upsert(rows=demo.items)
        for chunk in demo.iter_events():
            services.events_ingest(rows=chunk, create_unknown=False)
    yield demo
    with django_db_blocker.unblock():
        demo_shop_empty()


def _run(*steps, **params):
    run = pipeline.pipeline_create(steps=list(steps))
    return pipeline.pipeline_execute(run=run, step_params=params or None)


@pytest.mark.django_db
def test_profiles_match_an_independent_computation_from_the_shop(shop):
    run = _run("profiles")
    assert run.status == "succeeded", run.error
    step = run.step_runs.get()
    assert step.counts["profiles_written"] == N_CUSTOMERS and step.counts["events_read"] == N_EVENTS
    assert step.duration_s > 0

    # The same features computed straight from the generator's frames, without the database.
    events = shop.events()
    items = shop.items.set_index(["kind", "external_id"])
    keys = pd.MultiIndex.from_arrays([events["item_kind"].fillna(""), events["item"].fillna("")])
    code = pd.Series(np.arange(len(shop.customers)), index=shop.customers["external_id"])
    events = events.assign(
        customer_id=events["customer"].map(code).astype("int64"),
        category=items["category"].reindex(keys).to_numpy(),
        item_price=items["price"].reindex(keys).to_numpy(),
        order_id=events["context"].map(lambda c: (c or {}).get("order_id")),
    )
    cuts = catalogue_price_cuts(shop.items.loc[shop.items["kind"] == "product", "price"].dropna().round(2))
    expected = score_rfm(
        compute_features(
            events, now=step.started_at, price_cuts=cuts, weights={**settings.EVENT_WEIGHTS, "rating": "explicit"}
        )
    )
    expected.index = code.index[expected.index]
    stored = pd.DataFrame.from_records(
        Profile.objects.values(
            "customer__external_id", "frequency", "monetary", "rfm_code", "lifecycle", "top_category", "recency_days"
        )
    ).set_index("customer__external_id")
    assert len(stored) == N_CUSTOMERS
    joined = stored.join(expected, rsuffix="_exp")
    assert (joined["frequency"] == joined["frequency_exp"]).all()
    assert np.allclose(joined["monetary"], joined["monetary_exp"], atol=0.01)
    assert (joined["lifecycle"] == joined["lifecycle_exp"]).all()
    assert (joined["rfm_code"] == joined["rfm_code_exp"]).all()
    expected_top = joined["top_categories"].map(lambda cats: cats[0] if len(cats) else "")
    assert (joined["top_category"] == expected_top).all()
    # recency is measured from the run's own clock; a second or two apart at most
    both = joined["recency_days"].notna()
    assert np.allclose(joined.loc[both, "recency_days"], joined.loc[both, "recency_days_exp"], atol=0.01)


@pytest.mark.django_db
def test_clustering_recovers_the_planted_personas_and_keeps_segment_identities(shop):
    run = _run("profiles", "segments")
    assert run.status == "succeeded", run.error
    clustering = ClusteringRun.objects.get()
    assert clustering.status == "succeeded" and 4 <= clustering.chosen_k <= 7
    assert len(clustering.inertia) == len(clustering.ks) == 9  # k = 2..10 tried
    members = pd.DataFrame.from_records(Membership.objects.values("customer__external_id", "segment_id"))
    persona = shop.customers.set_index("external_id")["persona"]
    assert len(members) == N_CUSTOMERS  # every customer in exactly one clustering segment
    ari = adjusted_rand_score(persona.loc[members["customer__external_id"]], members["segment_id"])
    assert ari >= 0.8, f"ARI {ari:.3f}"
    names = set(Segment.objects.filter(kind="cluster").values_list("name", flat=True))
    assert any("Community" in n for n in names) and any("New visitors" in n for n in names)

    # An operator renames a segment; the next run matches clusters to segments by centroid.
    before = dict(Segment.objects.filter(kind="cluster").values_list("pk", "size"))
    seg = Segment.objects.filter(kind="cluster").order_by("-size").first()
    seg.name, seg.name_locked = "Our regulars", True
    seg.save()
    assert _run("segments").status == "succeeded"
    after = dict(Segment.objects.filter(kind="cluster", active=True).values_list("pk", "size"))
    assert after == before  # same segments, same members
    assert Segment.objects.get(pk=seg.pk).name == "Our regulars"
    assert SegmentSize.objects.filter(segment=seg).count() == 2


@pytest.mark.django_db
def test_incremental_profiles_recompute_only_customers_with_new_events(shop):
    _run("profiles")
    first = dict(Profile.objects.values_list("customer__external_id", "computed_at"))
    now = timezone.now()
    services.events_ingest(
        rows=pd.DataFrame(
            [
                {
                    "external_id": "inc-1",
                    "customer": "c000003",
                    "item": shop.items["external_id"].iloc[0],
                    "type": "purchase",
                    "value": 1,
                    "amount": 10.0,
                    "occurred_at": now - timedelta(minutes=5),
                    "context": {"order_id": "inc-o1"},
                },
            ]
        )
    )
    run = _run("profiles", profiles={"incremental": True})
    step = run.step_runs.get()
    assert step.counts["incremental"] is True and step.counts["customers"] == 1
    second = dict(Profile.objects.values_list("customer__external_id", "computed_at"))
    changed = [c for c in first if first[c] != second[c]]
    assert changed == ["c000003"]
    assert Profile.objects.get(customer__external_id="c000003").recency_days < 0.01


@pytest.mark.django_db
def test_a_second_pipeline_cannot_start_while_one_holds_the_lease(shop):
    lease = pipeline.acquire_lease()
    assert lease is not None
    assert pipeline.acquire_lease() is None
    run = pipeline.pipeline_create(steps=["profiles"])
    with pytest.raises(pipeline.PipelineBusy):
        pipeline.pipeline_execute(run=run)
    run.refresh_from_db()
    assert run.status == "skipped" and "in progress" in run.error
    # a crashed holder's lease lapses
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _run("profiles").status == "succeeded"


@pytest.mark.django_db
def test_a_stale_profiles_run_does_not_overwrite_a_newer_one(shop):
    older = PipelineStep.objects.create(
        name="profiles", status="running", started_at=timezone.now() - timedelta(hours=1)
    )
    _run("profiles")  # a newer run that succeeds
    stamp = Profile.objects.order_by("customer_id").values_list("computed_at", flat=True).first()
    counts = services.profiles_compute(step=older, now=timezone.now())
    assert counts["profiles_written"] == 0
    assert Profile.objects.order_by("customer_id").values_list("computed_at", flat=True).first() == stamp


@pytest.mark.django_db
def test_a_failing_step_is_recorded_and_stops_the_ones_after_it(shop, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "profiles_compute", boom)
    run = _run("profiles", "segments")
    assert run.status == "failed" and "disk full" in run.error
    steps = list(run.step_runs.values_list("name", "status"))
    assert steps == [("profiles", "failed")]
    assert "RuntimeError: disk full" in run.step_runs.get().error
    assert Lease.objects.count() == 0  # released


@pytest.mark.django_db
def test_recompute_command_and_scheduled_task(shop):
    out = StringIO()
    call_command("recompute", "--steps", "segments,profiles", "--no-progress", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert text.index("profiles: succeeded") < text.index("segments: succeeded")
    with pytest.raises(CommandError, match="unknown step"):
        call_command("recompute", "--steps", "profiles,astrology", stdout=StringIO())

    from django.conf import settings

    from pipeline.tasks import pipeline_scheduled

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["pipeline-nightly"]["task"] == "profiles.tasks.pipeline_scheduled"
    assert schedule["profiles-incremental"]["kwargs"] == {"steps": ["profiles", "segments"], "incremental": True}
    result = pipeline_scheduled.delay(**schedule["profiles-incremental"]["kwargs"]).get()
    assert result["status"] == "succeeded"
    scheduled = PipelineRun.objects.order_by("-pk").first()
    assert scheduled.trigger == "schedule" and scheduled.steps == ["profiles", "segments"]
    # it built on the command's run: nobody had new events, so nobody was placed or clustered again
    clustering = scheduled.step_runs.get(name="segments").counts["clustering"]
    assert clustering["incremental"] is True and clustering["customers"] == 0
    assert ClusteringRun.objects.filter(status="succeeded").count() == 1


def _members(kind: str) -> pd.DataFrame:
    rows = Membership.objects.filter(segment__kind=kind).values("segment_id", "customer_id", "since")
    return pd.DataFrame.from_records(rows, columns=["segment_id", "customer_id", "since"])


@pytest.mark.django_db
def test_an_incremental_segments_run_places_only_the_changed_customers_as_the_clustering_would(shop, monkeypatch):
    """The incremental segments step: the customers whose profiles an incremental profiles run
    changed are placed in the nearest segment of the latest clustering, in that clustering's own
    scaling, and the rule segments end as a full refresh would leave them; nobody else moves."""
    from segments.clustering import assign_nearest
    from segments.rules import rule_queryset
    from segments.services import PROFILE_COLUMNS

    assert _run("profiles", "segments").status == "succeeded"
    clustering = ClusteringRun.objects.get()
    # The stored assignment model reproduces the clustering: every customer's nearest centre is their segment.
    profiles = pd.DataFrame.from_records(Profile.objects.values(*PROFILE_COLUMNS)).set_index("customer_id")
    segment_of = {c["cluster"]: c["segment"] for c in clustering.centroids}
    placed = pd.Series(assign_nearest(profiles, clustering.assignment), index=profiles.index).map(segment_of)
    clusters = _members("cluster").set_index("customer_id")
    assert (placed.sort_index() == clusters["segment_id"].sort_index()).all()

    biggest = Segment.objects.filter(kind="cluster").order_by("-size").first()
    category = shop.items["category"].dropna().iloc[0]
    rules = {
        "big spenders": {"field": "monetary", "op": ">=", "value": 200},
        "ever bought": {"event": {"type": "purchase"}},
        "biggest cluster, bought": {"all": [{"segment": biggest.pk}, {"event": {"type": "purchase"}}]},
        "bought this week": {"event": {"type": "purchase", "within_days": 7}},  # time moves it
        "emailable buyers": {"all": [{"consent": "email"}, {"event": {"type": "purchase"}}]},
        "top spenders": {"top": {"field": "monetary", "percent": 10}},  # everyone moves it: in full
        "bought in a category": {"event": {"type": "purchase", "category": category}},  # items move: in full
    }
    for name, rule in rules.items():
        Segment.objects.create(name=name, kind="rule", rule=rule)
    assert _run("segments").status == "succeeded"  # a full run: rule segments filled, clustering run 2
    clustering = ClusteringRun.objects.filter(status="succeeded").order_by("-started_at").first()
    before = _members("cluster")

    # Ten customers of the segment that spends least come back and buy a great deal; a new customer too.
    cheapest = min(Segment.objects.filter(kind="cluster", active=True), key=lambda seg: seg.centroid["monetary"])
    quiet = list(
        Membership.objects.filter(segment=cheapest)
        .order_by("customer_id")
        .values_list("customer__external_id", flat=True)[:10]
    )
    now = timezone.now()
    rows = [
        {
            "external_id": f"back-{who}-{i}",
            "customer": who,
            "item": shop.items["external_id"].iloc[i],
            "type": "purchase",
            "value": 1,
            "amount": 150.0,
            "occurred_at": now - timedelta(hours=i + 1),
            "context": {"order_id": f"back-{who}-{i}"},
        }
        for who in [*quiet, "newcomer"]
        for i in range(6)
    ]
    services.events_ingest(rows=pd.DataFrame(rows))
    # A buyer who did nothing new agrees to emails (as the customers' API records it).
    buyer = Membership.objects.filter(segment__name="ever bought").exclude(customer__consent_email=True)
    buyer = buyer.exclude(customer__external_id__in=quiet).values_list("customer_id", flat=True).first()
    Customer.objects.filter(pk=buyer).update(consent_email=True, consent_updated_at=timezone.now())
    # The incremental run comes three days later: purchases of 4 to 7 days before leave "this week".
    later = timezone.now() + timedelta(days=3)
    monkeypatch.setattr("segments.services.timezone.now", lambda: later)
    week_before = set(Membership.objects.filter(segment__name="bought this week").values_list("customer_id", flat=True))
    run = _run("profiles", "segments", profiles={"incremental": True}, segments={"incremental": True})
    assert run.status == "succeeded", run.error
    counts = run.step_runs.get(name="segments").counts
    placed_counts = counts["clustering"]
    assert placed_counts["incremental"] is True and placed_counts["clustering_run"] == clustering.pk
    assert placed_counts["customers"] == len(quiet) + 1 and placed_counts["new_members"] == 1
    assert ClusteringRun.objects.count() == 2  # nobody was clustered again

    after = _members("cluster")
    changed_ids = set(
        Profile.objects.filter(customer__external_id__in=[*quiet, "newcomer"]).values_list("customer_id", flat=True)
    )
    # Everyone else kept their segment and their `since`.
    kept = before[~before["customer_id"].isin(changed_ids)].sort_values("customer_id").reset_index(drop=True)
    assert kept.equals(after[~after["customer_id"].isin(changed_ids)].sort_values("customer_id").reset_index(drop=True))
    # The changed customers are where the latest clustering's centres put their new profiles.
    changed = pd.DataFrame.from_records(Profile.objects.filter(customer_id__in=changed_ids).values(*PROFILE_COLUMNS))
    changed = changed.set_index("customer_id")
    segment_of = {c["cluster"]: c["segment"] for c in clustering.centroids}
    expected = pd.Series(assign_nearest(changed, clustering.assignment), index=changed.index).map(segment_of)
    got = after[after["customer_id"].isin(changed_ids)].set_index("customer_id")["segment_id"]
    assert (got.sort_index() == expected.sort_index()).all()
    previous = before.set_index("customer_id")["segment_id"]
    returning = expected[expected.index.isin(previous.index)]
    assert placed_counts["moved"] == int((returning != previous.reindex(returning.index)).sum())
    assert placed_counts["moved"] >= 1  # big buyers left the segment that spends least
    assert placed_counts["stayed"] + placed_counts["moved"] + placed_counts["new_members"] == len(changed_ids)
    # Segment sizes are their members.
    for seg in Segment.objects.filter(kind="cluster", active=True):
        assert seg.size == Membership.objects.filter(segment=seg).count()

    # Rule segments end as a full refresh leaves them; each was evaluated for a few customers only
    # (the changed ones, and for the time window those whose purchases left it since).
    few = counts["rules"]["refreshed_for_a_few"]
    assert set(few) == set(rules) - {"top spenders", "bought in a category"}, few
    # the changed customers (and the buyer whose consent changed, and for the week those whose
    # purchases were 4 to 7 days old): nowhere near everyone
    assert few.pop("bought this week") < N_CUSTOMERS / 2 and max(few.values()) <= len(quiet) + 2, few
    at = run.step_runs.get(name="segments").started_at
    for seg in Segment.objects.filter(kind="rule"):
        members = set(Membership.objects.filter(segment=seg).values_list("customer_id", flat=True))
        audience = set(rule_queryset(seg.rule, now=later).values_list("pk", flat=True))
        assert members == audience, seg.name
        assert seg.size == len(members) and seg.refreshed_at >= at
    newcomer = Profile.objects.get(customer__external_id="newcomer").customer_id
    assert Membership.objects.filter(segment__name="ever bought", customer_id=newcomer).exists()
    assert Membership.objects.filter(segment__name="emailable buyers", customer_id=buyer).exists()
    week_after = set(Membership.objects.filter(segment__name="bought this week").values_list("customer_id", flat=True))
    assert week_before - week_after  # some customers' last purchases left the window
    assert changed_ids <= week_after


@pytest.mark.django_db
def test_an_incremental_segments_run_clusters_everyone_when_every_profile_was_computed_again(shop):
    assert _run("profiles", "segments").status == "succeeded"
    assert _run("profiles").status == "succeeded"  # a full profiles run: everyone may have changed
    run = _run("segments", segments={"incremental": True})
    assert run.status == "succeeded", run.error
    counts = run.step_runs.get().counts["clustering"]
    assert counts["incremental_requested"] is True
    assert counts["full_because"] == "every profile was computed again since the last segments run"
    assert ClusteringRun.objects.count() == 2 and counts["customers"] == N_CUSTOMERS
