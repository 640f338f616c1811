"""
Who may call the API: operators (staff with model permissions), the shop's backend (API keys with
scopes) and customers themselves (short-lived signed tokens the backend obtains for them).

Views declare access in one place, e.g.

    permission_classes = [
        anyone_of(Operator("profiles.view_profile"), KeyScope("read_recommendations"), CustomerSelf())
    ]

and the authentication classes below tell who is calling:

- `Authorization: Api-Key <prefix>.<secret>` → `request.auth` is the ApiKey (hash compared in
  constant time; revoked keys are refused);
- `Authorization: Customer <token>` → `request.auth` is a CustomerToken for one customer's
  external id, signed with SECRET_KEY and expiring after CUSTOMER_TOKEN_TTL_SECONDS; it also names
  the customer row's id and is refused once that row is gone or renamed (erasure), so it never
  opens a customer created again under the same external id;
- a session (the admin's, with CSRF) or HTTP Basic → a staff user.

Each server process remembers the API keys it has looked up, for up to `API_KEY_CACHE_SECONDS`
(default 5), instead of querying the database on every request (the customer-facing endpoints serve
hundreds of requests a second, each carrying a token of the same key). Revocation still takes effect
at once in every process: any change to a key (revoked, scopes changed, deleted; model signals, after
the transaction commits) moves on a generation number in the shared cache, and every request reads
that number (one cache GET) and looks the key up again when it has moved. When the number cannot be
read (the cache is unreachable) or the cache is not shared between processes (the default per-process
memory cache, CACHE_URL unset), the key is looked up in the database on every request: the
remembered copy is never trusted without the signal. `last_used_at` is written at most once per
`API_KEY_CACHE_SECONDS` per process.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.core import signing
from django.core.cache import cache, caches
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.connection import ConnectionProxy
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.throttling import ScopedRateThrottle

from common.cache import cache_is_shared

from .models import ApiKey

TOKEN_SALT = "marketing.customer-token"

log = logging.getLogger(__name__)


# --- API keys ----------------------------------------------------------------------------------


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, scopes: list[str], user=None) -> tuple[ApiKey, str]:
    """Create a key; returns it and the full key text, which is shown once and never stored."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, prefix=prefix, hashed_secret=_hash(secret), scopes=list(scopes), created_by=user
    )
    return key, f"{prefix}.{secret}"


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    _known_keys.pop(key.prefix, None)


@dataclass
class _KnownKey:
    key: ApiKey  # shared by the requests of this process: read it, never change it
    fetched: float  # time.monotonic() of the lookup
    touched: float  # when this process last wrote last_used_at
    generation: int | None  # the keys' generation read (before the lookup) from the shared cache


_known_keys: dict[str, _KnownKey] = {}

# The keys' generation in the shared cache: any change to any key moves it on, and a process trusts a
# key it remembers only while the generation is the one it read before looking the key up.
KEYS_GENERATION = "access:api-keys:generation"
_outage_logged = [float("-inf")]


def _key_cache_seconds() -> float:
    return float(settings.API_KEY_CACHE_SECONDS)


def _generation() -> int | None:
    """The keys' current generation, or None when it cannot be relied on (the cache is per process or
    unreachable): then the caller looks the key up in the database."""
    if not cache_is_shared():
        return None
    try:
        generation = cache.get(KEYS_GENERATION)
        if generation is None:  # never set, evicted, or the cache restarted: start from a random number
            cache.add(KEYS_GENERATION, secrets.randbits(62), timeout=None)
            generation = cache.get(KEYS_GENERATION)
        return generation
    except Exception:
        now = time.monotonic()
        if now - _outage_logged[0] >= 60:
            _outage_logged[0] = now
            log.warning("API keys are looked up on every request: the cache is unreachable", exc_info=True)
        return None


def _revocation_signal() -> None:
    """Tell every process that a key changed or a customer was forgotten (called once the change is
    committed): each forgets what it remembered of keys and live customer rows."""
    try:
        try:
            cache.incr(KEYS_GENERATION)
        except ValueError:  # not in the cache: any new random number differs from the one processes hold
            if not cache.add(KEYS_GENERATION, secrets.randbits(62), timeout=None):
                cache.incr(KEYS_GENERATION)
    except Exception:
        log.error(
            "an API key change could not be signalled (the cache is unreachable): other server processes may "
            "accept the key as it was for up to API_KEY_CACHE_SECONDS (%s s)",
            _key_cache_seconds(),
            exc_info=True,
        )


