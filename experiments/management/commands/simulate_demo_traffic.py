"""Waves of the demo shop's customers visiting now, answering what they are shown with their planted
personas' tastes, so an experiment an operator started in the console gets a report to read.

    manage.py simulate_demo_traffic                # 5 waves of 400 visitors, a look after each
    manage.py simulate_demo_traffic --waves 20 --visitors 200
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.core.management.base import BaseCommand
from django.utils import timezone

from experiments import services
from experiments.models import Experiment, ExperimentStatus
from experiments.selectors import verdict_words
from experiments.simulation import simulate_day


class Command(BaseCommand):
    help = (
        "Simulate waves of demo customers visiting in the last hour: each is served what the API serves them "
        "(their experiment variant's list), the impressions are recorded and they click and buy by their persona. "
        "A look at the running experiment follows each wave."
    )

    def add_arguments(self, parser):
        parser.add_argument("--waves", type=int, default=5, help="How many waves of visitors (default 5).")
        parser.add_argument("--visitors", type=int, default=400, help="Customers per wave (default 400).")
        parser.add_argument("--seed", type=int, default=None, help="Seed (default: a new one each time).")

    def handle(self, *args, **opts):
        rng = np.random.default_rng(opts["seed"])
        experiment = Experiment.objects.filter(status=ExperimentStatus.RUNNING).first()
        if experiment is None:
            self.stdout.write("No experiment is running: the visitors get the shop's own suggestions.")
        elif not experiment.assignments.exists():
            self.stdout.write(
                self.style.WARNING(
                    f"“{experiment}” has no customer enrolled yet: its pipeline run has not finished "
                    "(see Pipeline runs)."
                )
            )
        for wave in range(opts["waves"]):
            # visits in the last few minutes, after the experiment's start; clicks a second later, purchases
            # two (within the events' allowed clock skew, INGEST_MAX_FUTURE_SKEW_SECONDS)
            now = timezone.now()
            start = now - timedelta(minutes=5)
            if experiment is not None and experiment.started_at > start:
                start = experiment.started_at
            counts = simulate_day(
                day_start=start,
                visitors=opts["visitors"],
                rng=rng,
                spread_seconds=max((now - start).total_seconds(), 0.0),
                delays=(timedelta(seconds=1), timedelta(seconds=2)),
            )
            line = (
                f"wave {wave + 1}/{opts['waves']}: {counts['visitors']:,} visitors, {counts['impressions']:,} "
                f"impressions, {counts['clicks']:,} clicks, {counts['purchases']:,} purchases"
            )
            if experiment is not None:
                look = services.look_take(experiment, now=timezone.now())
                line += f" — {verdict_words(look)}"
            self.stdout.write(line)
