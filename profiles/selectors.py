"""Reads shared by views, tasks and templates."""
from django.db.models import QuerySet

from .models import Customer, Event, PipelineRun, PipelineStep, Profile


def customer_by_external_id(external_id: str) -> Customer | None:
    return Customer.objects.filter(external_id=external_id).first()


def profile_for(customer: Customer) -> Profile | None:
    return Profile.objects.filter(customer=customer).first()


def recent_events(customer: Customer, limit: int = 50) -> QuerySet[Event]:
    return Event.objects.filter(customer=customer).select_related("item").order_by("-occurred_at")[:limit]


def pipeline_runs() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("requested_by").prefetch_related("step_runs")


def latest_steps(name: str, limit: int = 20) -> QuerySet[PipelineStep]:
    return PipelineStep.objects.filter(name=name).order_by("-created_at")[:limit]