@receiver(post_save, sender=ApiKey, dispatch_uid="accounts.access.api_key_saved")
def _api_key_saved(sender, instance, created, **kwargs):
    _known_keys.pop(instance.prefix, None)
    if not created:  # a new key is not remembered anywhere yet
        transaction.on_commit(_revocation_signal)


@receiver(post_delete, sender=ApiKey, dispatch_uid="accounts.access.api_key_deleted")
def _api_key_deleted(sender, instance, **kwargs):
    _known_keys.pop(instance.prefix, None)
    transaction.on_commit(_revocation_signal)


def access_changed() -> None:
    """A change that remembered keys or customer rows must not outlive (a forgotten customer): signal
    it to every process once the current transaction commits."""
    transaction.on_commit(_revocation_signal)


_UNREAD = object()


@receiver(post_delete, sender=settings.CUSTOMER_MODEL, dispatch_uid="accounts.access.customer_deleted")
def _customer_deleted(sender, instance, **kwargs):
    _live_customers.pop((instance.pk, instance.external_id), None)
    transaction.on_commit(_revocation_signal)


def _key_by_prefix(prefix: str, *, generation=_UNREAD) -> ApiKey | None:
    """The key with this prefix: remembered in this process for up to API_KEY_CACHE_SECONDS while no
    key has changed since (one cache GET per call), else looked up in the database.

    Unknown prefixes are not remembered, so a key created elsewhere works at once."""
    now = time.monotonic()
    if generation is _UNREAD:
        generation = _generation()  # read before the lookup: a change committed after it moves it on
    known = _known_keys.get(prefix)
    if (
        known is not None
        and generation is not None
        and known.generation == generation
        and now - known.fetched < _key_cache_seconds()
    ):
        return known.key
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is None:
        _known_keys.pop(prefix, None)
        return None
    _known_keys[prefix] = _KnownKey(
        key=key, fetched=now, touched=known.touched if known else float("-inf"), generation=generation
    )
    return key


def _key_used(key: ApiKey) -> None:
    known = _known_keys.get(key.prefix)
    now = time.monotonic()
    if known is None or now - known.touched >= _key_cache_seconds():
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        if known is not None:
            known.touched = now


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(self.keyword + " "):
            return None
        raw = header[len(self.keyword) + 1 :].strip()
        prefix, _, secret = raw.partition(".")
        key = _key_by_prefix(prefix) if prefix and secret else None
        if key is None or not hmac.compare_digest(key.hashed_secret, _hash(secret)):
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API key was revoked.")
        _key_used(key)
        return (KeyPrincipal(key), key)

    def authenticate_header(self, request):
        return self.keyword


# --- customer tokens ---------------------------------------------------------------------------


def _customer_model():
    """The customers' model, settings.CUSTOMER_MODEL ("profiles.Customer"): accounts sits below the app
    that holds customers and knows it only by that name, as Django's auth knows AUTH_USER_MODEL."""
    return apps.get_model(settings.CUSTOMER_MODEL)


@dataclass(frozen=True)
class CustomerToken:
    customer: str  # the customer's external id
    key_prefix: str


def customer_token_issue(
    *, customer_external_id: str, key: ApiKey, ttl: int | None = None, customer_id: int | None = None
) -> tuple[str, int]:
    """A token for one customer row: it names the row's id as well as its external id, so it dies with
    the row (erasure renames it) and never opens a customer later created again under the same id."""
    if customer_id is None:
        customer_id = (
            _customer_model().objects.filter(external_id=customer_external_id).values_list("pk", flat=True).first()
        )
        if customer_id is None:
            raise ValueError(f"No customer with external_id {customer_external_id!r}.")
    ttl = min(ttl or settings.CUSTOMER_TOKEN_TTL_SECONDS, settings.CUSTOMER_TOKEN_MAX_TTL_SECONDS)
    token = signing.dumps(
        {"c": customer_external_id, "p": customer_id, "k": key.prefix, "t": ttl}, salt=TOKEN_SALT, compress=True
    )
    return token, ttl


