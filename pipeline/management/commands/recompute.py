"""python manage.py recompute --steps profiles,segments [--incremental] [--as-of DATE] [--k N]

The options after --steps are the parameters the listed steps declare (pipeline/steps.py): each
goes to the steps of the run that take it.
"""

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from pipeline import services
from pipeline.steps import available_steps, declared_params


class Command(BaseCommand):
    help = "Run recomputation steps of the pipeline (in order, under the pipeline lock), with progress bars."

    def add_arguments(self, parser):
        parser.add_argument(
            "--steps",
            default="",
            help="Comma-separated steps (default: all). Available: " + ", ".join(available_steps()),
        )
        seen = set()
        for step, param in declared_params():
            if param.name in seen:
                continue  # a parameter several steps take is one option, given to each of them
            seen.add(param.name)
            flag = "--" + param.name.replace("_", "-")
            text = f"{step.name.capitalize()}: {param.help}"
            if param.type is bool:
                parser.add_argument(flag, dest=param.name, action="store_true", help=text)
            else:
                parser.add_argument(flag, dest=param.name, type=param.type, default=None, help=text)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, steps, no_progress, **options):
        names = [s.strip() for s in steps.split(",") if s.strip()] or None
        # Only the options given: a flag left out leaves the step's own default in place.
        given = {p.name: options[p.name] for _, p in declared_params() if options.get(p.name) not in (None, False)}
        try:
            run = services.pipeline_start(trigger="shell", steps=names, options=given)
        except (ValueError, services.BackendUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        bars: dict[str, tqdm] = {}

        def listener(step: str, fraction: float, message: str) -> None:
            if no_progress:
                return
            bar = bars.get(step)
            if bar is None:
                bar = bars[step] = tqdm(
                    total=100,
                    desc=step,
                    unit="%",
                    file=self.stderr._out,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
                )
            bar.n = round(fraction * 100)
            bar.set_postfix_str(message, refresh=True)

        try:
            run = services.pipeline_execute(run=run, listener=listener, step_params=run.step_params)
        except services.PipelineBusy as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for bar in bars.values():
                bar.close()
        for step in run.step_runs.order_by("id"):
            counts = json.dumps(step.counts, default=str)
            self.stdout.write(f"{step.name}: {step.status} in {step.duration_s:.1f} s  {counts}")
            if step.error:
                self.stderr.write(step.error)
        if run.status != "succeeded":
            raise CommandError(f"pipeline #{run.pk} {run.status}: {run.error}")
        self.stdout.write(f"pipeline #{run.pk} succeeded.")
