"""Suggestions for the shop's frontend and backend: per customer, and similar items.

Both answer from the active run's stored tables: one indexed query on the hot path. Who may ask
is decided in one place each, `OWN_SUGGESTIONS` and `SIMILAR_ITEMS` below (docs/api.md).
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import AnyCustomer, CustomerSelf, KeyScope, Operator, anyone_of
from profiles import selectors as profile_selectors
from profiles.serializers import ErrorSerializer

from . import selectors
from .serializers import (
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
        "their segment, or overall.",
        parameters=QUERY_PARAMETERS,
        responses={200: RecommendationsOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        query = _query(request)
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
