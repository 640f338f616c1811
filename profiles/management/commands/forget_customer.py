"""python manage.py forget_customer EXTERNAL_ID"""

import json

from django.core.management.base import BaseCommand, CommandError

from profiles import selectors
from profiles.privacy import customer_forget


class Command(BaseCommand):
    help = "Forget a customer: remove their events, profile, memberships, suggestions and personal fields."

    def add_arguments(self, parser):
        parser.add_argument("external_id")

    def handle(self, *args, external_id, **options):
        customer = selectors.customer_by_external_id(external_id)
        if customer is None:
            raise CommandError(f"No customer with external_id {external_id!r}.")
        removed = customer_forget(customer=customer, source="shell")
        self.stdout.write(f"Customer {external_id!r} forgotten; removed: {json.dumps(removed)}")
