"""One error shape for the whole API: {"detail": "<sentence>", "errors": [{"field"|"row"|"path", "reason"}...]}."""
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


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
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError) and not (isinstance(data, dict) and "detail" in data and "errors" in data):
        errors = _flatten(data)
        named = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        response.data = {"detail": f"Invalid input: {named}{more}", "errors": errors}
    elif isinstance(data, dict) and "detail" in data:
        response.data = {"detail": str(data["detail"]), "errors": data.get("errors", [])}
    return response
