"""python manage.py create_demo_operator: the demo's operator login (never for production)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "demo"
PASSWORD = "demo-operator"


class Command(BaseCommand):
    help = "Create (or reset) the demo operator account and print its login. Refuses to run with DEBUG off."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("The demo operator has a published password; it is only created with DEBUG=1.")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=USERNAME, defaults={"email": "demo@example.com"})
        user.is_staff = True
        user.is_superuser = True
        user.set_password(PASSWORD)
        user.save()
        self.stdout.write(
            f"Demo operator {'created' if created else 'ready'}: login '{USERNAME}', password '{PASSWORD}'."
        )
