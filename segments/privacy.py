"""What segments hold about a customer, for profiles/privacy.py (listed in settings.PRIVACY_HOOKS)."""

from .models import Membership


def export(customer) -> dict:
    return {
        "segments": [
            {"segment": name, "since": since}
            for name, since in Membership.objects.filter(customer=customer).values_list("segment__name", "since")
        ]
    }


def forget(customer) -> dict:
    return {"memberships": Membership.objects.filter(customer=customer).delete()[0]}
