from django.urls import path

from . import api

urlpatterns = [
    path(
        "customers/<str:external_id>/recommendations/",
        api.CustomerRecommendationsView.as_view(),
        name="customer-recommendations",
    ),
    path(
        "customers/<str:external_id>/impressions/",
        api.CustomerImpressionsView.as_view(),
        name="customer-impressions",
    ),
    path("items/<str:external_id>/similar/", api.SimilarItemsView.as_view(), name="item-similar"),
]
