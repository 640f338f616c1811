"""One error shape for the whole API: {"detail": "<sentence>", "errors": [{"field"|"row"|"path", "reason"}...]}."""

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .operator_queries import OperatorQueryTimeout


class BadRequest(exceptions.APIException):
    """A request the service refused as it stands (e.g. an action the object's state does not allow);
    answered as {"detail": ..., "errors": []} like every other 400."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"


def safe_text(value):
    """`value` with lone surrogates (which a client can send as "\\ud800") written as escapes, so an
    error that quotes what was sent can still be encoded as UTF-8; dicts and lists are walked."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {safe_text(k): safe_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_text(v) for v in value]
    return value


def _flatten(data, prefix: str = "") -> list[dict]:
    out: list[dict] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list):
        if all(not isinstance(v, (dict, list)) for v in data):
            out.extend({"field": prefix or "(body)", "reason": str(v)} for v in data)
        else:
            for i, value in enumerate(data):
                out.extend(_flatten(value, f"{prefix}[{i}]"))
    else:
        out.append({"field": prefix or "(body)", "reason": str(data)})
    return out


def exception_handler(exc, context):
    if isinstance(exc, RecursionError) and "JSON" in str(exc):
        # json.loads gives up on a body nested thousands of levels deep; that is the client's error.
        return Response(
            {"detail": "JSON parse error - the body is nested too deeply.", "errors": []},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, OperatorQueryTimeout):
        # The server cancelled an operator's query (OPERATOR_QUERY_TIMEOUT_MS): not the caller's
        # syntax, not a crash; the same request may pass later or narrowed.
        return Response({"detail": str(exc), "errors": []}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError) and not (
        isinstance(data, dict) and "detail" in data and "errors" in data
    ):
        errors = _flatten(data)
        named = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        response.data = {"detail": f"Invalid input: {named}{more}", "errors": errors}
    elif isinstance(data, dict) and "detail" in data:
        response.data = {"detail": str(data["detail"]), "errors": data.get("errors", [])}
    response.data = safe_text(response.data)  # messages may quote what was sent
    return response


def not_found(request, exception=None):
    """handler404: under /api/ an unknown URL (or a path parameter of the wrong type, which no route
    matches) answers in the API's one error shape, as JSON; elsewhere Django's own page."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    detail = safe_text(f"No such endpoint: {request.path}")
    return JsonResponse({"detail": detail, "errors": []}, status=status.HTTP_404_NOT_FOUND)
