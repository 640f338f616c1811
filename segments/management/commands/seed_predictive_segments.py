"""python manage.py seed_predictive_segments: the ready-made predictive segments, for the demo shop."""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from accounts.audit import shell_actor
from profiles.models import EventType, Item
from segments.models import Segment, SegmentKind
from segments.predictive import TEMPLATES
from segments.services import predictive_segments_create


class Command(BaseCommand):
    help = (
        "Create the ready-made predictive segments that are missing (by name): "
        + ", ".join(t.title.lower() for t in TEMPLATES.values())
        + ". --category names the category of the last one (default: the most bought category). "
        "Safe to run twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--category", default=None, help="The category for 'Likely to buy <category>'.")
        parser.add_argument(
            "--if-no-rule-segments",
            action="store_true",
            help="Do nothing if the shop has rule segments already (the demo's first run only: a segment an "
            "operator deleted or renamed later does not come back).",
        )

    def handle(self, *args, category=None, if_no_rule_segments=False, **options):
        if if_no_rule_segments and Segment.objects.filter(kind=SegmentKind.RULE).exists():
            self.stdout.write("The shop has rule segments already; no predictive segment was added.")
            return
        known = Item.objects.exclude(category="").values_list("category", flat=True).distinct()
        if category is None:
            category = (
                Item.objects.exclude(category="")
                .filter(events__type=EventType.PURCHASE)
                .values("category")
                .annotate(n=Count("events"))
                .order_by("-n", "category")
                .values_list("category", flat=True)
                .first()
            ) or known.order_by("category").first()
            if category is None:
                raise CommandError("The shop has no item categories yet: seed or import the catalogue first.")
        elif not known.filter(category=category).exists():
            raise CommandError(f"No item is in the category {category!r}: pick one of the shop's categories.")
        created = predictive_segments_create(category=category, actor_label=shell_actor(), source="shell")
        if created:
            for segment in created:
                self.stdout.write(f"Created the segment “{segment.name}” ({segment.size} members).")
        else:
            self.stdout.write("The predictive segments are there already.")
