"""Refuse, with a clear 400, requests whose path, query string or cookies carry a NUL character.

PostgreSQL text cannot hold NUL; without this a lookup by such an id or filter would fail deep in
the database driver with a 500 instead of telling the caller what is wrong.
"""
from django.http import JsonResponse


class RejectNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any("\x00" in k or any("\x00" in v for v in vs) for k, vs in request.GET.lists()):
            return JsonResponse(
                {"detail": "The URL contains a NUL character (%00), which no id or filter may contain.", "errors": []}, status=400
            )
        # a session or CSRF cookie is looked up in the database too
        if any("\x00" in k or "\x00" in v for k, v in request.COOKIES.items()):
            return JsonResponse({"detail": "A cookie contains a NUL character.", "errors": []}, status=400)
        return self.get_response(request)
