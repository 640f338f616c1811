"""Bulk write endpoints for the shop's backend: events, customers, items."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import KeyScope, Operator, anyone_of, customer_token_issue
from common import lanes
from common.api_errors import safe_text

from . import selectors, services
from .serializers import (
    BatchErrorSerializer,
    CustomerInSerializer,
    ErrorSerializer,
    EventInSerializer,
    ForgetOutSerializer,
    IngestResultSerializer,
    ItemInSerializer,
    ProfileSerializer,
    UpsertResultSerializer,
    customer_export_serializer,
)
from .validation import records_frame


class BadBatch(APIException):
    """A request refused before any row is looked at; answered as {"detail": ..., "errors": []}."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_batch"


def _batch(request, *, limit: int) -> list:
    data = request.data
    if not isinstance(data, list):
        raise BadBatch("The body must be a JSON array of objects.")
    if len(data) > limit:
        raise BadBatch(f"A batch holds at most {limit} rows; this one has {len(data)}.")
    return data


def _refused(errors) -> Response:
    return Response(
        # an unknown field's name is what the client sent, and may hold a lone surrogate
        {
            "detail": f"{len({e.row for e in errors})} invalid row(s); nothing was written.",
            "errors": safe_text([e.as_dict() for e in errors]),
        },
        status=status.HTTP_400_BAD_REQUEST,
    )


def _frame_and_apply(rows: list, service, kwargs):
    """(result, None) or (None, the bad rows): the batch's whole CPU-heavy part, run in a bulk-write lane."""
    frame, shape_errors = records_frame(rows)
    if shape_errors:
        return None, shape_errors
    try:
        return service(rows=frame, **kwargs), None
    except services.IngestRefused as exc:
        return None, exc.errors


def _events_apply(rows: list, service, kwargs):
    """A small clean batch goes the plain path (no pandas: its fixed cost is most of a small batch's
    time); any other, or one the plain path hands back, goes the frame path, which alone refuses."""
    result = services.events_ingest_plain(records=rows, **kwargs)
    if result is not None:
        return result, None
    return _frame_and_apply(rows, service, kwargs)


def _apply_batch(request, service, *, apply=_frame_and_apply, **kwargs) -> Response:
    """Validate the body as a batch, hand it to a batch service, answer 201 or the 400 with every bad row.
    The work runs at the bulk-write priority (common.lanes), below the frontend's reads."""
    rows = _batch(request, limit=settings.INGEST_MAX_BATCH)
    result, errors = lanes.run_bulk(apply, rows, service, kwargs)
    if errors is not None:
        return _refused(errors)
    return Response(result.as_dict(), status=status.HTTP_201_CREATED)


def _flag(request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes"}:
        return True
    if raw.lower() in {"0", "false", "no"}:
        return False
    raise BadBatch(f"Query parameter {name} must be true or false.")


class EventBatchView(APIView):
    permission_classes = [anyone_of(Operator("profiles.add_event"), KeyScope("ingest_events"))]
    throttle_scope = "ingest"

    @extend_schema(
        summary="Ingest a batch of events",
        description=(
            "Up to INGEST_MAX_BATCH (10,000) events naming customers and items by their external ids. "
            "All or nothing: if any row is invalid nothing is written and the answer lists every bad row. "
            "Events whose external_id is already stored are skipped and counted as duplicates, so a resend is harmless."
        ),
        request=EventInSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "create_unknown",
                OpenApiTypes.BOOL,
                description="Create customers and items the batch names but the platform does not know "
                "(default: the INGEST_CREATE_UNKNOWN setting). When false, such rows are errors.",
            )
        ],
        responses={201: IngestResultSerializer, 400: BatchErrorSerializer},
    )
    def post(self, request):
        create_unknown = _flag(request, "create_unknown", settings.INGEST_CREATE_UNKNOWN)
        return _apply_batch(request, services.events_ingest, apply=_events_apply, create_unknown=create_unknown)


