"""Reads shared by views, tasks and templates."""

from .models import Customer, Profile


def customer_by_external_id(external_id: str) -> Customer | None:
    return Customer.objects.filter(external_id=external_id).first()


def profile_for(customer: Customer) -> Profile | None:
    return Profile.objects.filter(customer=customer).first()
