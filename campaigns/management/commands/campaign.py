"""python manage.py campaign launch|pause|resume|cancel ID | tick | attribute [--campaign ID] | report ID"""

import json

from django.core.management.base import BaseCommand, CommandError

from campaigns import selectors, services
from campaigns.models import Campaign


class Command(BaseCommand):
    help = (
        "Campaigns from a shell: change a campaign's status, move the clock (tick), attribute conversions, "
        "print a report."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["launch", "pause", "resume", "cancel", "tick", "attribute", "report"])
        parser.add_argument(
            "campaign", nargs="?", type=int, help="The campaign id (launch, pause, resume, cancel, report)."
        )
        parser.add_argument(
            "--campaign", dest="only", type=int, action="append", help="attribute: only these campaigns."
        )

    def handle(self, *args, action, campaign=None, only=None, **options):
        if action == "tick":
            self.stdout.write(json.dumps(services.campaigns_tick()))
            return
        if action == "attribute":
            result = services.campaigns_attribute(campaign_ids=only)
            self.stdout.write(json.dumps({str(k): v for k, v in result.items()}, default=str))
            return
        if campaign is None:
            raise CommandError(f"'{action}' needs a campaign id.")
        obj = Campaign.objects.filter(pk=campaign).first()
        if obj is None:
            raise CommandError(f"No campaign {campaign}.")
        if action == "report":
            self.stdout.write(json.dumps(selectors.campaign_report(obj), indent=2, default=str))
            return
        verb = {
            "launch": services.campaign_launch,
            "pause": services.campaign_pause,
            "resume": services.campaign_resume,
            "cancel": services.campaign_cancel,
        }[action]
        try:
            obj = verb(campaign=obj, source="shell")
        except (services.TransitionError, services.TemplateError) as exc:  # e.g. a template the sandbox refuses
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"“{obj.name}” is now {obj.status}.")
