from django.urls import path

from . import api

urlpatterns = [
    path("segments/", api.SegmentListView.as_view(), name="segments"),
    path("segments/preview/", api.RulePreviewView.as_view(), name="segments-preview"),
    path("segments/<int:pk>/members/", api.SegmentMembersView.as_view(), name="segment-members"),
    path("customers/<str:external_id>/segments/", api.CustomerSegmentsView.as_view(), name="customer-segments"),
]
