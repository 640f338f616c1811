"""What experiments hold about a customer, for profiles/privacy.py (listed in settings.PRIVACY_HOOKS)."""

from .models import Assignment


def export(customer) -> dict:
    rows = (
        Assignment.objects.filter(customer=customer)
        .select_related("experiment", "variant__config")
        .order_by("assigned_at")
    )
    return {
        "experiments": [
            {
                "experiment": a.experiment.name,
                "variant": a.variant.letter,
                "configuration": a.variant.config.name,
                "assigned_at": a.assigned_at,
            }
            for a in rows
        ]
    }


def forget(customer) -> dict:
    return {"experiment assignments": Assignment.objects.filter(customer=customer).delete()[0]}
