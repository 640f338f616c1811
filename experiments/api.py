"""Experiments for the shop's own analytics: the list, each one's report, the variants a customer is in.

Operators need the permission to view experiments; the shop's backend an API key with the scope
read_recommendations; a customer token sees only its own customer's variants.
"""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import CustomerSelf, KeyScope, Operator, anyone_of
from profiles.serializers import ErrorSerializer

from . import selectors
from .models import Experiment
from .serializers import CustomerExperimentsSerializer, ExperimentOutSerializer, ExperimentReportSerializer

READ_EXPERIMENTS = anyone_of(Operator("experiments.view_experiment"), KeyScope("read_recommendations"))
CUSTOMER_VARIANTS = anyone_of(Operator("experiments.view_experiment"), KeyScope("read_recommendations"), CustomerSelf())


class ExperimentListView(ListAPIView):
    permission_classes = [READ_EXPERIMENTS]
    serializer_class = ExperimentOutSerializer
    queryset = Experiment.objects.select_related("population").prefetch_related("variants__config")

    @extend_schema(summary="Experiments between recommender configurations, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ExperimentReportView(APIView):
    permission_classes = [READ_EXPERIMENTS]

    @extend_schema(
        summary="An experiment's report",
        description="Per variant the primary metric with its interval, each variant against the control with the "
        "always-valid (mSPRT) interval and p-value, guard-rails, the sample-ratio-mismatch check, the verdict and "
        "the daily looks. A winner is named only when the test says so.",
        responses={200: ExperimentReportSerializer, 404: ErrorSerializer},
    )
    def get(self, request, pk: int):
        experiment = Experiment.objects.filter(pk=pk).first()
        if experiment is None:
            raise NotFound(f"No experiment {pk}.")
        return Response(ExperimentReportSerializer(selectors.experiment_report(experiment)).data)


class CustomerExperimentsView(APIView):
    permission_classes = [CUSTOMER_VARIANTS]
    throttle_scope = "customer"

    @extend_schema(
        summary="The experiments a customer is in, and their variant",
        responses={200: CustomerExperimentsSerializer, 404: ErrorSerializer},
    )
    def get(self, request, external_id: str):
        rows = selectors.customer_experiments(external_id)
        if rows is None:
            raise NotFound(f"No customer with external_id {external_id!r}.")
        return Response(CustomerExperimentsSerializer({"customer": external_id, "experiments": rows}).data)
