"""OpenAPI: the error answers every operation can give, in the one error shape (common/api_errors.py).

A postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]). The schemes of the project's own
authentication classes are described next to them (accounts/schema.py).
"""

ERROR_ITEM_SCHEMA = {
    "type": "object",
    "description": "One bad part of the request: where it is (`field`, and `row` in a batch, or `path` in a rule) "
    "and why (`reason`; a rule preview's items say `message`).",
    "properties": {
        "field": {
            "type": "string",
            "description": "The field, dotted for nested ones (`segments[2]`); `(body)` for the body as a whole.",
        },
        "row": {"type": "integer", "minimum": 0, "description": "Batches: the row's position in the array (0-based)."},
        "path": {"type": "string", "description": "Rule previews: where in the rule, e.g. `all[1].event.type`."},
        "reason": {"type": "string", "description": "What is wrong with it, in a sentence."},
        "message": {"type": "string", "description": "Rule previews: what is wrong with it, in a sentence."},
    },
    "additionalProperties": False,
}

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in a sentence."},
        "errors": {
            "type": "array",
            "description": "One entry per bad part: a field (or row, or rule path) and the reason; "
            "empty when the request as a whole was refused (401, 403, 404, 429, 503).",
            "items": {"$ref": "#/components/schemas/ErrorItem"},
        },
    },
    "required": ["detail", "errors"],
    "additionalProperties": False,
}

ERRORS = {
    "400": "The request is invalid; `errors` names each bad part.",
    "401": "No valid credentials (API key, customer token, session or basic auth).",
    "403": "The credentials do not allow this (missing permission or key scope, or another customer's data).",
    "404": "No such object.",
    "413": "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE; nothing was read.",
    "429": "Too many requests; retry after the time in the Retry-After header.",
}


def add_error_responses(result, generator, request, public):
    """Every operation documents the error answers it can give, all in the one error shape."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA  # also what ErrorSerializer names in a view's declared answers
    schemas["ErrorItem"] = ERROR_ITEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            codes = ["401", "403", "429"]
            if method in {"post", "put", "patch"} or operation.get("parameters"):
                codes.append("400")
            if method in {"post", "put", "patch"}:
                codes.append("413")
            if "{" in path:
                codes.append("404")
            for code in codes:
                responses.setdefault(
                    code, {"description": ERRORS[code], "content": {"application/json": {"schema": ref}}}
                )
    return result
