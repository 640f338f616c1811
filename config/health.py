"""GET /healthz: for load balancers and orchestrators. No authentication, no personal data.

200 when the database answers; 503 otherwise. The broker is reported (``eager`` when tasks run in
process) but does not fail the check: ingestion and the API keep working without it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _database() -> str:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return "ok"
    except Exception as exc:  # the answer names the failure's kind, not its details
        return f"down ({type(exc).__name__})"


def _broker() -> str:
    if not settings.CELERY_BROKER_URL:
        return "eager"
    from config.celery import app

    try:
        with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=0, timeout=1)
        return "ok"
    except Exception as exc:
        return f"down ({type(exc).__name__})"


@never_cache
@require_GET
def healthz(request):
    checks = {"database": _database(), "broker": _broker()}
    return JsonResponse(checks, status=200 if checks["database"] == "ok" else 503)
