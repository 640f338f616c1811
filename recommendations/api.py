"""Suggestions for the shop's frontend and backend: per customer, and similar items.

Both answer from the active run's stored tables: one indexed query on the hot path. Who may ask
is decided in one place each, `OWN_SUGGESTIONS` and `SIMILAR_ITEMS` below (docs/api.md).
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import AnyCustomer, CustomerSelf, KeyScope, Operator, anyone_of
from profiles import selectors as profile_selectors
from profiles.serializers import ErrorSerializer

from . import selectors, services
from .serializers import (
    ImpressionsInSerializer,
    ImpressionsOutSerializer,
    ListQuerySerializer,
    RecommendationsOutSerializer,
    SimilarItemsOutSerializer,
    plain_list_query,
    recommendations_out,
)

# Operators, the shop's backend (key scope read_recommendations) and the customer themself.
OWN_SUGGESTIONS = anyone_of(
    Operator("recommendations.view_recommendation"), KeyScope("read_recommendations"), CustomerSelf()
)
# The shop's frontend (for the customer it shows the list to) and backend report what was shown.
IMPRESSIONS = anyone_of(Operator("recommendations.add_impression"), KeyScope("ingest_events"), CustomerSelf())
SIMILAR_ITEMS = anyone_of(
    Operator("recommendations.view_recommendation"), KeyScope("read_recommendations"), AnyCustomer()
)

QUERY_PARAMETERS = [
    OpenApiParameter("kind", str, description="product, activity or post (default product)."),
    OpenApiParameter("limit", int, description="How many, 1 to RECOMMENDER_TOP_N (default 10)."),
]


def _query(request) -> dict:
    """The validated kind and limit; a bad one raises, answered as a 400 naming the parameter."""
    plain = plain_list_query(request.query_params)
    if plain is not None:
        return plain
    query = ListQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)  # answered in the API's one error shape
    return query.validated_data


class CustomerRecommendationsView(APIView):
    permission_classes = [OWN_SUGGESTIONS]
    throttle_scope = "customer"

    @extend_schema(
        summary="A customer's suggestions of one kind, with reasons",
        description="From the active recommender run. A customer created since the run gets the popular items of "
        "their segment, or overall. A customer in a running experiment gets their variant's list.",
        parameters=QUERY_PARAMETERS,
        responses={200: RecommendationsOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        query = _query(request)
        channel = selectors.channel_for(external_id)
        rows = selectors.recommendation_rows_for_external_id(
            external_id, kind=query["kind"], limit=query["limit"], channel=channel
        )
        if not rows and channel:  # the variant's run is gone (the experiment just stopped)
            channel = ""
            rows = selectors.recommendation_rows_for_external_id(external_id, kind=query["kind"], limit=query["limit"])
        if rows:
            return Response(recommendations_out(customer=external_id, kind=query["kind"], rows=rows))
        # unknown customer, or one the active run did not know
        customer = profile_selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        rows = selectors.fallback_for(customer, kind=query["kind"], limit=query["limit"])
        data = {
            "customer": external_id,
            "kind": query["kind"],
            "run": rows[0].run_id if rows else None,
            "results": rows,
        }
        return Response(RecommendationsOutSerializer(data).data)


class SimilarItemsView(APIView):
    permission_classes = [SIMILAR_ITEMS]
    throttle_scope = "customer"

    @extend_schema(
        summary="Items similar to an item, of the same kind",
        description="Item-item neighbours (cosine over who interacted with what) stored by the active run; inactive "
        "items left out.",
        parameters=QUERY_PARAMETERS,
        responses={200: SimilarItemsOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        query = _query(request)
        rows = selectors.similar_items_for_external_id(external_id, kind=query["kind"], limit=query["limit"])
        if not rows and selectors.item_by_external_id(external_id, kind=query["kind"]) is None:
            raise NotFound(f"No {query['kind']} with external_id {external_id!r}.")
        data = {"item": external_id, "kind": query["kind"], "run": rows[0].run_id if rows else None, "results": rows}
        return Response(SimilarItemsOutSerializer(data).data)


class CustomerImpressionsView(APIView):
    permission_classes = [IMPRESSIONS]
    throttle_scope = "customer"

    @extend_schema(
        summary="Record the suggestions a customer was shown",
        description="The shop reports what it showed (the list as rendered, not merely fetched). Impressions "
        "down-weight items a customer keeps ignoring, and a running experiment attributes clicks and purchases "
        "to them; each impression records the variant the customer is served from.",
        request=ImpressionsInSerializer,
        responses={201: ImpressionsOutSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def post(self, request, external_id: str):
        body = ImpressionsInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        customer = profile_selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        wanted = list(dict.fromkeys(data["items"]))
        known = selectors.item_ids_by_external_id(wanted, kind=data["kind"])
        unknown = [e for e in wanted if e not in known]
        if unknown:
            shown = ", ".join(repr(e) for e in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise ValidationError({"items": [f"No {data['kind']} with external_id {shown}; nothing was recorded."]})
        channel = selectors.channel_for(external_id)
        recorded = services.impressions_record(
            customer_ids=[customer.pk] * len(wanted),
            item_ids=[known[e] for e in wanted],
            shown_at=data.get("shown_at") or timezone.now(),
            source=data["source"],
            channel=channel,
        )
        return Response({"customer": external_id, "recorded": recorded, "channel": channel}, status=201)
