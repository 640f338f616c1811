"""Reads shared by views, tasks and templates."""
from django.db.models import QuerySet

from .models import Customer, PipelineRun, Profile


def customer_by_external_id(external_id: str) -> Customer | None:
    return Customer.objects.filter(external_id=external_id).first()


def profile_for(customer: Customer) -> Profile | None:
    return Profile.objects.filter(customer=customer).first()


def pipeline_runs() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("requested_by").prefetch_related("step_runs").order_by("-created_at")
