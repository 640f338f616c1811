"""
Settings, read from the environment.

Every value has a safe default for the demo (SQLite file, Celery eager); secrets have no
production default: with DEBUG off the app refuses to start without SECRET_KEY.
See docs/configuration.md for the full list.
"""

import json
import os
import warnings
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    """The variable's text, or `default` when it is unset or empty."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def env_json(name: str, default):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} must be JSON: {exc}") from exc


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "demo-only-insecure-secret-key-do-not-deploy"
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
            "(or DEBUG=1 for a local demo, which uses a throwaway key)."
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# HTTPS (docs/security.md). HTTPS_ONLY — on by default whenever DEBUG is off — redirects plain HTTP
# to HTTPS, marks the session and CSRF cookies secure and sends HSTS. Behind a proxy that ends TLS,
# set TRUST_X_FORWARDED_PROTO=1 so the app knows the request was secure (else it redirects forever).
# HTTPS_ONLY=0 is for serving plain HTTP on loopback (benchmarks, a private network).
HTTPS_ONLY = env_bool("HTTPS_ONLY", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS_ONLY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS_ONLY)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS_ONLY)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600) if HTTPS_ONLY else "0"))
# HSTS covers the names under the app's own (e.g. *.marketing.shop.example) and allows preloading;
# turn these off if such names must stay reachable over plain HTTP.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS_ONLY)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS_ONLY)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    # Django's admin and auth, and django-celery-beat below, under the console's site and names
    # (accounts/library_apps.py, accounts/sites.py).
    "accounts.library_apps.MarketingAdminConfig",
    "accounts.library_apps.AccessAuthConfig",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the app (no CDN: the CSP allows 'self' only)
    "csp",
    "accounts.library_apps.SchedulesConfig",
    "accounts",
    "pipeline",
    "profiles",
    "segments",
    "recommendations",
    "experiments",
    "campaigns",
]

# The admin's index and sidebar (accounts/sites.py): groups named for the work, in this order. Each
# group is (app label, patterns of "app_label.model_name"): it takes the app's verbose_name and index
# page, and shows the models the patterns match, in the patterns' order.
ADMIN_GROUPS = [
    ("profiles", ["profiles.customer", "profiles.event", "profiles.item", "profiles.*"]),
    ("segments", ["segments.segment", "segments.*"]),
    ("recommendations", ["recommendations.*"]),
    ("experiments", ["experiments.experiment", "experiments.*"]),
    ("campaigns", ["campaigns.campaign", "campaigns.*"]),
    ("pipeline", ["pipeline.*"]),
    ("accounts", ["auth.user", "auth.group", "accounts.apikey", "accounts.*", "auth.*"]),
    ("django_celery_beat", ["django_celery_beat.periodictask", "django_celery_beat.*"]),
]
# Groups shown to superusers only, named "... (administrators)": the plumbing. So is any registered
# model that no group lists.
ADMIN_ADMINISTRATOR_APPS = ["django_celery_beat"]

# The recomputation's steps, run in this order (pipeline/steps.py): each app declares its own in
# its steps.py. A step not listed here is not run, offered or scheduled.
PIPELINE_STEPS = [
    "profiles.steps.profiles",
    "segments.steps.segments",
    "recommendations.steps.recommendations",
    "experiments.steps.experiments",
]

# What each app holds about a customer (profiles/privacy.py): a module per app with export(customer)
# and forget(customer). Exports list their data in this order; forgetting runs in this order,
# before the customer's own events, profile and consent history go.
PRIVACY_HOOKS = [
    "segments.privacy",
    "recommendations.privacy",
    "experiments.privacy",
    "campaigns.privacy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS/JS, Chart.js) served by the app itself, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "common.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy on every answer (docs/security.md): scripts only from the app's own files —
# no inline script, no inline event handler, no eval — so text an operator or a customer wrote can
# never run as script, even where a page forgets to escape it. Page data reaches the page scripts
# through json_script islands. Inline *styles* stay allowed (the admin and our templates use style
# attributes); styles cannot run script.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],  # Swagger UI's icons are data: URIs
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # {% load marketing %}: percentages, money, rounded numbers (common/display.py)
            "libraries": {"marketing": "common.display_tags"},
        },
    },
]

# The customer's admin page (the "360"), section by section in page order: functions
# ``section(customer, *, request) -> profiles.customer_page.Section | None``, each in its app's
# customer_page.py with its template fragment; a section says where it goes (the header card, the
# main column or the side one). Listed here because profiles imports none of the apps above it.
CUSTOMER_ADMIN_SECTIONS = [
    "profiles.customer_page.summary",
    "profiles.customer_page.predictions",
    "segments.customer_page.segments",
    "profiles.customer_page.timeline",
    "profiles.customer_page.interests",
    "recommendations.customer_page.suggestions",
    "experiments.customer_page.experiments",
    "profiles.customer_page.consent_history",
]
# Words for the timeline's events that another app recorded: ``labels(events, *, request) -> {event id: text}``.
CUSTOMER_TIMELINE_LABELS = ["campaigns.customer_page.message_labels"]

WSGI_APPLICATION = "config.wsgi.application"

# Database: DATABASE_URL, default an SQLite file in the repo (git-ignored).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the admin read while an import writes; IMMEDIATE avoids lock-upgrade deadlocks.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in protection (accounts/signin.py, docs/security.md): Django's model backend, refusing while
# a username from an address (LOGIN_FAILURE_LIMIT), an address (..._PER_IP) or, from addresses it has
# not signed in from within LOGIN_KNOWN_ADDRESS_DAYS, a username (..._PER_USERNAME) is locked.
AUTHENTICATION_BACKENDS = ["accounts.signin.SignInThrottleBackend"]
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_LIMIT_PER_IP = int(os.environ.get("LOGIN_FAILURE_LIMIT_PER_IP", "20"))
LOGIN_FAILURE_LIMIT_PER_USERNAME = int(os.environ.get("LOGIN_FAILURE_LIMIT_PER_USERNAME", "100"))
LOGIN_KNOWN_ADDRESS_DAYS = float(os.environ.get("LOGIN_KNOWN_ADDRESS_DAYS", "30"))
LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "900"))
# The client's address (sign-in lockout, API throttles): the peer's, unless this many proxies in
# front each append to X-Forwarded-For (1 for one nginx); never set it when clients reach the app
# directly, or they choose their own address.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

# The cache holds throttling and sign-in counters: per process by default; CACHE_URL=redis://...
# shares them between the processes of a deployment.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "common.cache.RedisCache", "LOCATION": CACHE_URL}  # Django's, one client per pool
    if CACHE_URL.startswith(("redis://", "rediss://", "unix://"))
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "marketing"}
}
# API throttles (accounts/access.py CallerRateThrottle) count in each server process unless
# API_THROTTLE_SHARED=1: a caller's budget is then the rate times the number of processes, and the
# hot read path makes one round trip to Redis (the keys' generation) instead of three. Sign-in
# lockouts and the keys' generation always use the shared cache (CACHE_URL). docs/configuration.md.
API_THROTTLE_SHARED = os.environ.get("API_THROTTLE_SHARED", "0") == "1"
CACHES["throttle"] = (
    CACHES["default"]
    if API_THROTTLE_SHARED
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "marketing-throttle"}
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves static files in every mode. `manage.py collectstatic` gathers them (compressed)
# into STATIC_ROOT for a deployment; until it has run, they are found in the apps (WHITENOISE_USE_FINDERS).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
# Until collectstatic has run, the finders serve the files: no need to warn that var/static is missing.
warnings.filterwarnings("ignore", message=r"No directory at: .*var[/\\]static")
WHITENOISE_MAX_AGE = int(os.environ.get("WHITENOISE_MAX_AGE", "3600"))

# A batch of 10,000 events is a few MB of JSON; refuse anything far beyond that.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", str(20 * 1024 * 1024)))

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.access.ApiKeyAuthentication",
        "accounts.access.CustomerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "accounts.signin.ThrottledBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # The API speaks JSON only (batches are arrays, which forms cannot carry).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "MAX_PAGE_SIZE": 500,
    "EXCEPTION_HANDLER": "common.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["accounts.access.CallerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        # per customer token / API key / user (ScopedRateThrottle keys on the caller)
        "customer": os.environ.get("THROTTLE_CUSTOMER", "120/min"),
        "ingest": os.environ.get("THROTTLE_INGEST", "600/min"),
        "customer_tokens": os.environ.get("THROTTLE_CUSTOMER_TOKENS", "3000/min"),
    },
}
# DRF's throttles find the client the same way (its default, None, trusts any X-Forwarded-For).
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT

SPECTACULAR_SETTINGS = {
    "TITLE": "Marketing platform API",
    "DESCRIPTION": "Events in; profiles, segments, recommendations and campaigns out.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "common.schema.add_error_responses"],
    # The item kind appears under several field names; one enum name for it.
    "ENUM_NAME_OVERRIDES": {
        "ItemKindEnum": "profiles.models.ItemKind",
        # several models call their choices "status" or "reason": one name each
        "ChannelEnum": "campaigns.models.Channel",
        "CampaignStatusEnum": "campaigns.models.CampaignStatus",
        "DeliveryStatusEnum": "campaigns.models.DeliveryStatus",
        "SuppressReasonEnum": "campaigns.models.SuppressReason",
        "RecommendationReasonEnum": "recommendations.models.Reason",
        "SegmentKindEnum": "segments.models.SegmentKind",
        "ExperimentStatusEnum": "experiments.models.ExperimentStatus",
        "ExperimentMetricEnum": "experiments.models.Metric",
    },
    # Swagger UI from drf-spectacular-sidecar's static files: works offline and under the CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # no online validator badge (an image from validator.swagger.io, which the CSP refuses)
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Celery -------------------------------------------------------------------------------
# Without a broker URL, tasks run eagerly in-process (the embedded demo default).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or None)
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "3600"))
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "3300"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING above (with its personal-data filter) rather than Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Reliability (docs/reliability.md): publishing retries through a broker blip; a message unacknowledged
# this long is redelivered (must exceed the longest task time limit); the worker reconnects forever;
# results survive a result-backend blip.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 3}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max(7200, 2 * int(os.environ.get("CELERY_TASK_TIME_LIMIT", "3600")))
}
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
# The pipeline's lease: a heartbeat renews it every third; a dead holder's lapses within this many seconds.
PIPELINE_LEASE_SECONDS = int(os.environ.get("PIPELINE_LEASE_SECONDS", "900"))
# The compute backend of the pipeline's heavy steps (pipeline/steps.py, docs/spark.md): "local" (numpy
# and the database, in the worker) or "spark" (Apache Spark; PostgreSQL only, read and written over JDBC).
PIPELINE_BACKEND = env("PIPELINE_BACKEND", "local").strip().lower()
if PIPELINE_BACKEND not in ("local", "spark"):
    raise ImproperlyConfigured(f"PIPELINE_BACKEND must be 'local' or 'spark', not {PIPELINE_BACKEND!r}")
# Reaching Spark (common/spark.py): a Spark Connect server (sc://host:15002; the worker then needs no
# JVM), else a master URL (spark://host:7077, yarn, k8s://...; local[2] runs Spark inside the worker).
SPARK_REMOTE = env("SPARK_REMOTE", "")
SPARK_MASTER = env("SPARK_MASTER", "local[2]")
# What a Spark operator sizes: executors, their cores and memory, the driver's memory, and the
# partitions of a shuffle (about 2-3 per executor core; Spark's own default is 200).
SPARK_EXECUTOR_INSTANCES = int(env("SPARK_EXECUTOR_INSTANCES", "2"))
SPARK_EXECUTOR_CORES = int(env("SPARK_EXECUTOR_CORES", "2"))
SPARK_EXECUTOR_MEMORY = env("SPARK_EXECUTOR_MEMORY", "2g")
SPARK_DRIVER_MEMORY = env("SPARK_DRIVER_MEMORY", "2g")
SPARK_SHUFFLE_PARTITIONS = int(env("SPARK_SHUFFLE_PARTITIONS", "8"))
# Further Spark properties, as JSON ({"spark.eventLog.enabled": "true"}); they win over the above.
SPARK_CONF = env_json("SPARK_CONF", {})
# PostgreSQL's JDBC driver (Debian's libpostgresql-jdbc-java), which the Spark driver and executors load.
SPARK_JDBC_JAR = env("SPARK_JDBC_JAR", "/usr/share/java/postgresql.jar")
# Parallel JDBC reads: the events are read in this many partitions by customer id range.
SPARK_JDBC_PARTITIONS = int(env("SPARK_JDBC_PARTITIONS", "4"))
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Filled at the end of this file, once the schedule's own settings are read.
CELERY_BEAT_SCHEDULE: dict = {}

# --- The product -------------------------------------------------------------------------
# The shop's currency (ISO 4217 code): money on the console's pages is written in it (common/display.py).
SHOP_CURRENCY = env("SHOP_CURRENCY", "EUR").upper()
# How much each implicit event type counts as evidence of interest. Ratings are explicit and
# used as they are. Override with EVENT_WEIGHTS='{"view": 1, ...}' (merged over these).
EVENT_WEIGHTS = {
    "view": 1.0,
    "click": 1.5,
    "search": 0.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "favorite": 3.0,
    "like": 2.0,
    "comment": 2.0,
    "post": 2.0,
    "share": 2.5,
    "return": 0.0,
    # a campaign's message: being sent one says nothing of the customer; clicking it says a little
    "message_delivered": 0.0,
    "message_opened": 0.0,
    "message_clicked": 1.5,
    **env_json("EVENT_WEIGHTS", {}),
}
# Exponential time decay of implicit feedback: an event this many days old counts half.
EVENT_DECAY_HALF_LIFE_DAYS = float(os.environ.get("EVENT_DECAY_HALF_LIFE_DAYS", "60"))

# Ingestion.
INGEST_MAX_BATCH = int(os.environ.get("INGEST_MAX_BATCH", "10000"))
# Unknown customers/items named by events: created on the fly (True) or rejected (False).
INGEST_CREATE_UNKNOWN = env_bool("INGEST_CREATE_UNKNOWN", True)
# Events stamped further in the future than this are refused (clock skew allowance).
INGEST_MAX_FUTURE_SKEW_SECONDS = int(os.environ.get("INGEST_MAX_FUTURE_SKEW_SECONDS", "300"))
INGEST_CHUNK_SIZE = int(os.environ.get("INGEST_CHUNK_SIZE", "20000"))
# The batch endpoints (events, customers, items) do their work in BULK_WRITE_THREADS threads per
# server process at this nice value (Linux, per thread), below the frontend's reads; 0 runs it in
# the request's own thread at its priority (common/lanes.py).
BULK_WRITE_NICE = int(os.environ.get("BULK_WRITE_NICE", "10"))
BULK_WRITE_THREADS = int(os.environ.get("BULK_WRITE_THREADS", "2"))

# Public datasets used by importers, evaluation and benchmarks. Never copied into the repo.
DATASETS_DIR = Path(os.environ.get("DATASETS_DIR", BASE_DIR.parent / "shared" / "datasets"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Customers' e-mail addresses and names never reach a log line (config/logfilters.py).
    "filters": {"redact_personal_data": {"()": "config.logfilters.RedactPersonalData"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_personal_data"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own loggers lose the handlers of its default configuration (which carry no filter: the
    # DEBUG console, admin e-mails, the development server's access lines) and log through the root's.
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        # redis-py gives this logger a handler of its own (no filter) unless it already exists
        "push_response": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

# Profiles: the frequency/monetary window and the lifecycle thresholds (days). A customer is
# "new" with one order placed within LIFECYCLE_NEW_DAYS; otherwise "active" if the last purchase
# is within LIFECYCLE_ACTIVE_DAYS, "at-risk" within LIFECYCLE_AT_RISK_DAYS, "lapsed" beyond;
# "never-bought" without a purchase. See docs/profiles.md.
PROFILE_WINDOW_DAYS = float(os.environ.get("PROFILE_WINDOW_DAYS", "365"))
PROFILE_RECENT_DAYS = float(os.environ.get("PROFILE_RECENT_DAYS", "30"))
LIFECYCLE_NEW_DAYS = float(os.environ.get("LIFECYCLE_NEW_DAYS", "30"))
LIFECYCLE_ACTIVE_DAYS = float(os.environ.get("LIFECYCLE_ACTIVE_DAYS", "90"))
LIFECYCLE_AT_RISK_DAYS = float(os.environ.get("LIFECYCLE_AT_RISK_DAYS", "180"))
# Predictions (docs/profiles.md, "Predictions"): orders, spend, churn risk and category affinity
# over this many days after the profile run's time.
PREDICTION_HORIZON_DAYS = int(os.environ.get("PREDICTION_HORIZON_DAYS", "90"))
# Customers per chunk when profiles are computed (bounds memory: their events are read at once).
PROFILE_CHUNK_CUSTOMERS = int(os.environ.get("PROFILE_CHUNK_CUSTOMERS", "50000"))

# Segments: k is chosen in this range unless pinned (SEGMENT_K); MiniBatchKMeans above the size.
SEGMENT_K_MIN = int(os.environ.get("SEGMENT_K_MIN", "2"))
SEGMENT_K_MAX = int(os.environ.get("SEGMENT_K_MAX", "10"))
SEGMENT_K = int(os.environ["SEGMENT_K"]) if os.environ.get("SEGMENT_K") else None
SEGMENT_METHOD = os.environ.get("SEGMENT_METHOD", "kmeans")  # or "agglomerative"
SEGMENT_RANDOM_STATE = int(os.environ.get("SEGMENT_RANDOM_STATE", "0"))

# Operator queries (docs/security.md, "Expensive queries"). A rule's cost is bounded before it
# runs (segments/rules.py): conditions (all / any / not count too), event conditions (each a scan
# of the events), nesting depth, values in one list. Previews, member lists, refreshes started from
# the admin, campaign reports, audience counts and the dashboard's reports run under a PostgreSQL
# statement timeout (common/operator_queries.py; 0 = none; SQLite has no such timeout).
# Recomputations and other pipeline work keep no timeout.
RULE_MAX_CONDITIONS = int(os.environ.get("RULE_MAX_CONDITIONS", "50"))  # nodes of the tree: all / any / not and leaves
RULE_MAX_EVENT_CONDITIONS = int(os.environ.get("RULE_MAX_EVENT_CONDITIONS", "10"))  # {"event": ...} leaves
RULE_MAX_DEPTH = int(os.environ.get("RULE_MAX_DEPTH", "10"))  # levels of nesting
# values of an `in` / `not in` list, or event types of one condition
RULE_MAX_LIST_VALUES = int(os.environ.get("RULE_MAX_LIST_VALUES", "200"))
OPERATOR_QUERY_TIMEOUT_MS = int(os.environ.get("OPERATOR_QUERY_TIMEOUT_MS", "5000"))

# The pipeline's schedule (Celery beat, synced into django-celery-beat's tables where operators
# can change it): the full pipeline nightly, incremental profiles through the day.
PIPELINE_NIGHTLY_HOUR = int(os.environ.get("PIPELINE_NIGHTLY_HOUR", "2"))
PROFILES_INCREMENTAL_MINUTES = int(os.environ.get("PROFILES_INCREMENTAL_MINUTES", "30"))

from celery.schedules import crontab  # noqa: E402

CELERY_BEAT_SCHEDULE = {
    "pipeline-nightly": {
        "task": "profiles.tasks.pipeline_scheduled",
        "schedule": crontab(hour=PIPELINE_NIGHTLY_HOUR, minute=0),
        "kwargs": {"steps": None},
    },
    "profiles-incremental": {
        "task": "profiles.tasks.pipeline_scheduled",
        "schedule": crontab(minute=f"*/{PROFILES_INCREMENTAL_MINUTES}"),
        # the customers with new events: their profiles, then their segments (segments/services.py)
        "kwargs": {"steps": ["profiles", "segments"], "incremental": True},
    },
    # runs whose worker died are recorded as abandoned (with the step they died in)
    "pipeline-recover": {"task": "profiles.tasks.pipeline_recover", "schedule": crontab(minute="*/5")},
}

# Bulk reads of events on PostgreSQL stream through the psql client when it is installed (C speed);
# without it, or with this off, they go through psycopg's COPY (slower on tens of millions of rows).
BULK_READ_WITH_PSQL = env_bool("BULK_READ_WITH_PSQL", True)

# Access: each server process remembers an API key for up to this many seconds while no key has
# changed (a generation number in the shared cache, read per request); a revocation reaches every
# process at once. Without a shared cache (CACHE_URL) keys are looked up on every request; see
# accounts/access.py.
API_KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "5"))
# The suggestions query is prepared once per PostgreSQL connection; turn off behind PgBouncer in
# transaction mode.
RECOMMENDATIONS_PREPARED_STATEMENTS = env_bool("RECOMMENDATIONS_PREPARED_STATEMENTS", True)
# Who decides which suggestions a customer is served: a function of the customer's external id that
# returns a run channel ("" = the shop's own suggestions). The experiments app routes the customers in
# a running experiment to their variant's suggestions (experiments/routing.py); empty: no routing.
RECOMMENDATIONS_ROUTER = os.environ.get("RECOMMENDATIONS_ROUTER", "experiments.routing.channel_for")
# Experiments (docs/experiments.md): the share of customers (percent) kept out of every experiment, so
# the shop always has customers served as usual; how long each process trusts its list of running
# experiments before asking the database again (the router's only cost when none is running).
EXPERIMENTS_HOLDOUT_PERCENT = float(env("EXPERIMENTS_HOLDOUT_PERCENT", "0"))
EXPERIMENTS_ROUTER_CACHE_SECONDS = float(env("EXPERIMENTS_ROUTER_CACHE_SECONDS", "5"))
# Event types that count as a click on a suggestion shown, and as a purchase of it.
EXPERIMENTS_CLICK_EVENT_TYPES = env_list("EXPERIMENTS_CLICK_EVENT_TYPES", "click")
EXPERIMENTS_PURCHASE_EVENT_TYPES = env_list("EXPERIMENTS_PURCHASE_EVENT_TYPES", "purchase")
# Access: customer tokens (signed with SECRET_KEY) that the shop's backend obtains for a customer.
CUSTOMER_TOKEN_TTL_SECONDS = int(os.environ.get("CUSTOMER_TOKEN_TTL_SECONDS", "3600"))
CUSTOMER_TOKEN_MAX_TTL_SECONDS = int(os.environ.get("CUSTOMER_TOKEN_MAX_TTL_SECONDS", str(24 * 3600)))
# The model whose rows customer tokens open (as AUTH_USER_MODEL names the operators'): accounts knows
# it only by this name. It has an `external_id`; a token dies with its row (accounts/access.py).
CUSTOMER_MODEL = "profiles.Customer"
# Erasure (profiles/privacy.py): forgotten customers are remembered only as an HMAC of their external
# id, and named by a keyed pseudonym. The key is ERASURE_SECRET_KEY, or SECRET_KEY when unset; set it
# to a stable secret of its own if SECRET_KEY may be rotated (a new key forgets who was forgotten).
ERASURE_SECRET_KEY = os.environ.get("ERASURE_SECRET_KEY", "")
# How long the unsubscribe link in an email works (days); an older link shows "expired" and changes nothing.
UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS = int(os.environ.get("UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS", "180"))

# Recommendations (docs/recommendations.md).
RECOMMENDER_HALF_LIFE_DAYS = float(os.environ.get("RECOMMENDER_HALF_LIFE_DAYS", "14"))
RECOMMENDER_DECAY_FROM = os.environ.get("RECOMMENDER_DECAY_FROM", "customer")  # or "latest": the shop-wide clock
RECOMMENDER_WINDOW_DAYS = float(os.environ.get("RECOMMENDER_WINDOW_DAYS", "365"))
RECOMMENDER_MODEL_PARAMS = env_json("RECOMMENDER_MODEL_PARAMS", {})
RECOMMENDER_TOP_N = int(os.environ.get("RECOMMENDER_TOP_N", "20"))
RECOMMENDER_SIMILAR_N = int(os.environ.get("RECOMMENDER_SIMILAR_N", "20"))
RECOMMENDER_SIMILAR_K = int(os.environ.get("RECOMMENDER_SIMILAR_K", "100"))
# Event types that take an item out of a customer's suggestions, per item kind.
# A viewed product may come back; a bought one does not. A JSON object in the environment is merged over these.
RECOMMENDER_EXCLUDE_EVENT_TYPES = {
    "product": ["purchase"],
    "activity": ["purchase"],
    "post": ["post", "like", "comment"],
    **env_json("RECOMMENDER_EXCLUDE_EVENT_TYPES", {}),
}
RECOMMENDER_KEEP_RUNS = int(os.environ.get("RECOMMENDER_KEEP_RUNS", "3"))
RECOMMENDER_CHUNK_CUSTOMERS = int(os.environ.get("RECOMMENDER_CHUNK_CUSTOMERS", "5000"))
# BLAS threads for the recommender; set to 1 in Celery workers that share a machine.
RECOMMENDER_N_THREADS = int(os.environ["RECOMMENDER_N_THREADS"]) if os.environ.get("RECOMMENDER_N_THREADS") else None
RECOMMENDER_EVAL_HOLDOUT = int(os.environ.get("RECOMMENDER_EVAL_HOLDOUT", "2"))
RECOMMENDER_EVAL_MIN_ITEMS = int(os.environ.get("RECOMMENDER_EVAL_MIN_ITEMS", "5"))
RECOMMENDER_IMPRESSION_WINDOW_DAYS = float(os.environ.get("RECOMMENDER_IMPRESSION_WINDOW_DAYS", "14"))
RECOMMENDER_IMPRESSION_PENALTY = float(os.environ.get("RECOMMENDER_IMPRESSION_PENALTY", "0.5"))
# Leave customers without marketing consent out of the recommender's training: "" (no: everyone
# trains), "any" (consent to at least one channel), or channels, e.g. "email,push". They then get
# non-personal (popular) suggestions and their behaviour shapes nobody else's.
TRAINING_REQUIRES_CONSENT = os.environ.get("TRAINING_REQUIRES_CONSENT", "")

# Email (campaigns' email channel): Django's SMTP backend, configured from the environment.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "marketing@localhost")

# Campaigns (docs/campaigns.md). Worker subprocesses (tests, benchmarks) are tuned through the environment.
CAMPAIGN_FREQUENCY_CAP_COUNT = int(env("CAMPAIGN_FREQUENCY_CAP_COUNT", "3"))  # at most N messages per customer ...
CAMPAIGN_FREQUENCY_CAP_DAYS = int(env("CAMPAIGN_FREQUENCY_CAP_DAYS", "7"))  # ... in D days, all campaigns and channels
CAMPAIGN_CHUNK_SIZE = int(env("CAMPAIGN_CHUNK_SIZE", "1000"))  # deliveries per Celery task
CAMPAIGN_SEND_BATCH = int(env("CAMPAIGN_SEND_BATCH", "500"))  # deliveries marked sent per UPDATE within a chunk
# a pause per message (tests slow a channel down with it)
CAMPAIGN_SEND_DELAY_SECONDS = float(env("CAMPAIGN_SEND_DELAY_SECONDS", "0"))
# a row claimed longer ago by another attempt is reclaimable
CAMPAIGN_CLAIM_TIMEOUT_SECONDS = int(env("CAMPAIGN_CLAIM_TIMEOUT_SECONDS", "300"))
CAMPAIGN_QUEUE = env("CAMPAIGN_QUEUE", "")  # Celery queue of the send tasks ("" = the default queue)
CAMPAIGN_PUBLIC_BASE_URL = env("CAMPAIGN_PUBLIC_BASE_URL", "http://127.0.0.1:8000")  # for unsubscribe links
# an item's link when it has no attributes.url
CAMPAIGN_ITEM_URL = env("CAMPAIGN_ITEM_URL", "{base}/shop/{kind}/{external_id}/")
# a rendered title or body longer than this fails its delivery
CAMPAIGN_MESSAGE_MAX_CHARS = int(env("CAMPAIGN_MESSAGE_MAX_CHARS", "65536"))
# loop iterations + pieces of template + filters per message
CAMPAIGN_TEMPLATE_MAX_STEPS = int(env("CAMPAIGN_TEMPLATE_MAX_STEPS", "20000"))
CAMPAIGN_FROM_EMAIL = env("CAMPAIGN_FROM_EMAIL", "")  # default: DEFAULT_FROM_EMAIL
CAMPAIGN_PUSH_URL = env("CAMPAIGN_PUSH_URL", "")  # the shop's push service
CAMPAIGN_PUSH_SECRET = env("CAMPAIGN_PUSH_SECRET", "")  # HMAC-SHA256 key; no default (push refuses to send without it)
CAMPAIGN_PUSH_TIMEOUT_SECONDS = float(env("CAMPAIGN_PUSH_TIMEOUT_SECONDS", "5"))
CAMPAIGN_PUSH_MAX_ATTEMPTS = int(env("CAMPAIGN_PUSH_MAX_ATTEMPTS", "5"))
CAMPAIGN_PUSH_BACKOFF_SECONDS = float(env("CAMPAIGN_PUSH_BACKOFF_SECONDS", "0.5"))  # first retry after this, doubling
CAMPAIGN_PUSH_CONCURRENCY = int(env("CAMPAIGN_PUSH_CONCURRENCY", "8"))  # parallel requests within a chunk
# The event type each interaction with a message is recorded as (merged over these).
CAMPAIGN_EVENT_TYPES = {
    "delivered": "message_delivered",
    "opened": "message_opened",
    "clicked": "message_clicked",
    **env_json("CAMPAIGN_EVENT_TYPES", {}),
}
# campaigns launched longer ago (window closed) are not re-attributed
CAMPAIGN_ATTRIBUTION_LOOKBACK_DAYS = int(env("CAMPAIGN_ATTRIBUTION_LOOKBACK_DAYS", "60"))

CELERY_BEAT_SCHEDULE.update(
    {
        # the daily look at the running experiment (each look builds on the one before)
        "experiments-look": {
            "task": "experiments.tasks.experiments_look",
            "schedule": crontab(hour=(PIPELINE_NIGHTLY_HOUR + 1) % 24, minute=30),
        },
        # attribute conversions of running and recent campaigns
        "campaigns-attribute": {"task": "campaigns.tasks.campaigns_attribute", "schedule": crontab(minute="*/15")},
        # decide variants tests whose window has passed and send the winner to the rest of the audience
        "campaigns-decide-winners": {
            "task": "campaigns.tasks.campaigns_decide_winners",
            "schedule": crontab(minute="*/5"),
            "options": {"expires": 280},
        },
        # launch scheduled campaigns, refresh recurring ones, send deferred messages when due,
        # re-queue stranded chunks, complete finished campaigns
        "campaigns-tick": {
            "task": "campaigns.tasks.campaigns_tick",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
    }
)
