"""Segments for operators and the frontend: lists, members, a customer's segments, rule previews."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import KeyScope, Operator, anyone_of
from common.api_errors import safe_text
from common.operator_queries import operator_query, operator_query_timeout
from profiles import selectors as profile_selectors
from profiles.serializers import ErrorSerializer

from . import selectors
from .models import Segment
from .rules import RuleError, describe_rule, rule_audience_size, validate_rule
from .serializers import (
    CustomerSegmentSerializer,
    MembershipSerializer,
    RulePreviewInSerializer,
    RulePreviewOutSerializer,
    SegmentSerializer,
)


class SegmentListView(ListAPIView):
    permission_classes = [anyone_of(Operator("segments.view_segment"))]
    serializer_class = SegmentSerializer

    @extend_schema(
        summary="Segments (active ones by default)",
        parameters=[
            OpenApiParameter("kind", str, enum=["cluster", "rule"]),
            OpenApiParameter(
                "include_inactive", bool, description="Also list clustering segments no later run matched."
            ),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        active = None if self.request.query_params.get("include_inactive") in {"1", "true"} else True
        return selectors.segments_list(kind=self.request.query_params.get("kind"), active=active)


class SegmentMembersView(ListAPIView):
    permission_classes = [anyone_of(Operator("segments.view_segment", "profiles.view_customer"))]
    serializer_class = MembershipSerializer

    @extend_schema(
        summary="Members of a segment",
        parameters=[OpenApiParameter("search", str, description="External id or name contains.")],
        responses={200: MembershipSerializer(many=True), 404: ErrorSerializer, 503: ErrorSerializer},
    )
    @operator_query(hint="narrow the search")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        segment = Segment.objects.filter(pk=self.kwargs["pk"]).first()
        if segment is None:
            raise NotFound(f"No segment {self.kwargs['pk']}.")
        return selectors.segment_members(segment, search=self.request.query_params.get("search"))


class CustomerSegmentsView(APIView):
    permission_classes = [anyone_of(Operator("segments.view_segment"), KeyScope("manage_customers"))]

    @extend_schema(
        summary="The segments a customer belongs to",
        responses={200: CustomerSegmentSerializer(many=True), 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        customer = profile_selectors.customer_by_external_id(external_id)
        if customer is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        return Response(CustomerSegmentSerializer(selectors.segments_of(customer), many=True).data)


class RulePreviewView(APIView):
    permission_classes = [anyone_of(Operator("segments.view_segment"))]

    @extend_schema(
        summary="Audience size of a rule before saving it",
        request=RulePreviewInSerializer,
        responses={200: RulePreviewOutSerializer, 400: ErrorSerializer, 503: ErrorSerializer},
        description="A rule that does not parse, or is over the limits of docs/rules.md, is refused with 400: "
        "each error names the `path` in the rule and a `message`. A body that is not an object with a `rule` "
        "is refused with 400 naming the `field` and a `reason`. A count that runs longer than "
        "OPERATOR_QUERY_TIMEOUT_MS is stopped with 503.",
    )
    def post(self, request):
        data = RulePreviewInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = data.validated_data["rule"]
        try:
            with operator_query_timeout(hint="narrow the rule"):
                validate_rule(rule, segment_id=data.validated_data.get("segment_id"))
                size = rule_audience_size(rule)
        except RuleError as exc:
            return Response(  # a path quotes the keys that were sent, which may hold lone surrogates
                {"detail": f"The rule has {len(exc.errors)} error(s).", "errors": safe_text(exc.errors)},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"size": size, "description": describe_rule(rule)})
