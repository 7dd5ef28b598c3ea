"""Settings shared by every environment. Every environment variable is read here.

See `.env.example` for the full list. Environment-specific modules (`local`, `test`,
`production`) import this module and override only what differs.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("KPLC_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_secret(name: str) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (for Docker/K8s secrets)."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or "insecure-dev-only-key-change-me"
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "audit",
    "meters",
    "tokens",
    "campaigns",
    "sms",
    "partners",
    "care",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kplc_sts.urls"
WSGI_APPLICATION = "kplc_sts.wsgi.application"

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
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# DATABASE_URL unset: a SQLite file for the embedded demo. PostgreSQL is the production and CI
# database; a few features (COPY import, SKIP LOCKED claiming) use it when it is there.
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tasks run in-process next to web requests and the demo's ticker writes from another process:
    # take the write lock at BEGIN (no read-to-write upgrade deadlock) and let readers run beside
    # the writer (WAL), waiting for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttling, USSD sessions, SMS send-rate bucket) --------------------------------
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL.startswith("redis"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"

LANGUAGE_CODE = "en"
TIME_ZONE = "Africa/Nairobi"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Celery -----------------------------------------------------------------------------------
# CELERY_BROKER_URL unset: tasks run in-process (eagerly) so the demo needs no Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# At-least-once delivery: a task is acknowledged only after it ran, and re-delivered if the
# worker dies; tasks claim rows idempotently so a re-delivery never sends twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than any task or countdown, or Redis re-delivers unacknowledged tasks in a loop.
    "visibility_timeout": 3600,
    # A publisher (a vend handing its SMS over) gives up on a dead broker after one quick retry
    # instead of kombu's default ~6 s of back-off: the outbox row is safe and the sweep sends it.
    # Workers reconnect by their own policy (CELERY_BROKER_CONNECTION_MAX_RETRIES), not this one.
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- STS vending-key custody --------------------------------------------------------------
# 32-byte key-encryption key (64 hex characters) that wraps vending keys at rest.
STS_KEK = env_secret("STS_KEK")

# --- SMS ----------------------------------------------------------------------------------------
SMS_BACKEND = os.environ.get("SMS_BACKEND", "sms.backends.console.ConsoleBackend")
# Africa's Talking (sms.backends.africastalking.AfricasTalkingBackend). AT_API_URL defaults to the
# local gateway (`manage.py fake_africastalking`); production sets https://api.africastalking.com.
AT_USERNAME = os.environ.get("AT_USERNAME", "sandbox")
AT_API_KEY = env_secret("AT_API_KEY") or "local-gateway-key"
AT_SENDER_ID = os.environ.get("AT_SENDER_ID", "KPLC")
AT_API_URL = os.environ.get("AT_API_URL", "http://127.0.0.1:8025")
# Delivery reports are POSTed to /sms/delivery-reports/<secret>/ (AT signs nothing).
SMS_DELIVERY_REPORT_SECRET = env_secret("SMS_DELIVERY_REPORT_SECRET") or "dev-delivery-report-secret"
# Messages per second across all workers (0 = unlimited); shared through Redis when there is one.
SMS_SEND_RATE = int(os.environ.get("SMS_SEND_RATE", "100"))
SMS_RATE_REDIS_URL = os.environ.get("SMS_RATE_REDIS_URL") or next(
    (url for url in (CACHE_URL, CELERY_BROKER_URL) if url.startswith("redis")), ""
)
SMS_MAX_ATTEMPTS = int(os.environ.get("SMS_MAX_ATTEMPTS", "6"))
SMS_RETRY_BASE_SECONDS = float(os.environ.get("SMS_RETRY_BASE_SECONDS", "30"))
SMS_RETRY_MAX_SECONDS = float(os.environ.get("SMS_RETRY_MAX_SECONDS", "900"))  # below the visibility timeout
SMS_SENDING_STALE_SECONDS = float(os.environ.get("SMS_SENDING_STALE_SECONDS", "120"))
# A message stuck in sending is re-sent only after this long without a delivery report for its number
# (longer than the gateway takes to report); a report in that time means the gateway took it.
SMS_DLR_GRACE_SECONDS = float(os.environ.get("SMS_DLR_GRACE_SECONDS", "180"))
SMS_TASK_TIME_BUDGET = float(os.environ.get("SMS_TASK_TIME_BUDGET", "60"))  # below CELERY_TASK_SOFT_TIME_LIMIT
SMS_DISPATCH_CHUNK = int(os.environ.get("SMS_DISPATCH_CHUNK", "100"))
SMS_CLAIM_CHUNK = int(os.environ.get("SMS_CLAIM_CHUNK", "100"))  # claimed together; stored set-based together
SMS_SWEEP_LIMIT = int(os.environ.get("SMS_SWEEP_LIMIT", "50000"))
SMS_CODES_QUEUE = "sms_codes"
SMS_NOTICE_QUEUE = "sms_notices"
# Workers: `celery -A kplc_sts worker -Q sms_codes,sms_notices,celery`; in production give
# sms_codes its own worker so customers' codes never wait behind notices.
CELERY_TASK_ROUTES = {
    "sms.send_messages": {"queue": SMS_CODES_QUEUE},  # callers pass queue= for notices
    "sms.sweep": {"queue": "celery"},
    "campaigns.start_due_batches": {"queue": "celery"},
    "campaigns.refresh_targets": {"queue": "celery"},
}
CELERY_BEAT_SCHEDULE = {
    "campaigns-start-due-batches": {"task": "campaigns.start_due_batches", "schedule": 30.0},
    "sms-sweep": {"task": "sms.sweep", "schedule": 60.0},
    "campaigns-refresh-targets": {"task": "campaigns.refresh_targets", "schedule": 3600.0},
}

# --- Vending tariff (tokens/tariff.py) --------------------------------------------------------------
# A simple domestic tariff: KES per kWh, per-kWh levies, levies as a percentage of the energy charge,
# then VAT on everything. Strings, read as Decimal: money never goes through float.
TARIFF = {
    "energy_rate": "19.08",
    "per_kwh_levies": {"fuel_energy_cost": "3.73", "forex": "1.21", "inflation": "0.23", "epra_levy": "0.08"},
    "energy_percent_levies": {"rep_levy": "5"},
    "vat_percent": "16",
}
PARTNER_DEFAULT_THROTTLE_RATE = os.environ.get("PARTNER_DEFAULT_THROTTLE_RATE", "3000/min")
# *977#: requests per phone per minute, and SMS copies of codes or tokens per meter per hour.
USSD_RATE_LIMIT_PER_MINUTE = int(os.environ.get("USSD_RATE_LIMIT_PER_MINUTE", "30"))
USSD_SMS_COPIES_PER_HOUR = int(os.environ.get("USSD_SMS_COPIES_PER_HOUR", "3"))

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "KPLC STS vending partner API",
    "DESCRIPTION": "Meter lookup and token vending for banks, mobile-money aggregators and agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files: /api/docs/ works without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Logging --------------------------------------------------------------------------------
# Every handler passes through the redaction filter: a 20-digit token must never reach a log.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_tokens": {"()": "kplc_sts.logging.RedactTokenDigitsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Clock (kplc_sts/clock.py) ----------------------------------------------------------------------
# Unset: the wall clock. A rehearsal runs every process on one accelerated clock: the simulated
# start instant, the wall-clock instant it corresponds to, and simulated seconds per real second.
CLOCK_START = None
if os.environ.get("CLOCK_START"):
    import datetime as _dt

    CLOCK_START = _dt.datetime.fromisoformat(os.environ["CLOCK_START"])
    if CLOCK_START.tzinfo is None:
        raise ValueError("CLOCK_START must carry a zone, e.g. 2024-06-12T08:00:00+03:00")
CLOCK_WALL_START = float(os.environ.get("CLOCK_WALL_START", "0") or 0)
CLOCK_SPEED = float(os.environ.get("CLOCK_SPEED", "1") or 1)