@dataclass(frozen=True)
class _TokenClaims:
    customer: str
    key_prefix: str
    signed_at: int  # seconds since the epoch; covered by the signature
    ttl: int | None  # the token's own lifetime
    customer_id: int | None  # the customer row's id (tokens issued before it was carried have none)


# Tokens whose signature this process has checked. A frontend sends the same token with every call
# for up to an hour, so the signature is checked once; lifetimes and the issuing key are checked on
# every call. Bounded (emptied when full) and forgotten when SECRET_KEY changes.
_verified_tokens: dict[str, _TokenClaims] = {}
_verified_with: list[str] = [""]
VERIFIED_TOKENS_MAX = 20_000


def _token_claims(token: str) -> _TokenClaims:
    """The token's claims if its signature is good; raises signing.BadSignature otherwise."""
    if _verified_with[0] != settings.SECRET_KEY:
        _verified_tokens.clear()
        _verified_with[0] = settings.SECRET_KEY
    claims = _verified_tokens.get(token)
    if claims is None:
        data = signing.loads(token, salt=TOKEN_SALT)  # the ages are checked by the caller
        # "payload:timestamp:signature"; the signature covers the timestamp
        signed_at = signing.b62_decode(token.rsplit(":", 2)[-2])
        claims = _TokenClaims(
            customer=str(data["c"]),
            key_prefix=str(data.get("k")),
            signed_at=signed_at,
            ttl=data.get("t"),
            customer_id=data.get("p"),
        )
        if len(_verified_tokens) >= VERIFIED_TOKENS_MAX:
            _verified_tokens.clear()
        _verified_tokens[token] = claims
    return claims


# Customer rows this process has seen alive: (row id, external id) -> (generation, time.monotonic()).
# Trusted, like remembered keys, only while the shared generation has not moved (forgetting a customer
# moves it) and for at most API_KEY_CACHE_SECONDS; otherwise the database is asked.
_live_customers: dict[tuple[int, str], tuple[int, float]] = {}
LIVE_CUSTOMERS_MAX = 200_000


def _customer_row_lives(claims: _TokenClaims, *, generation: int | None) -> bool:
    """The token's customer row still exists under the token's external id (a primary-key look-up,
    remembered per process while no customer has been forgotten since).

    A forgotten customer's row is renamed, and a customer created again under the same external id
    is a new row, so a token issued before the erasure never works again. Tokens without a row id
    (issued before they carried one) are refused: they would open whoever holds the id now."""
    from django.db import connection

    if claims.customer_id is None:
        return False
    memo_key = (claims.customer_id, claims.customer)
    now = time.monotonic()
    seen = _live_customers.get(memo_key)
    if generation is not None and seen is not None and seen[0] == generation and now - seen[1] < _key_cache_seconds():
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {_customer_model()._meta.db_table} WHERE id = %s AND external_id = %s",
            [claims.customer_id, claims.customer],
        )
        alive = cursor.fetchone() is not None
    if alive and generation is not None:
        if len(_live_customers) >= LIVE_CUSTOMERS_MAX:
            _live_customers.clear()
        _live_customers[memo_key] = (generation, now)
    else:
        _live_customers.pop(memo_key, None)
    return alive


class CustomerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Customer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(self.keyword + " "):
            return None
        token = header[len(self.keyword) + 1 :].strip()
        try:
            claims = _token_claims(token)
        except signing.BadSignature as exc:
            raise exceptions.AuthenticationFailed("Invalid customer token.") from exc
        # no token outlives CUSTOMER_TOKEN_MAX_TTL_SECONDS, and each carries its own (shorter) lifetime
        age = time.time() - claims.signed_at
        own_ttl = settings.CUSTOMER_TOKEN_TTL_SECONDS if claims.ttl is None else int(claims.ttl)
        if age > settings.CUSTOMER_TOKEN_MAX_TTL_SECONDS or age > own_ttl:
            raise exceptions.AuthenticationFailed("The customer token has expired; ask the shop for a new one.")
        generation = _generation()  # one cache read serves the key and the customer row
        key = _key_by_prefix(claims.key_prefix, generation=generation)
        if key is None or key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("The API key that issued this customer token was revoked.")
        if not _customer_row_lives(claims, generation=generation):
            raise exceptions.AuthenticationFailed(
                "This customer token's customer no longer exists; ask the shop for a new one."
            )
        principal = CustomerToken(customer=claims.customer, key_prefix=key.prefix)
        return (CustomerPrincipal(principal.customer), principal)

    def authenticate_header(self, request):
        return self.keyword


