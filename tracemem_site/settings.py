"""TraceMem settings.

With no environment at all TraceMem runs on the embedded default: SQLite under ``var/``,
Celery tasks executed inline, email printed to the console. Production sets ``DATABASE_URL``,
``REDIS_URL`` and friends (see ``.env.example``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from oauth.conf import provider_settings as oauth_provider_settings
from tracemem_core.env import env_bool, env_identifier, env_int, env_list, env_str
from tracemem_core.requestid import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TRACEMEM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    # Embedded default: a random key kept under var/ so sessions survive restarts.
    _secret_file = VAR_DIR / "secret_key"
    if not _secret_file.exists():
        import secrets

        _secret_file.write_text(secrets.token_urlsafe(50))
        _secret_file.chmod(0o600)
    SECRET_KEY = _secret_file.read_text().strip()

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Browser origins allowed to call /mcp (docs/contract/surfaces.md: validate Origin when present).
TRACEMEM_MCP_ALLOWED_ORIGINS = env_list("TRACEMEM_MCP_ALLOWED_ORIGINS", [])
TRACEMEM_PUBLIC_URL = env_str("TRACEMEM_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "pgtrigger",
    "mcp_server",
    "oauth2_provider",
    "tracemem_site",
    "agents",
    "decisions",
    "policies",
    "approvals",
    "products",
    "audit",
    "oauth",
    "receiptlog",
]

MIDDLEWARE = [
    # First: the request id (X-Request-ID in and out, in every log line) and request metrics.
    "tracemem_site.observability.RequestMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # /healthz answers here, before CommonMiddleware's Host check (probes address the container, not
    # the site) and after the security headers (HSTS, CSP) are set on every answer.
    "tracemem_site.health.LivenessMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): signed in with a second factor in this session (django-otp).
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Whoever must use two-factor sign-in reaches nothing but the 2FA pages until they have.
    "tracemem_site.second_factor.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Outage answers say whether the call was applied; an HTML page's is a 503 (tracemem_core/outage.py).
    "tracemem_site.middleware.DatabaseOutageMiddleware",
    # A refusal an HTML view lets through is a page with its status and message (403, 404, 409...).
    "tracemem_site.middleware.RefusalPageMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into our lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tracemem_site.urls"
WSGI_APPLICATION = "tracemem_site.wsgi.application"
ASGI_APPLICATION = "tracemem_site.asgi.application"

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
                "tracemem_site.web.menu",
            ],
        },
    },
]

# --- Database (docs/security.md) --------------------------------------------------------
# DATABASE_URL is the app role the web server and the workers log in as; MIGRATION_DATABASE_URL is
# the owner of TraceMem's tables, used only by `migrate`, `db_roles` and seed_demo's demo tables.
DATABASE_URL = env_str("DATABASE_URL")
MIGRATION_DATABASE: dict[str, Any] | None = None
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        # Our own hot statements run as prepared statements (tracemem_core/postgresql, docs/performance.md
        # section 19); psycopg prepares nothing while this is None (Django's default). The number is not
        # what decides: those statements ask to be prepared at once, and the ORM's client-side-bound
        # statements are never prepared. Off behind pgbouncer in transaction mode (TRACEMEM_DB_PREPARE=0)
        # and with a new connection per request (nothing would be reused).
        if env_bool("TRACEMEM_DB_PREPARE", True) and DATABASES["default"]["CONN_MAX_AGE"] != 0:
            DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
    MIGRATION_DATABASE = dict(dj_database_url.parse(env_str("MIGRATION_DATABASE_URL") or DATABASE_URL))
    if (MIGRATION_DATABASE["ENGINE"], MIGRATION_DATABASE["NAME"]) != (
        DATABASES["default"]["ENGINE"],
        DATABASES["default"]["NAME"],
    ):
        raise ImproperlyConfigured(
            "MIGRATION_DATABASE_URL must name the same database as DATABASE_URL (only the role differs)"
        )
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend with a connection check that costs no round trip (tracemem_core/postgresql).
        DATABASES["default"]["ENGINE"] = "tracemem_core.postgresql"
elif env_str("MIGRATION_DATABASE_URL"):
    raise ImproperlyConfigured("MIGRATION_DATABASE_URL needs DATABASE_URL (the app role) as well")
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "tracemem.sqlite3"),
            # IMMEDIATE: writers take the lock at BEGIN, so two appends to one trace queue
            # up instead of failing with "database is locked" halfway through.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Built-in data products reach only this schema's tables, and run as this role (SET LOCAL ROLE inside
# the product's transaction) when it is set; `manage.py db_roles --products-user` creates it.
TRACEMEM_DATA_SCHEMA = env_identifier("TRACEMEM_DATA_SCHEMA", "tracemem_data")
if TRACEMEM_DATA_SCHEMA in ("public", "information_schema") or TRACEMEM_DATA_SCHEMA.startswith("pg_"):
    raise ImproperlyConfigured(
        f"TRACEMEM_DATA_SCHEMA must be a schema of its own for business tables, not {TRACEMEM_DATA_SCHEMA!r}"
    )
TRACEMEM_PRODUCTS_ROLE = env_identifier("TRACEMEM_PRODUCTS_ROLE", "")

# --- Celery -----------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# Embedded default: no broker, tasks run inline in the calling process.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker outage must not hang the request that queued the task: publishing gives up fast
# and the outbox row is picked up later by the periodic re-dispatch. The socket timeouts bound a
# Redis that accepts connections but never answers (frozen, overloaded, a half-open connection
# after a failover): without them a publish, and /readyz, waited forever. socket_timeout stays
# above the consumer's 1 s BRPOP; no retry, so a publish costs at most ~2 s once per outage
# (tracemem_core.shared_cache.broker then skips publishing until TRACEMEM_CACHE_RETRY_SECONDS).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "max_retries": 0,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 1,
    "socket_timeout": 2,
}
CELERY_TASK_PUBLISH_RETRY = False
# Notifications have their own queue and worker pool (scripts/worker.sh), so a slow receiver never
# delays the beat's tick (approval expiry) or anything else; every other task uses "celery".
CELERY_TASK_ROUTES = {
    "approvals.deliver_delivery": {"queue": "deliveries"},
    "receiptlog.deliver_witness": {"queue": "deliveries"},  # checkpoints to witnesses: outbound too
}
TRACEMEM_CHECKPOINT_SECONDS = env_int("TRACEMEM_CHECKPOINT_SECONDS", 5)
if TRACEMEM_CHECKPOINT_SECONDS < 1:
    # Celery beat would run a schedule of 0 in a loop: a checkpoint after every close.
    raise ImproperlyConfigured(
        "TRACEMEM_CHECKPOINT_SECONDS must be at least 1 (seconds between checkpoints), "
        f"got {TRACEMEM_CHECKPOINT_SECONDS}"
    )
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    # Expire overdue approvals (fail closed) and re-dispatch overdue deliveries (approvals/tasks.py).
    "approvals-tick": {"task": "approvals.tick", "schedule": env_int("TRACEMEM_APPROVALS_TICK_SECONDS", 30)},
    # Sign a checkpoint of the receipt log when it grew; re-dispatch witness deliveries (receiptlog/tasks.py).
    "receiptlog-tick": {"task": "receiptlog.tick", "schedule": TRACEMEM_CHECKPOINT_SECONDS},
}
CELERY_TIMEZONE = "UTC"

# --- Cache ------------------------------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "tracemem_core.redis_cache.SharedPoolRedisCache",
            "LOCATION": REDIS_URL,
            # A dead or blackholed Redis must cost a request at most this, never a hang
            # (tracemem_core/shared_cache.py then skips it for TRACEMEM_CACHE_RETRY_SECONDS).
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Seconds to leave the shared cache (and the broker, for publishing) alone after it failed, before
# probing it again.
TRACEMEM_CACHE_RETRY_SECONDS = env_int("TRACEMEM_CACHE_RETRY_SECONDS", 5)

# --- Email ------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "TraceMem <tracemem@localhost>")

# --- Auth, i18n, static -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# django-axes refuses sign-ins for a locked-out account or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed sign-ins (the login page and the Django admin's) are counted per account and, separately,
# per client address; at the limit that account or address is locked for the lockout time. Admins
# unlock early in the Django admin (Axes > Access attempts) or with manage.py axes_reset_username.
AXES_FAILURE_LIMIT = env_int("TRACEMEM_LOGIN_FAILURE_LIMIT", 20)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("TRACEMEM_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "tracemem_site.views.locked_out"
AXES_CLIENT_IP_CALLABLE = "tracemem_site.web.client_ip"
# Reverse proxies in front of TraceMem that append to X-Forwarded-For (0: use the socket address).
TRACEMEM_TRUSTED_PROXY_COUNT = env_int("TRACEMEM_TRUSTED_PROXY_COUNT", 0)
# Two-factor sign-in (TOTP, django-otp): anyone may turn it on; with this set, everyone eligible to
# approve (superusers, members of a route's approver group) must, and votes by email link or Slack
# are refused for them (they confirm in the browser after signing in with their code).
TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = env_bool("TRACEMEM_REQUIRE_2FA_FOR_APPROVERS", False)
OTP_TOTP_ISSUER = "TraceMem"  # the name authenticator apps show next to the account
# The Django admin never shows a saved device's key or QR code (it would let anyone who sees it make
# that person's codes); devices there are for superusers only (audit/admin.py).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# WhiteNoise warns on every request when this is missing (tests, before the first collectstatic).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
SESSION_COOKIE_HTTPONLY = True

# --- HTTPS and browser security headers (docs/security-signin.md) --------------------------------------
# Production behind TLS: DJANGO_SECURE_SSL_REDIRECT=true, DJANGO_SECURE_HSTS_SECONDS=31536000 (after
# checking that every subdomain is HTTPS if INCLUDE_SUBDOMAINS), and, behind a proxy that terminates
# TLS, DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (only if the proxy sets it).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Health probes come from inside the deployment over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
_proxy_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER", [])
if _proxy_ssl_header and (len(_proxy_ssl_header) != 2 or not _proxy_ssl_header[0].startswith("HTTP_")):
    raise ImproperlyConfigured(
        "DJANGO_SECURE_PROXY_SSL_HEADER must look like HTTP_X_FORWARDED_PROTO,https; got "
        + ",".join(_proxy_ssl_header)
    )
SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1]) if _proxy_ssl_header else None
# Cookies are HTTPS-only whenever plain HTTP is redirected (each can still be set on its own).
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_SSL_REDIRECT)
# No inline script anywhere (scripts are static files: htmx, copy.js, the API docs' set-up), no
# inline styles, nothing from another origin; pages cannot be framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
# A request body larger than this is refused with 413 before it is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TRACEMEM_MAX_BODY_BYTES", 1024 * 1024)
# JSON nested deeper than this is refused (400 / JSON-RPC -32700) before it is parsed
# (tracemem_core/safejson.py); at most 200, far below Python's recursion limit.
TRACEMEM_MAX_JSON_DEPTH = env_int("TRACEMEM_MAX_JSON_DEPTH", 64)
if not 2 <= TRACEMEM_MAX_JSON_DEPTH <= 200:
    raise ImproperlyConfigured(
        f"TRACEMEM_MAX_JSON_DEPTH must be from 2 to 200, got {TRACEMEM_MAX_JSON_DEPTH}"
    )

# --- Approvals (docs/approvals.md): delivery, retries, email links, the default route ---------
TRACEMEM_DEFAULT_ROUTE = env_str("TRACEMEM_DEFAULT_ROUTE", "")
TRACEMEM_DELIVERY_MAX_ATTEMPTS = env_int("TRACEMEM_DELIVERY_MAX_ATTEMPTS", 6)
TRACEMEM_DELIVERY_BACKOFF_MS = env_int("TRACEMEM_DELIVERY_BACKOFF_MS", 30_000)
TRACEMEM_DELIVERY_BACKOFF_CAP_MS = env_int("TRACEMEM_DELIVERY_BACKOFF_CAP_MS", 3_600_000)
TRACEMEM_DELIVERY_LEASE_MS = env_int("TRACEMEM_DELIVERY_LEASE_MS", 120_000)
TRACEMEM_DELIVERY_HTTP_TIMEOUT = float(env_str("TRACEMEM_DELIVERY_HTTP_TIMEOUT", "") or 5.0)
TRACEMEM_DELIVERY_CONNECT_TIMEOUT = float(env_str("TRACEMEM_DELIVERY_CONNECT_TIMEOUT", "") or 3.0)
TRACEMEM_DELIVERY_DESTINATION_SLOTS = env_int("TRACEMEM_DELIVERY_DESTINATION_SLOTS", 4)
TRACEMEM_EMAIL_LINK_MAX_AGE = env_int("TRACEMEM_EMAIL_LINK_MAX_AGE", 86400)

# --- REST -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["agents.auth.AgentKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSONRenderer output, written by orjson (tracemem_site/renderers.py, issue 17).
    "DEFAULT_RENDERER_CLASSES": ["tracemem_site.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tracemem_site.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "tracemem_site.rest.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["tracemem_site.throttling.AgentRateThrottle"],
}
# Requests per agent across REST and MCP ("N/second|minute|hour|day"; "off" disables).
TRACEMEM_AGENT_RATE_LIMIT = env_str("TRACEMEM_AGENT_RATE_LIMIT", "1200/minute")
# The production front answers an agent's hottest REST calls without Django's middleware and DRF
# (tracemem_site/agent_door.py, docs/performance.md §22); false sends every request through Django.
TRACEMEM_AGENT_DOOR = env_bool("TRACEMEM_AGENT_DOOR", True)
# decision_wait holds a request at most this long (seconds, ≤ 50) whatever timeout_seconds asks,
# then answers timed_out: lower it behind a proxy that cuts requests sooner (docs/mcp.md).
TRACEMEM_WAIT_CAP_SECONDS = env_int("TRACEMEM_WAIT_CAP_SECONDS", 50)
# How many decision_wait calls one agent (or user) may have in progress at once, per server process
# (each is a subscription and an open connection, parked or not); the next is 429 rate_limited.
TRACEMEM_WAIT_MAX_PER_AGENT = env_int("TRACEMEM_WAIT_MAX_PER_AGENT", 100)
SPECTACULAR_SETTINGS = {
    "TITLE": "TraceMem API",
    "DESCRIPTION": "Governance and decision memory for AI agents.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # decision_close's action and its alias outcome share one documented enum.
    "ENUM_NAME_OVERRIDES": {"CloseActionEnum": ["commit", "abort", "rollback"]},
    # /api/docs/ loads Swagger UI from our own static files (drf-spectacular-sidecar), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- MCP --------------------------------------------------------------------------------
DJANGO_MCP_GLOBAL_SERVER_CONFIG = {"name": "tracemem", "stateless": True}
DJANGO_MCP_AUTHENTICATION_CLASSES = ["agents.auth.AgentKeyAuthentication"]
DJANGO_MCP_GET_SERVER_INSTRUCTIONS_TOOL = False

# --- The OAuth MCP door (docs/oauth.md): /oauth/mcp for clients that connect only with OAuth
# (ChatGPT on the web); django-oauth-toolkit is the authorization server, issuer <public URL>/oauth.
# Redirect URIs clients may register (shell patterns; default: ChatGPT's, Claude's, loopback).
TRACEMEM_OAUTH_REDIRECT_URIS = env_list("TRACEMEM_OAUTH_REDIRECT_URIS", [])
# Dynamic client registrations per client address ("N/second|minute|hour|day"; "off" disables).
TRACEMEM_OAUTH_REGISTRATION_RATE = env_str("TRACEMEM_OAUTH_REGISTRATION_RATE", "20/hour")
# Only members of this group (and superusers) may connect OAuth clients; empty: every active user.
TRACEMEM_OAUTH_CONNECT_GROUP = env_str("TRACEMEM_OAUTH_CONNECT_GROUP", "")
TRACEMEM_OAUTH_ACCESS_TOKEN_SECONDS = env_int("TRACEMEM_OAUTH_ACCESS_TOKEN_SECONDS", 3600)
TRACEMEM_OAUTH_REFRESH_TOKEN_SECONDS = env_int("TRACEMEM_OAUTH_REFRESH_TOKEN_SECONDS", 30 * 86400)
# Named so that migrations referring to django-oauth-toolkit's (swappable) models can be written.
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
# django-oauth-toolkit warns that http redirect URIs are allowed: they are, to loopback addresses only
# (RFC 8252 native apps: Codex's `codex mcp login`, the MCP SDKs), which oauth.conf.redirect_uri_problem
# enforces at registration; any other http redirect URI is refused.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
OAUTH2_PROVIDER = oauth_provider_settings(
    TRACEMEM_PUBLIC_URL,
    access_token_seconds=TRACEMEM_OAUTH_ACCESS_TOKEN_SECONDS,
    refresh_token_seconds=TRACEMEM_OAUTH_REFRESH_TOKEN_SECONDS,
)

# --- Receipts (docs/receipts.md): Ed25519 signing key as base64 (PEM or 32-byte seed), or a file;
# unset, a key is generated under VAR_DIR on first use.
TRACEMEM_RECEIPT_KEY = env_str("TRACEMEM_RECEIPT_KEY")
TRACEMEM_RECEIPT_KEY_FILE = env_str("TRACEMEM_RECEIPT_KEY_FILE")

# --- Receipt log (docs/receipts.md, "Receipt log and checkpoints"): the origin line of every
# checkpoint, which is also the note key name: never change it for the life of a log. Default: the
# public URL without its scheme, plus "/log". Witnesses: names of webhook endpoints that receive
# every new checkpoint; TRACEMEM_CHECKPOINT_DIR: a directory each new checkpoint is written to.
TRACEMEM_LOG_ORIGIN = env_str(
    "TRACEMEM_LOG_ORIGIN", TRACEMEM_PUBLIC_URL.split("://", 1)[-1].rstrip("/") + "/log"
)
if not TRACEMEM_LOG_ORIGIN or "+" in TRACEMEM_LOG_ORIGIN or any(c.isspace() for c in TRACEMEM_LOG_ORIGIN):
    raise ImproperlyConfigured(
        f"TRACEMEM_LOG_ORIGIN {TRACEMEM_LOG_ORIGIN!r} must be non-empty, without spaces or '+' "
        "(it names the log and its note key), e.g. tracemem.example.com/log"
    )
TRACEMEM_LOG_WITNESSES = env_list("TRACEMEM_LOG_WITNESSES", [])
for _witness in TRACEMEM_LOG_WITNESSES:
    # A URL or a typo here would only show up as deliveries failing one checkpoint after another;
    # that the endpoints exist is the receiptlog.E001 check (migrate runs it before every start).
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", _witness):
        raise ImproperlyConfigured(
            f"TRACEMEM_LOG_WITNESSES: {_witness!r} is not a webhook endpoint name (letters, digits, '-' and '_', "
            "at most 64); list the names of webhook endpoints (docs/receipts.md), comma-separated"
        )
    if TRACEMEM_LOG_WITNESSES.count(_witness) > 1:
        raise ImproperlyConfigured(
            f"TRACEMEM_LOG_WITNESSES names {_witness} twice: each witness would get every checkpoint twice"
        )
TRACEMEM_CHECKPOINT_DIR = env_str("TRACEMEM_CHECKPOINT_DIR")

# --- Outbound destinations (docs/security.md §9): webhook endpoints, Slack integrations and data
# sources may reach public addresses; loopback, private and other non-public ones only when listed
# here (networks, addresses or host names); link-local and cloud metadata never. The embedded
# default (no DATABASE_URL: one machine, development) allows loopback.
TRACEMEM_OUTBOUND_ALLOW = env_list("TRACEMEM_OUTBOUND_ALLOW", [] if DATABASE_URL else ["127.0.0.0/8", "::1"])

# --- Redaction (docs/contract/redaction.md): admins may extend both lists ------------------------------------
TRACEMEM_REDACT_EXTRA_KEYS = env_list("TRACEMEM_REDACT_EXTRA_KEYS", [])
TRACEMEM_REDACT_EXTRA_PATTERNS = env_list("TRACEMEM_REDACT_EXTRA_PATTERNS", [])

# --- Observability (docs/operations.md) ---------------------------------------------------------
# /metrics: a scraper with this bearer token, or at one of these networks/addresses. Neither set:
# loopback only on the embedded default, nobody in production.
TRACEMEM_METRICS_TOKEN = env_str("TRACEMEM_METRICS_TOKEN")
TRACEMEM_METRICS_ALLOW = env_list("TRACEMEM_METRICS_ALLOW", [] if DATABASE_URL else ["127.0.0.0/8", "::1"])
# Log lines as text (default) or JSON objects (one per line), both with the request id.
TRACEMEM_LOG_FORMAT = env_str("TRACEMEM_LOG_FORMAT", "text").strip().lower()
LOGGING = logging_config(fmt=TRACEMEM_LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
