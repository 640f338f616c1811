"""python manage.py recompute --steps profiles,segments [--incremental]"""
import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from profiles import pipeline


class Command(BaseCommand):
    help = "Run recomputation steps of the pipeline (in order, under the pipeline lock), with progress bars."

    def add_arguments(self, parser):
        parser.add_argument("--steps", default="", help="Comma-separated steps (default: all). Available: " + ", ".join(pipeline.available_steps()))
        parser.add_argument("--incremental", action="store_true", help="Profiles: only customers with new events since the last run.")
        parser.add_argument("--as-of", default=None, help="Profiles as of this ISO date/time instead of now (historical data).")
        parser.add_argument("--k", type=int, default=None, help="Segments: pin the number of clusters instead of choosing it.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, steps, incremental, no_progress, as_of=None, k=None, **options):
        names = [s.strip() for s in steps.split(",") if s.strip()] or pipeline.available_steps()
        try:
            run = pipeline.pipeline_create(steps=names, trigger="shell")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        bars: dict[str, tqdm] = {}

        def listener(step: str, fraction: float, message: str) -> None:
            if no_progress:
                return
            bar = bars.get(step)
            if bar is None:
                bar = bars[step] = tqdm(total=100, desc=step, unit="%", file=self.stderr._out, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
            bar.n = round(fraction * 100)
            bar.set_postfix_str(message, refresh=True)

        params: dict = {}
        if incremental or as_of:
            params["profiles"] = {**({"incremental": True} if incremental else {}), **({"as_of": as_of} if as_of else {})}
        if k:
            params["segments"] = {"k": k}
        try:
            run = pipeline.pipeline_execute(run=run, listener=listener, step_params=params or None)
        except pipeline.PipelineBusy as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for bar in bars.values():
                bar.close()
        for step in run.step_runs.order_by("id"):
            self.stdout.write(f"{step.name}: {step.status} in {step.duration_s:.1f} s  {json.dumps(step.counts, default=str)}")
            if step.error:
                self.stderr.write(step.error)
        if run.status != "succeeded":
            raise CommandError(f"pipeline #{run.pk} {run.status}: {run.error}")
        self.stdout.write(f"pipeline #{run.pk} succeeded.")
