"""Bulk write endpoints for the shop's backend: events, customers, items."""
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .permissions import require_perms
from .serializers import (
    BatchErrorSerializer,
    ErrorSerializer,
    ProfileSerializer,
    CustomerInSerializer,
    EventInSerializer,
    IngestResultSerializer,
    ItemInSerializer,
    UpsertResultSerializer,
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
        {"detail": f"{len({e.row for e in errors})} invalid row(s); nothing was written.", "errors": [e.as_dict() for e in errors]},
        status=status.HTTP_400_BAD_REQUEST,
    )


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
    permission_classes = [require_perms("profiles.add_event")]

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
                "create_unknown", OpenApiTypes.BOOL, description="Create customers and items the batch names but the platform does not know "
                "(default: the INGEST_CREATE_UNKNOWN setting). When false, such rows are errors.",
            )
        ],
        responses={201: IngestResultSerializer, 400: BatchErrorSerializer},
    )
    def post(self, request):
        rows = _batch(request, limit=settings.INGEST_MAX_BATCH)
        frame, shape_errors = records_frame(rows)
        if shape_errors:
            return _refused(shape_errors)
        create_unknown = _flag(request, "create_unknown", settings.INGEST_CREATE_UNKNOWN)
        try:
            result = services.events_ingest(rows=frame, create_unknown=create_unknown)
        except services.IngestRefused as exc:
            return _refused(exc.errors)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class CustomerBatchView(APIView):
    permission_classes = [require_perms("profiles.add_customer", "profiles.change_customer")]

    @extend_schema(
        summary="Create or update customers in bulk",
        description="Upsert by external_id. Fields left out keep their stored value. All or nothing.",
        request=CustomerInSerializer(many=True),
        responses={201: UpsertResultSerializer, 400: BatchErrorSerializer},
    )
    def post(self, request):
        rows = _batch(request, limit=settings.INGEST_MAX_BATCH)
        frame, shape_errors = records_frame(rows)
        if shape_errors:
            return _refused(shape_errors)
        try:
            result = services.customers_upsert(rows=frame)
        except services.IngestRefused as exc:
            return _refused(exc.errors)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class ItemBatchView(APIView):
    permission_classes = [require_perms("profiles.add_item", "profiles.change_item")]

    @extend_schema(
        summary="Create or update catalogue items in bulk",
        description="Upsert by (kind, external_id). Fields left out keep their stored value. All or nothing.",
        request=ItemInSerializer(many=True),
        responses={201: UpsertResultSerializer, 400: BatchErrorSerializer},
    )
    def post(self, request):
        rows = _batch(request, limit=settings.INGEST_MAX_BATCH)
        frame, shape_errors = records_frame(rows)
        if shape_errors:
            return _refused(shape_errors)
        try:
            result = services.items_upsert(rows=frame)
        except services.IngestRefused as exc:
            return _refused(exc.errors)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class CustomerProfileView(APIView):
    permission_classes = [require_perms("profiles.view_profile")]

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
