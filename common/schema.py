"""OpenAPI: the error answers every operation can give, in the one error shape (common/api_errors.py).

A postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]). The schemes of the project's own
authentication classes are described next to them (accounts/schema.py).
"""

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in a sentence."},
        "errors": {
            "type": "array",
            "description": "One entry per bad part: a field (or row, or rule path) and the reason.",
            "items": {"type": "object", "additionalProperties": True, "properties": {"reason": {"type": "string"}}},
        },
    },
    "required": ["detail", "errors"],
}

ERRORS = {
    "400": "The request is invalid; `errors` names each bad part.",
    "401": "No valid credentials (API key, customer token, session or basic auth).",
    "403": "The credentials do not allow this (missing permission or key scope, or another customer's data).",
    "404": "No such object.",
    "429": "Too many requests; retry after the time in the Retry-After header.",
}


def add_error_responses(result, generator, request, public):
    """Every operation documents the error answers it can give, all in the one error shape."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            codes = ["401", "403", "429"]
            if method in {"post", "put", "patch"} or operation.get("parameters"):
                codes.append("400")
            if "{" in path:
                codes.append("404")
            for code in codes:
                responses.setdefault(
                    code, {"description": ERRORS[code], "content": {"application/json": {"schema": ref}}}
                )
    return result
