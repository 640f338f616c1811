from django.urls import path

from . import api

urlpatterns = [
    path("events/", api.EventBatchView.as_view(), name="events-batch"),
    path("customers/", api.CustomerBatchView.as_view(), name="customers-batch"),
    path("items/", api.ItemBatchView.as_view(), name="items-batch"),
    path("customer-tokens/", api.CustomerTokenView.as_view(), name="customer-tokens"),
    path("customers/<str:external_id>/", api.CustomerView.as_view(), name="customer"),
    path("customers/<str:external_id>/export/", api.CustomerExportView.as_view(), name="customer-export"),
    path("customers/<str:external_id>/profile/", api.CustomerProfileView.as_view(), name="customer-profile"),
]
