"""Refuse, with a clear 4xx, requests that would otherwise fail deep inside with a 500.

- NUL characters in the path, query string or cookies (400): PostgreSQL text cannot hold NUL;
  without this a lookup by such an id or filter would fail deep in the database driver.
- A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (413): Django enforces that limit only when it
  parses a form itself, and DRF's JSON parser reads the stream directly, so without this check a
  JSON body of any size would be read into memory and parsed. Multipart bodies are left to Django,
  which counts only their fields against the limit (uploaded files have their own settings).
"""

from django.conf import settings
from django.http import JsonResponse


def _too_large(request) -> int | None:
    """The declared body size when it exceeds the limit, else None."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None or request.content_type == "multipart/form-data":
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        return None
    return length if length > limit else None


class RejectNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any("\x00" in k or any("\x00" in v for v in vs) for k, vs in request.GET.lists()):
            return JsonResponse(
                {"detail": "The URL contains a NUL character (%00), which no id or filter may contain.", "errors": []},
                status=400,
            )
        # a session or CSRF cookie is looked up in the database too
        if any("\x00" in k or "\x00" in v for k, v in request.COOKIES.items()):
            return JsonResponse({"detail": "A cookie contains a NUL character.", "errors": []}, status=400)
        size = _too_large(request)
        if size is not None:
            return JsonResponse(
                {
                    "detail": f"The request body is {size} bytes; at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} are "
                    "accepted "
                    "(send a large batch as several smaller ones).",
                    "errors": [],
                },
                status=413,
            )
        return self.get_response(request)