# --- principals --------------------------------------------------------------------------------


class _Principal:
    is_authenticated = True
    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False
    pk = None
    id = None

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def has_perms(self, perms, obj=None) -> bool:
        return False


class KeyPrincipal(_Principal):
    def __init__(self, key: ApiKey):
        self.key = key
        self.username = f"api-key:{key.prefix}"

    def __str__(self) -> str:
        return self.username


class CustomerPrincipal(_Principal):
    def __init__(self, external_id: str):
        self.customer_external_id = external_id
        self.username = f"customer:{external_id}"

    def __str__(self) -> str:
        return self.username


# --- permissions -------------------------------------------------------------------------------


class Operator(BasePermission):
    """A staff user holding every one of the given model permissions."""

    def __init__(self, *perms: str):
        self.perms = perms
        self.message = "You need the permission(s): " + ", ".join(perms) + "."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and getattr(user, "is_staff", False) and user.is_authenticated and user.has_perms(self.perms))


class KeyScope(BasePermission):
    """An API key with the given scope."""

    def __init__(self, scope: str):
        self.scope = scope
        self.message = f"This API key lacks the scope '{scope}'."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ApiKey) and self.scope in (request.auth.scopes or [])


class CustomerSelf(BasePermission):
    """A customer token for the customer named in the URL (`external_id`), and only that one."""

    message = "A customer token gives access to its own customer only."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, CustomerToken) and request.auth.customer == view.kwargs.get("external_id")


class AnyCustomer(BasePermission):
    """Any valid customer token (for data that is not any customer's own, e.g. similar items)."""

    message = "A customer token is needed."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, CustomerToken)


def anyone_of(*rules: BasePermission) -> type[BasePermission]:
    """A permission class granting access when any rule does; the refusal names what was needed."""

    class AnyOf(BasePermission):
        def has_permission(self, request, view) -> bool:
            for rule in rules:
                if rule.has_permission(request, view):
                    return True
            # the most relevant reason: the one for the kind of caller this is
            if isinstance(request.auth, ApiKey):
                relevant = [r for r in rules if isinstance(r, KeyScope)]
            elif isinstance(request.auth, CustomerToken):
                relevant = [r for r in rules if isinstance(r, (CustomerSelf, AnyCustomer))]
            else:
                relevant = [r for r in rules if isinstance(r, Operator)]
            self.message = " ".join(r.message for r in relevant) or "You may not do this."
            if isinstance(request.auth, CustomerToken) and not relevant:
                self.message = "A customer token does not give access to this endpoint."
            return False

    AnyOf.__name__ = "AnyOf_" + "_".join(type(r).__name__ for r in rules)
    return AnyOf


class CallerRateThrottle(ScopedRateThrottle):
    """Per-view-scope rates, counted per caller: a user, an API key or a customer token's customer.

    DRF keys authenticated callers by user id; API keys and customers have none, so without this
    they would all share one budget. Counted in the "throttle" cache: per process unless
    API_THROTTLE_SHARED (config/settings.py says why).
    """

    cache = ConnectionProxy(caches, "throttle")

    def allow_request(self, request, view):
        # The counters live in the cache (Redis with CACHE_URL): if it is unreachable, requests are
        # served unthrottled rather than refused, so ingestion does not go down with the cache.
        try:
            return super().allow_request(request, view)
        except Exception:
            log.warning("throttle cache unreachable; %s requests are not throttled", self.scope, exc_info=True)
            return True

    def get_cache_key(self, request, view):
        user = request.user
        if isinstance(user, (KeyPrincipal, CustomerPrincipal)):
            ident = user.username
        elif user and user.is_authenticated:
            ident = f"user:{user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