class CustomerBatchView(APIView):
    permission_classes = [
        anyone_of(Operator("profiles.add_customer", "profiles.change_customer"), KeyScope("manage_customers"))
    ]
    throttle_scope = "ingest"

    @extend_schema(
        summary="Create or update customers in bulk",
        description="Upsert by external_id. Fields left out keep their stored value. All or nothing.",
        request=CustomerInSerializer(many=True),
        responses={201: UpsertResultSerializer, 400: BatchErrorSerializer},
    )
    def post(self, request):
        return _apply_batch(request, services.customers_upsert, actor=request.user)


class ItemBatchView(APIView):
    permission_classes = [
        anyone_of(Operator("profiles.add_item", "profiles.change_item"), KeyScope("manage_customers"))
    ]
    throttle_scope = "ingest"

    @extend_schema(
        summary="Create or update catalogue items in bulk",
        description="Upsert by (kind, external_id). Fields left out keep their stored value. All or nothing.",
        request=ItemInSerializer(many=True),
        responses={201: UpsertResultSerializer, 400: BatchErrorSerializer},
    )
    def post(self, request):
        return _apply_batch(request, services.items_upsert)


class CustomerProfileView(APIView):
    permission_classes = [anyone_of(Operator("profiles.view_profile"), KeyScope("manage_customers"))]

    @extend_schema(summary="A customer's computed profile", responses={200: ProfileSerializer, 404: ErrorSerializer})
    def get(self, request, external_id: str):
        customer = selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        profile = selectors.profile_for(customer)
        if profile is None:
            raise NotFound(f"Customer {external_id!r} has no profile yet; the profiles step computes it.")
        profile.customer = customer
        return Response(ProfileSerializer(profile).data)


class CustomerTokenInSerializer(serializers.Serializer):
    customer = serializers.CharField(max_length=128, help_text="The customer's external id.")
    ttl = serializers.IntegerField(
        required=False,
        min_value=60,
        help_text="Lifetime in seconds (default CUSTOMER_TOKEN_TTL_SECONDS, capped by CUSTOMER_TOKEN_MAX_TTL_SECONDS).",
    )


class CustomerTokenOutSerializer(serializers.Serializer):
    token = serializers.CharField()
    customer = serializers.CharField()
    expires_in = serializers.IntegerField()


class CustomerTokenView(APIView):
    """The shop's backend, with an API key, obtains a token its frontend uses for one customer."""

    permission_classes = [anyone_of(KeyScope("read_recommendations"))]
    throttle_scope = "customer_tokens"

    @extend_schema(
        summary="Issue a customer token (API key with scope read_recommendations)",
        description="The token goes in `Authorization: Customer <token>` and opens the customer-facing endpoints "
        "for that customer only (own recommendations, inbox, delivered/opened/clicked, activities) until it expires, "
        "and never once the customer is forgotten.",
        request=CustomerTokenInSerializer,
        responses={201: CustomerTokenOutSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def post(self, request):
        data = CustomerTokenInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        external_id = data.validated_data["customer"]
        customer = selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        token, ttl = customer_token_issue(
            customer_external_id=external_id,
            customer_id=customer.pk,
            key=request.auth,
            ttl=data.validated_data.get("ttl"),
        )
        return Response({"token": token, "customer": external_id, "expires_in": ttl}, status=status.HTTP_201_CREATED)


class CustomerView(APIView):
    """DELETE forgets a customer (right to erasure)."""

    permission_classes = [anyone_of(Operator("profiles.delete_customer"), KeyScope("manage_customers"))]

    @extend_schema(
        summary="Forget a customer: events, profile, memberships, suggestions and personal fields are removed",
        responses={200: ForgetOutSerializer, 404: ErrorSerializer},
    )
    def delete(self, request, external_id: str):
        from .privacy import customer_forget

        customer = selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        return Response(
            {"forgotten": True, "removed": customer_forget(customer=customer, request=request, source="api")}
        )


class CustomerExportView(APIView):
    """GET everything the platform holds about a customer (right of access)."""

    permission_classes = [
        anyone_of(Operator("profiles.view_customer", "profiles.view_event"), KeyScope("manage_customers"))
    ]

    @extend_schema(
        summary="Everything held about a customer, as JSON",
        responses={200: customer_export_serializer(), 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        from .privacy import customer_export

        customer = selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        return Response(customer_export(customer=customer))
