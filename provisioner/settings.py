"""Settings, read from the environment. With nothing set, the embedded default runs:
SQLite under var/, a Celery broker on its own SQLite file (kombu's SQLAlchemy transport), email
to the console.

``DJANGO_ENV=production`` refuses to start with a default secret or encryption key.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes
from django.core.exceptions import ImproperlyConfigured

from .env import (
    database_from_url,
    env_bool,
    env_decimal,
    env_float,
    env_int,
    env_int_map,
    env_list,
    env_str,
    public_base_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PROVISIONER_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

ENVIRONMENT = env_str("DJANGO_ENV", "development")
PRODUCTION = ENVIRONMENT == "production"
TESTING = env_bool("PROVISIONER_TESTING", False)

_DEV_SECRET = "dev-insecure-secret-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
_DEV_CRYPTO_KEY = "dev-insecure-cryptography-key-change-me"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET)
# The key that encrypts provider credentials, separate from SECRET_KEY (provisioner/crypto.py).
# Named ENCRYPTION_KEY inside settings because django-cryptography overwrites its own
# CRYPTOGRAPHY_KEY setting with a derived value; the environment variables keep the library's name.
ENCRYPTION_KEY = env_str("CRYPTOGRAPHY_KEY", _DEV_CRYPTO_KEY)
# Old keys still accepted for reading while `manage.py rotate_encryption_key` re-encrypts.
ENCRYPTION_KEY_FALLBACKS = env_list("CRYPTOGRAPHY_KEY_FALLBACKS", "")
# django-cryptography reads these lazily; set them here so they exist whatever the import order.
CRYPTOGRAPHY_BACKEND = default_backend()
CRYPTOGRAPHY_DIGEST = hashes.SHA256()
DEBUG = env_bool("DEBUG", not PRODUCTION)

if PRODUCTION:
    if SECRET_KEY == _DEV_SECRET or len(SECRET_KEY) < 40:
        raise ImproperlyConfigured("production needs a real SECRET_KEY (40+ characters)")
    if ENCRYPTION_KEY == _DEV_CRYPTO_KEY or len(ENCRYPTION_KEY) < 32:
        raise ImproperlyConfigured("production needs a real CRYPTOGRAPHY_KEY (32+ characters)")
    if ENCRYPTION_KEY == SECRET_KEY:
        raise ImproperlyConfigured("CRYPTOGRAPHY_KEY must differ from SECRET_KEY")
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off in production")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tables2",  # every list page's table (provisioner/tables.py)
    "django_filters",  # and its filters
    "django_celery_beat",
    "guardian",
    "provisioner",
    "tenants",
    "providers",
    "workloads",
    "billing",
    "gateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "provisioner.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "provisioner.security.RejectNulBytesMiddleware",  # before CSRF: it answers bad bodies with a 400
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tenants.middleware.CurrentTenantMiddleware",
]

ROOT_URLCONF = "provisioner.urls"
WSGI_APPLICATION = "provisioner.wsgi.application"

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
                "tenants.context_processors.current_tenant",
            ],
        },
    },
]

_db_url = os.environ.get("DATABASE_URL", "")
if _db_url:
    DATABASES = {"default": database_from_url(_db_url)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "provisioner.sqlite3")),
            # web, worker and beat share one file: WAL + busy timeout + immediate transactions
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
GUARDIAN_RENDER_403 = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
# how long an invitation link (tenants.services.invitation_token) stays valid, in seconds
INVITATION_MAX_AGE = env_int("INVITATION_MAX_AGE_DAYS", 7) * 86400
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
        if os.environ.get("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache" if PRODUCTION else "django.core.cache.backends.locmem.LocMemCache",
              "LOCATION": "provisioner_cache" if PRODUCTION else "provisioner"}
    )
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "provisioner@localhost")

# --- Celery -----------------------------------------------------------------------------
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# The embedded default's broker is kombu's SQLAlchemy transport on a SQLite file of its own.
# Why not the filesystem transport: its consumer moves a message file while the producer may
# still be writing it (the lock is advisory), so the worker read half a message and died with
# an unrecoverable JSONDecodeError a few minutes after `make run`. The SQLAlchemy transport
# publishes with one INSERT and fetches with BEGIN IMMEDIATE + UPDATE (kombu special-cases
# SQLite), so a message is either wholly there or not at all, and two readers never get the
# same one. A file of its own keeps broker polling from contending with the app's writes.
EMBEDDED_BROKER_PATH = VAR_DIR / "celery-broker.sqlite3"
EMBEDDED_BROKER_URL = f"provisioner-sqla+sqlite:///{EMBEDDED_BROKER_PATH}"  # provisioner/broker.py
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", EMBEDDED_BROKER_URL)
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("provisioner-sqla+sqlite:")
EMBEDDED_BROKER_TRANSPORT_OPTIONS = {
    # a new task is picked up within 0.1 s (launch follow-ups are latency-sensitive)
    "polling_interval": 0.1,
    # web, worker and beat write to the same file: wait for the lock instead of failing
    "connect_args": {"timeout": 30},
}
if EMBEDDED_BROKER:
    CELERY_BROKER_TRANSPORT_OPTIONS = EMBEDDED_BROKER_TRANSPORT_OPTIONS
    CELERY_RESULT_BACKEND = None
else:
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
    # Redis/SQS: a task a worker took but never acknowledged (acks_late; the worker was SIGKILLed or
    # lost power) is handed to another worker after the visibility timeout. Chosen, not defaulted:
    # it must exceed the longest task and countdown (a Hetzner bootstrap over SSH takes minutes,
    # follow_pod countdowns <= 60 s, a launch <= LAUNCH_TOTAL_SECONDS), or a running task is
    # re-delivered and runs twice (harmless, every task is a compare-and-set, but wasteful). Lost
    # launches do not wait for it: their claim's lease (workloads/lifecycle/claims.py) re-queues them within
    # a minute. Celery docs, "Using Redis" > "Visibility Timeout" and "Caveats".
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 3600)}
CELERY_TASK_IGNORE_RESULT = True

# --- product settings ---------------------------------------------------------------------
# Admins may point an account at a stand-in base URL (demos, browser tests). Off in production
# unless explicitly enabled.
# a claimed launch's lease: a pod whose worker died is re-queued this long after (workloads/lifecycle/claims.py)
LAUNCH_CLAIM_LEASE_SECONDS = env_int("LAUNCH_CLAIM_LEASE_SECONDS", 30)
PROVIDER_BASE_URL_OVERRIDE_ALLOWED = env_bool("PROVIDER_BASE_URL_OVERRIDE_ALLOWED", not PRODUCTION)
# Sandbox pods boot after this many seconds (tests set 0).
SANDBOX_BOOT_SECONDS = env_int("SANDBOX_BOOT_SECONDS", 8)
# Sandbox pods serve real HTTP on a loopback port each (providers/adapters/sandbox_http.py). Each
# pod is then a process, so it is opt-in: `make run` (runstack) turns it on for its children, the
# gateway bench and tests turn it on for themselves; other scripts and benches leave it off.
SANDBOX_HTTP = env_bool("SANDBOX_HTTP", False)
# The service gateway (Caddy, gateway/): its admin API, where it listens, the URL clients use.
# An empty admin URL turns the gateway off (the default: `make run` sets it for its children when
# Caddy is installed; production sets it): old pods are then retired as soon as their replacement
# runs, with no readiness check or drain.
GATEWAY_ADMIN_URL = env_str("GATEWAY_ADMIN_URL", "")
GATEWAY_IN_STACK = env_bool("GATEWAY_IN_STACK", True)  # runstack starts and supervises a gateway
GATEWAY_ADMIN_LISTEN = env_str("GATEWAY_ADMIN_LISTEN", urlsplit(GATEWAY_ADMIN_URL).netloc or "127.0.0.1:2019")
GATEWAY_LISTEN = env_str("GATEWAY_LISTEN", "127.0.0.1:8080")
GATEWAY_PUBLIC_URL = env_str("GATEWAY_PUBLIC_URL", f"http://{GATEWAY_LISTEN}")
GATEWAY_TIMEOUT_SECONDS = env_float("GATEWAY_TIMEOUT_SECONDS", "5", minimum="0.1")
# Spot on a bidding provider (Vast.ai, RunPod): bid this % above the floor unless the workload
# sets its own margin; the workload's price ceiling caps the bid (workloads/placement/bids.py).
SPOT_BID_MARGIN_PCT = env_int("SPOT_BID_MARGIN_PCT", 10)
# Outbound URLs (webhooks, provider base URLs in production) go only to public addresses
# (provisioner/outbound.py); these host names are trusted as they are. OUTBOUND_RESOLVER: a test seam
# (a callable host -> addresses), None resolves through DNS.
OUTBOUND_ALLOWED_HOSTS = env_list("OUTBOUND_ALLOWED_HOSTS", "")
OUTBOUND_RESOLVER = None
# Public URL pods use to reach the heartbeat endpoint (production: required, never loopback).
PUBLIC_BASE_URL = public_base_url("PUBLIC_BASE_URL", production=PRODUCTION)
# Provider calls: one call's wall-clock limit inside a launch, a launch's attempts and total time
# across candidate offers, and per-kind capacity-poll timeouts ("aws=60,hetzner=120").
PROVIDER_ATTEMPT_TIMEOUT_SECONDS = env_float("PROVIDER_ATTEMPT_TIMEOUT_SECONDS", "60", minimum="0")
LAUNCH_MAX_ATTEMPTS = env_int("LAUNCH_MAX_ATTEMPTS", 5)
LAUNCH_TOTAL_SECONDS = env_float("LAUNCH_TOTAL_SECONDS", "300", minimum="0")
PROVIDER_POLL_TIMEOUTS = env_int_map("PROVIDER_POLL_TIMEOUTS", "")
# Budget reservation for a launch whose workload sets no maximum runtime (hours).
BILLING_RESERVATION_HOURS = env_decimal("BILLING_RESERVATION_HOURS", "1", minimum="0")
# GPU telemetry and idle reaping (README, "In-pod GPU agent").
AGENT_INTERVAL_SECONDS = env_int("AGENT_INTERVAL_SECONDS", 30)
AGENT_HEARTBEAT_LIMIT_PER_MINUTE = env_int("AGENT_HEARTBEAT_LIMIT_PER_MINUTE", 12)
TELEMETRY_POLL_WORKERS = env_int("TELEMETRY_POLL_WORKERS", 8)
UTILIZATION_RETENTION_DAYS = env_int("UTILIZATION_RETENTION_DAYS", 14)
IDLE_TELEMETRY_STALE_MINUTES = env_int("IDLE_TELEMETRY_STALE_MINUTES", 5)
IDLE_MAX_GAP_SECONDS = env_int("IDLE_MAX_GAP_SECONDS", 180)
IDLE_DELETE_AFTER_STOPPED_DEFAULT_MINUTES = env_int("IDLE_DELETE_AFTER_STOPPED_DEFAULT_MINUTES", 7 * 24 * 60)
# Reconciliation with the providers' own billing figures: a day whose figures differ by more
# than this percentage of the provider's figure raises an alert (once per account and day);
# each daily run re-fetches this many past UTC days, since providers revise recent figures.
BILLING_DRIFT_THRESHOLD_PCT = env_decimal("BILLING_DRIFT_THRESHOLD_PCT", "2", minimum="0")
# spend anomaly alert: today's booked spend above this many times the trailing 7-day daily mean (0: off)
SPEND_ANOMALY_FACTOR = env_decimal("SPEND_ANOMALY_FACTOR", "3", minimum="0")
BILLING_RECONCILE_DAYS = env_int("BILLING_RECONCILE_DAYS", 3)
# an account's first reconciliation reaches this far back (the month being closed)
BILLING_RECONCILE_BACKFILL_DAYS = env_int("BILLING_RECONCILE_BACKFILL_DAYS", 35)

# --- security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-less meta tag; keep default
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact_secrets": {"()": "provisioner.logfilter.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
