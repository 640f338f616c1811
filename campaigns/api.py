"""Campaigns for the shop's frontend and operators: inbox, tracking, activities, report, audience preview, unsubscribe.

Who may call each view is declared once, in PERMISSIONS: staff holding campaigns model
permissions for now; the access-control issue will swap these for customer tokens.
"""

from django.core import signing
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import CustomerSelf, KeyScope, Operator, anyone_of
from common.api_errors import BadRequest
from common.operator_queries import operator_query
from profiles import selectors as profile_selectors
from profiles.models import Item
from profiles.serializers import ErrorSerializer

from . import selectors, services
from .models import Campaign, Delivery
from .serializers import (
    ActivitiesOutSerializer,
    AudiencePreviewInSerializer,
    AudiencePreviewOutSerializer,
    DeliveredOutSerializer,
    InboxOutSerializer,
    ReportSerializer,
    TrackInSerializer,
    TrackOutSerializer,
)

PERMISSIONS = {
    # customer-facing: the customer's own token, the shop's backend, or an operator
    "inbox": anyone_of(Operator("campaigns.view_delivery"), KeyScope("read_recommendations"), CustomerSelf()),
    "track": anyone_of(Operator("campaigns.change_delivery"), KeyScope("read_recommendations"), CustomerSelf()),
    # delivery is the customer's device saying it showed the message: never an operator's doing
    "delivered": anyone_of(KeyScope("read_recommendations"), CustomerSelf()),
    "activities": anyone_of(Operator("campaigns.view_campaign"), KeyScope("read_recommendations"), CustomerSelf()),
    # operators only
    "report": anyone_of(Operator("campaigns.view_campaign")),
    "preview": anyone_of(Operator("campaigns.view_campaign", "segments.view_segment")),
}


def _customer(external_id: str):
    customer = profile_selectors.customer_by_external_id(external_id)
    if customer is None:
        raise NotFound(f"No customer with external_id {external_id!r}.")
    return customer


class InboxView(APIView):
    throttle_scope = "customer"
    permission_classes = [PERMISSIONS["inbox"]]

    @extend_schema(
        summary="A customer's in-app messages, newest first",
        description="A read: it changes nothing. The customer's client reports a message it showed with "
        "POST .../inbox/{id}/delivered/.",
        responses={200: InboxOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        customer = _customer(external_id)
        rows = list(selectors.inbox_for(customer))
        return Response(InboxOutSerializer({"customer": external_id, "results": rows}).data)


class DeliveredView(APIView):
    throttle_scope = "customer"
    permission_classes = [PERMISSIONS["delivered"]]

    @extend_schema(
        summary="Report an in-app message shown to the customer (delivered); idempotent",
        description="Called by the customer's own client (customer token) or the shop's backend "
        "(API key with scope read_recommendations), never by an operator. The first call stamps "
        "delivered_at and records one message_delivered event; later calls change nothing.",
        request=None,
        responses={200: DeliveredOutSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def post(self, request, external_id: str, pk: int):
        delivery = Delivery.objects.select_related("campaign").filter(pk=pk, customer__external_id=external_id).first()
        if delivery is None:
            raise NotFound(f"No message {pk} for customer {external_id!r}.")
        try:
            delivered_at = services.inbox_record_delivered(delivery=delivery)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return Response({"id": delivery.pk, "delivered_at": delivered_at})


class TrackView(APIView):
    throttle_scope = "customer"
    permission_classes = [PERMISSIONS["track"]]
    what = "opened"

    @extend_schema(
        summary="Report an in-app message opened or clicked",
        description="Idempotent: the first open (or click) stamps its time and records one event; a repeat "
        "changes nothing. A click also marks the message opened.",
        request=TrackInSerializer,
        responses={200: TrackOutSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def post(self, request, external_id: str, pk: int):
        body = TrackInSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        delivery = (
            Delivery.objects.select_related("campaign", "customer")
            .filter(pk=pk, customer__external_id=external_id)
            .first()
        )
        if delivery is None:
            raise NotFound(f"No message {pk} for customer {external_id!r}.")
        item = None
        if body.validated_data.get("item"):
            item = Item.objects.filter(
                kind=body.validated_data["item_kind"], external_id=body.validated_data["item"]
            ).first()
            if item is None:
                raise NotFound(f"No item {body.validated_data['item']!r}.")
        try:
            delivery = services.delivery_track(delivery=delivery, what=self.what, item=item)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return Response({"id": delivery.pk, "opened_at": delivery.opened_at, "clicked_at": delivery.clicked_at})


class OpenedView(TrackView):
    what = "opened"


class ClickedView(TrackView):
    what = "clicked"


class ActivitiesView(APIView):
    throttle_scope = "customer"
    permission_classes = [PERMISSIONS["activities"]]

    @extend_schema(
        summary="Running activity campaigns the customer may join, best first",
        responses={200: ActivitiesOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        customer = _customer(external_id)
        return Response(
            ActivitiesOutSerializer({"customer": external_id, "results": selectors.activities_for(customer)}).data
        )


class ReportView(APIView):
    permission_classes = [PERMISSIONS["report"]]

    @extend_schema(
        summary="A campaign's report: funnel, suppressions, uplift vs control with CI and p-value, revenue",
        responses={200: ReportSerializer, 404: ErrorSerializer, 503: ErrorSerializer},
    )
    @operator_query(hint="try again later")
    def get(self, request, pk: int):
        campaign = Campaign.objects.filter(pk=pk).first()
        if campaign is None:
            raise NotFound(f"No campaign {pk}.")
        return Response(selectors.campaign_report(campaign))


class AudiencePreviewView(APIView):
    permission_classes = [PERMISSIONS["preview"]]

    @extend_schema(
        summary="Audience size for a choice of segments and channel (the campaign form's live preview)",
        request=AudiencePreviewInSerializer,
        responses={200: AudiencePreviewOutSerializer, 503: ErrorSerializer},
    )
    @operator_query(hint="choose fewer segments")
    def post(self, request):
        body = AudiencePreviewInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        return Response(
            services.audience_preview(
                segment_ids=v["segments"],
                excluded_ids=v["excluded_segments"],
                channel=v["channel"],
                control_percent=v["control_percent"],
            )
        )


@csrf_exempt  # the link in an email (and RFC 8058 one-click POST) carries its own signed token
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """GET shows a confirmation button; POST records the opt-out (mail clients' one-click POST too).

    The page never names the customer, and answers the same whether or not the customer still
    exists: a link to a forgotten customer writes nothing and just says "you are unsubscribed"."""
    try:
        services.unsubscribe_token_read(token)
    except signing.SignatureExpired:
        return render(request, "campaigns/unsubscribe.html", {"expired": True}, status=400)
    except signing.BadSignature:
        return render(request, "campaigns/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        services.unsubscribe_record(token=token)
        return render(request, "campaigns/unsubscribe.html", {"done": True})
    return render(request, "campaigns/unsubscribe.html", {})
