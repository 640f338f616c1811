"""python manage.py create_demo_operator: the demo's operator login (never for production).

`make run` calls it on every start: it creates the account when it is missing and otherwise leaves
it alone, so a password the operator changed and the browser's session survive a restart.
`--reset-password` puts the published password back (and, as any password change does, ends the
account's sessions).
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "demo"
PASSWORD = "demo-operator"


class Command(BaseCommand):
    help = (
        "Create the demo operator account when it is missing and print its login; --reset-password resets an "
        "existing one's password. Refuses to run with DEBUG off."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help=f"Set the password back to '{PASSWORD}' (and make the account an active superuser again).",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("The demo operator has a published password; it is only created with DEBUG=1.")
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        if user is None:
            user = User(username=USERNAME, email="demo@example.com", is_staff=True, is_superuser=True)
            user.set_password(PASSWORD)
            user.save()
            self.stdout.write(f"Demo operator created: login '{USERNAME}', password '{PASSWORD}'.")
        elif options["reset_password"]:
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(PASSWORD)
            user.save()
            self.stdout.write(f"Demo operator's password reset: login '{USERNAME}', password '{PASSWORD}'.")
        else:
            self.stdout.write(
                f"Demo operator: login '{USERNAME}' (password '{PASSWORD}' unless you changed it; "
                "`manage.py create_demo_operator --reset-password` puts it back)."
            )
