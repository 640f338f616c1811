from rest_framework.permissions import BasePermission


def require_perms(*perms: str) -> type[BasePermission]:
    """A DRF permission class: an authenticated staff user holding every one of `perms`."""

    class _HasPerms(BasePermission):
        message = "You need the permission(s): " + ", ".join(perms) + "."

        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.is_staff and user.has_perms(perms))

    _HasPerms.__name__ = "HasPerms_" + "_".join(p.replace(".", "_") for p in perms)
    return _HasPerms
