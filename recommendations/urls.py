from django.urls import path

from . import api

urlpatterns = [
    path(
        "customers/<str:external_id>/recommendations/",
        api.CustomerRecommendationsView.as_view(),
        name="customer-recommendations",
    ),
    path("items/<str:external_id>/similar/", api.SimilarItemsView.as_view(), name="item-similar"),
]
