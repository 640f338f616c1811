"""python manage.py seed_demo: a realistic, deterministic demo shop through the ingestion service."""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from profiles import services
from profiles.demo import generate_shop
from profiles.models import Customer

BASE = {"n_customers": 2000, "n_products": 400, "n_events": 150_000, "n_posts": 200}


class Command(BaseCommand):
    help = (
        "Build the demo shop (about 2,000 customers in planted personas, 400 products in 12 categories, "
        "10 activities, 200 community posts, 150,000 events over six months), deterministically from --seed. "
        "--scale multiplies customers, products, posts and events (e.g. --scale 50 for 100,000 customers)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--scale", type=float, default=1.0)
        parser.add_argument("--customers", type=int, default=None, help="Override the number of customers.")
        parser.add_argument("--events", type=int, default=None, help="Override the number of events.")
        parser.add_argument("--if-empty", action="store_true", help="Do nothing if the database already has customers.")
        parser.add_argument("--chunk-size", type=int, default=20_000)
        parser.add_argument(
            "--recompute",
            action="store_true",
            help="After seeding, run the whole pipeline once (profiles, segments, recommendations).",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self, *args, seed, scale, customers, events, if_empty, chunk_size, no_progress, recompute=False, **options
    ):
        if if_empty and Customer.objects.exists():
            self.stdout.write("The database already has customers; the demo shop was not seeded again.")
            return
        if scale <= 0:
            raise CommandError("--scale must be positive")
        sizes = {k: max(1, round(v * scale)) for k, v in BASE.items()}
        if customers:
            sizes["n_customers"] = customers
        if events is not None:
            sizes["n_events"] = events
        started = time.monotonic()
        shop = generate_shop(seed=seed, chunk_size=chunk_size, **sizes)
        cust = services.customers_upsert(rows=shop.customers.drop(columns=["persona"], errors="ignore"), source="demo")
        items = services.items_upsert(rows=shop.items)
        self.stdout.write(
            f"Customers: {cust.created} created, {cust.updated} updated. Items: {items.created} created, "
            f"{items.updated} updated."
        )
        total = services.IngestResult()
        with tqdm(
            total=shop.n_events, unit="ev", desc="demo events", disable=no_progress, file=self.stderr._out
        ) as bar:
            for chunk in shop.iter_events():
                result = services.events_ingest(rows=chunk, create_unknown=False)
                total.merge(result)
                bar.update(len(chunk))
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"Demo shop (seed {seed}): {sizes['n_customers']} customers, {len(shop.items)} items, "
            f"{total.created} events created, {total.duplicates} already there; {elapsed:.1f} s."
        )
        if recompute:
            from django.core.management import call_command

            self.stdout.write("Computing profiles, segments and recommendations for the demo shop...")
            call_command(
                "recompute", *(["--no-progress"] if no_progress else []), stdout=self.stdout, stderr=self.stderr
            )
