from django.urls import path

from . import api

urlpatterns = [
    path("experiments/", api.ExperimentListView.as_view(), name="experiment-list"),
    path("experiments/<int:pk>/report/", api.ExperimentReportView.as_view(), name="experiment-report"),
    path(
        "customers/<str:external_id>/experiments/",
        api.CustomerExperimentsView.as_view(),
        name="customer-experiments",
    ),
]
