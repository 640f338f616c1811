from django.urls import path

from . import api

urlpatterns = [
    path("customers/<str:external_id>/inbox/", api.InboxView.as_view(), name="campaigns-inbox"),
    path(
        "customers/<str:external_id>/inbox/<int:pk>/delivered/",
        api.DeliveredView.as_view(),
        name="campaigns-inbox-delivered",
    ),
    path("customers/<str:external_id>/inbox/<int:pk>/opened/", api.OpenedView.as_view(), name="campaigns-inbox-opened"),
    path(
        "customers/<str:external_id>/inbox/<int:pk>/clicked/", api.ClickedView.as_view(), name="campaigns-inbox-clicked"
    ),
    path("customers/<str:external_id>/activities/", api.ActivitiesView.as_view(), name="campaigns-activities"),
    path("campaigns/<int:pk>/report/", api.ReportView.as_view(), name="campaigns-report"),
    path("campaigns/audience-preview/", api.AudiencePreviewView.as_view(), name="campaigns-audience-preview"),
    path("campaigns/unsubscribe/<str:token>/", api.unsubscribe, name="campaigns-unsubscribe"),
]
