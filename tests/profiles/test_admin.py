"""Admin screens: lists render what operators look for, with a query count that does not grow with rows."""

from datetime import timedelta

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from profiles import services

pytestmark = pytest.mark.django_db


def _seed(n_customers, start=0):
    now = timezone.now()
    rows = pd.DataFrame(
        {
            "external_id": [f"adm-{start + i}" for i in range(n_customers * 3)],
            "customer": [f"cust-{start + i // 3}" for i in range(n_customers * 3)],
            "item": [f"sku-{(start + i) % 17}" for i in range(n_customers * 3)],
            "type": ["view", "add_to_cart", "purchase"] * n_customers,
            "amount": [None, None, 25.5] * n_customers,
            "occurred_at": [now - timedelta(days=40) + timedelta(hours=i) for i in range(n_customers * 3)],
        }
    )
    services.events_ingest(rows=rows, create_unknown=True)


@pytest.mark.parametrize("url", ["/admin/profiles/event/", "/admin/profiles/customer/", "/admin/profiles/item/"])
def test_list_pages_do_not_run_a_query_per_row(boss_client, url):
    _seed(5)
    with CaptureQueriesContext(connection) as few:
        assert boss_client.get(url).status_code == 200
    _seed(15, start=100)
    with CaptureQueriesContext(connection) as many:
        resp = boss_client.get(url)
    assert resp.status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)


def test_event_list_shows_customer_and_item_and_drills_down_by_date(boss_client):
    _seed(4)
    resp = boss_client.get("/admin/profiles/event/?type__exact=purchase")
    html = resp.content.decode()
    assert "cust-0" in html and "sku-" in html
    assert html.count('<tr class="row1"') + html.count("<tr>") >= 1
    # the date hierarchy offers the months of the data, found without scanning every row
    month = (timezone.now() - timedelta(days=40)).strftime("%B")
    assert month in html


def test_event_search_by_customer_external_id(boss_client):
    _seed(3)
    html = boss_client.get("/admin/profiles/event/?q=cust-2").content.decode()
    assert "cust-2" in html and "cust-1<" not in html


def test_consent_changed_in_the_admin_is_recorded_with_who_and_when(boss_client):
    from profiles.models import ConsentChange, Customer

    services.customers_upsert(rows=pd.DataFrame([{"external_id": "cons-1", "name": "Ada", "consent_email": True}]))
    customer = Customer.objects.get(external_id="cons-1")
    assert list(ConsentChange.objects.values_list("channel", "granted", "source")) == [("email", True, "api")]
    page = boss_client.get(f"/admin/profiles/customer/{customer.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, (dict, list))}
    data.update(
        {
            "external_id": "cons-1",
            "name": "Ada",
            "time_zone": "UTC",
            "consent_in_app": "on",
            "consent_push": "on",
            "attributes": "{}",
            "created_at_0": customer.created_at.strftime("%Y-%m-%d"),
            "created_at_1": customer.created_at.strftime("%H:%M:%S"),
        }
    )
    data.pop("consent_email", None)  # unticked: email consent withdrawn
    for inline in page.context["inline_admin_formsets"]:  # whatever inlines the apps add to this page
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{k}": v for k, v in management.initial.items()})
        for form in inline.formset.forms:  # the existing rows' hidden ids
            data.update({f.html_name: f.value() for f in form.hidden_fields() if f.value() is not None})
    resp = boss_client.post(f"/admin/profiles/customer/{customer.pk}/change/", data)
    assert resp.status_code == 302, [i.formset.errors for i in resp.context["inline_admin_formsets"]] + [
        resp.context["adminform"].form.errors,
        [i.formset.non_form_errors() for i in resp.context["inline_admin_formsets"]],
    ]
    customer.refresh_from_db()
    assert customer.consent_email is False and customer.consent_push is True
    changes = list(
        ConsentChange.objects.filter(source="admin")
        .order_by("channel")
        .values_list("channel", "granted", "changed_by__username")
    )
    assert changes == [("email", False, "boss"), ("push", True, "boss")]
    html = boss_client.get(f"/admin/profiles/customer/{customer.pk}/change/").content.decode()
    assert "Consent history" in html
