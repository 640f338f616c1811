"""An experiment in the demo shop that can answer: customers respond to what they are shown with their
planted personas' tastes (experiments/simulation.py), so the report finds the better recommender.

    manage.py seed_demo_experiment                 # default vs popularity, 14 days, a look a day
    manage.py seed_demo_experiment --aa            # an A/A test: the default against itself
    manage.py seed_demo_experiment --if-none       # only when the shop has no experiment yet (make run)
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from experiments import services
from experiments.models import Experiment, ExperimentStatus, Metric, Variant
from experiments.simulation import simulate
from recommendations.models import Algorithm, RecommenderConfig

POPULARITY = "Popularity (best-sellers)"


class Command(BaseCommand):
    help = (
        "Simulate the demo shop's customers answering an experiment between recommender configurations: "
        "days of the shop's own suggestions (the baseline), then an experiment started and days of visits "
        "with a look each day. Needs the demo shop (seed_demo --recompute)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=14, help="Days the experiment runs (default 14).")
        parser.add_argument("--baseline-days", type=int, default=14, help="Days before it, for the baseline.")
        parser.add_argument("--visitors", type=int, default=400, help="Customers who visit a day (default 400).")
        parser.add_argument("--aa", action="store_true", help="An A/A test: the default configuration twice.")
        parser.add_argument("--treatment", default="", help="The configuration of B (default: popularity).")
        parser.add_argument("--metric", default=Metric.CONVERSION, choices=Metric.values)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--if-none", action="store_true", help="Do nothing if an experiment exists.")

    def handle(self, *args, **opts):
        if opts["if_none"] and Experiment.objects.exists():
            self.stdout.write("An experiment exists; nothing done.")
            return
        if Experiment.objects.filter(status=ExperimentStatus.RUNNING).exists():
            raise CommandError("An experiment is running; stop it first (only one runs at a time).")
        control = RecommenderConfig.objects.filter(is_default=True).first()
        if control is None:
            raise CommandError("No default recommender configuration: run `manage.py seed_demo --recompute` first.")
        if opts["aa"]:
            treatment = control
        elif opts["treatment"]:
            treatment = RecommenderConfig.objects.filter(name=opts["treatment"]).first()
            if treatment is None:
                raise CommandError(f"No recommender configuration named {opts['treatment']!r}.")
        else:
            treatment, _ = RecommenderConfig.objects.get_or_create(
                name=POPULARITY,
                defaults={
                    "algorithm": Algorithm.POPULARITY,
                    "description": "What sells most, the same for everyone: the baseline a recommender must beat.",
                },
            )
        now = timezone.now()
        start = now - timedelta(days=opts["days"])
        days = opts["baseline_days"]
        self.stdout.write(f"{days} days of the shop's own suggestions (the baseline) …")
        simulate(
            days=days,
            visitors=opts["visitors"],
            start=start - timedelta(days=days),
            seed=opts["seed"],
            on_day=lambda d, t, c: self.stdout.write(
                f"  day {d + 1}/{days}: {c['impressions']:,} impressions, {c['clicks']:,} clicks, "
                f"{c['purchases']:,} purchases"
            ),
        )
        label = "A/A: " if opts["aa"] else ""
        name = f"{label}{control.name} vs {treatment.name} ({now:%d %b %Y %H:%M})"
        with transaction.atomic():
            experiment = Experiment.objects.create(
                name=name[:120],
                hypothesis=(
                    "The same configuration twice: the test must find no difference."
                    if opts["aa"]
                    else f"Personalised suggestions ({control.name}) sell more than {treatment.name}."
                ),
                primary_metric=opts["metric"],
                guardrail_metrics=[m for m in (Metric.REVENUE,) if m != opts["metric"]],
                mde_percent=10.0,
            )
            Variant.objects.create(experiment=experiment, position=0, config=control, share=50)
            Variant.objects.create(experiment=experiment, position=1, config=treatment, share=50)
        self.stdout.write(f"Starting “{experiment}” and computing its variants' suggestions …")
        services.experiment_start(experiment, source="demo", now=start)
        experiment.refresh_from_db()
        if not experiment.assignments.exists():  # a broker took the run: compute here
            services.experiments_compute(now=start)

        def look(d, day_start, counts):
            services.look_take(experiment, now=day_start + timedelta(days=1) - timedelta(seconds=1))
            self.stdout.write(
                f"  day {d + 1}/{opts['days']}: {counts['impressions']:,} impressions, {counts['clicks']:,} clicks, "
                f"{counts['purchases']:,} purchases"
            )

        simulate(days=opts["days"], visitors=opts["visitors"], start=start, seed=opts["seed"] + 1, on_day=look)
        last = experiment.looks.order_by("-day").first()
        from experiments.selectors import verdict_words

        self.stdout.write(self.style.SUCCESS(f"“{experiment}”: {verdict_words(last)}"))
