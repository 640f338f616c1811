"""The customer page's experiments: which variant the customer is served (profiles.customer_page describes
the page and its sections)."""

from __future__ import annotations

from django.urls import reverse

from profiles.customer_page import Section
from profiles.models import Customer

from .models import Assignment, ExperimentStatus

SHOWN = 5


def experiments(customer: Customer, *, request) -> Section | None:
    """The experiments the customer is (or was) in, the running one first: variant and configuration."""
    if not request.user.has_perm("experiments.view_experiment"):
        return None
    # One read on experiment_assignment_cust_idx: a customer is in a handful of experiments.
    rows = list(
        Assignment.objects.filter(customer=customer)
        .select_related("experiment", "variant__config")
        .order_by("-assigned_at")[:SHOWN]
    )
    if not rows:
        return None
    rows.sort(key=lambda a: a.experiment.status != ExperimentStatus.RUNNING)
    items = [
        {
            "name": a.experiment.name,
            "status": a.experiment.get_status_display(),
            "running": a.experiment.status == ExperimentStatus.RUNNING,
            "variant": a.variant.letter,
            "configuration": a.variant.config.name,
            "since": a.assigned_at,
            "url": reverse("admin:experiments_experiment_change", args=[a.experiment_id]),
        }
        for a in rows
    ]
    return Section("experiments", "Experiments", "admin/experiments/customer_page.html", {"items": items}, slot="side")
