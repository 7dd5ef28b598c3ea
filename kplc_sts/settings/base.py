"""Settings shared by every environment. Every environment variable is read here.

See `.env.example` for the full list. Environment-specific modules (`local`, `test`,
`production`) import this module and override only what differs.
"""

from __future__ import annotations

import os
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import dj_database_url

from kplc_sts.envconf import env, env_networks, env_secret

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("KPLC_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    # Strict: "ture" refuses to start instead of silently meaning False (kplc_sts.envconf).
    return env.bool(name, default=default)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or "insecure-dev-only-key-change-me"
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # The default admin site, whose lists read from the replica when there is one (kplc_sts/admin_site.py).
    "kplc_sts.admin_site.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "csp",
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
    "rehearsal",  # manage.py rehearse: the whole stack through a campaign on an accelerated clock
]

MIDDLEWARE = [
    # First: drop proxy headers not set by a configured proxy, then give the request its id.
    "kplc_sts.middleware.TrustedProxyMiddleware",
    "kplc_sts.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After a signed-in user's write, their lag-tolerant pages read the primary (kplc_sts/replica.py).
    "kplc_sts.replica.PrimaryAfterWriteMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.twofactor.StaffSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "kplc_sts.csp.SettingsPolicyCSPMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
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
# Health checks: a persistent connection killed by a PostgreSQL restart or failover is noticed and
# reopened at the start of the next request instead of failing it (issue 11, finding 5).
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
# PostgreSQL through a thin subclass of Django's backend whose health check asks the socket, not the
# server, when the connection is idle (kplc_sts/pgbackend/base.py): one round trip less per request.
PG_ENGINE = "kplc_sts.pgbackend"
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = PG_ENGINE
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tasks run in-process next to web requests and the demo's ticker writes from another process:
    # take the write lock at BEGIN (no read-to-write upgrade deadlock) and let readers run beside
    # the writer (WAL), waiting for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20, transaction_mode="IMMEDIATE", init_command="PRAGMA journal_mode=WAL;"
    )
# DATABASE_REPLICA_URL: a streaming replica of that database. Pages that tolerate lag read from it
# (dashboard, exports, admin lists, care search: kplc_sts/replica.py), everything that decides a sale
# reads the primary. Unset: one database, nothing changes. In tests it is a mirror of the test database.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=60, conn_health_checks=True)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    if DATABASES["replica"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["replica"]["ENGINE"] = PG_ENGINE
        # A replica that is down must not hold a page for the default 2 minutes of TCP retries.
        DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
DATABASE_ROUTERS = ["kplc_sts.replica.ReplicaRouter"]
# REPLICA_READS=off keeps every read on the primary without removing the URL (an operator's switch).
REPLICA_READS = env_bool("REPLICA_READS", True)
# Lag-tolerant reads fall back to the primary while the replica is further behind than this.
REPLICA_MAX_LAG_SECONDS = env.float("REPLICA_MAX_LAG_SECONDS", default=30.0)
# How often each process asks the replica how far behind it is (and retries one that was down).
REPLICA_CHECK_SECONDS = env.float("REPLICA_CHECK_SECONDS", default=5.0)
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

# --- Staff screens' date and time format (issue 12) ----------------------------------------------
# One format on every staff screen, "1 Dec 2026 22:17" in Africa/Nairobi: kplc_sts/formats/en/.
FORMAT_MODULE_PATH = ["kplc_sts.formats"]

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
# Workers log through LOGGING below (redaction, JSON, request ids) instead of Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

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
SMS_SEND_RATE = env.int("SMS_SEND_RATE", default=100)
SMS_RATE_REDIS_URL = os.environ.get("SMS_RATE_REDIS_URL") or next(
    (url for url in (CACHE_URL, CELERY_BROKER_URL) if url.startswith("redis")), ""
)
SMS_MAX_ATTEMPTS = env.int("SMS_MAX_ATTEMPTS", default=6)
SMS_RETRY_BASE_SECONDS = env.float("SMS_RETRY_BASE_SECONDS", default=30)
SMS_RETRY_MAX_SECONDS = env.float("SMS_RETRY_MAX_SECONDS", default=900)  # below the visibility timeout
SMS_SENDING_STALE_SECONDS = env.float("SMS_SENDING_STALE_SECONDS", default=120)
# A message stuck in sending is re-sent only after this long without a delivery report for its number
# (longer than the gateway takes to report); a report in that time means the gateway took it.
SMS_DLR_GRACE_SECONDS = env.float("SMS_DLR_GRACE_SECONDS", default=180)
SMS_TASK_TIME_BUDGET = env.float("SMS_TASK_TIME_BUDGET", default=60)  # below CELERY_TASK_SOFT_TIME_LIMIT
SMS_DISPATCH_CHUNK = env.int("SMS_DISPATCH_CHUNK", default=100)
SMS_CLAIM_CHUNK = env.int("SMS_CLAIM_CHUNK", default=100)  # claimed together; stored set-based together
SMS_SWEEP_LIMIT = env.int("SMS_SWEEP_LIMIT", default=50000)
# The outbox keeps only what is still to send or settle (sms.services.log): a settled message moves
# to the log this long (clock seconds) after it settled, a sent one with no final report after
# SMS_LOG_UNREPORTED_SECONDS (a report later than that still settles it in the log).
SMS_LOG_GRACE_SECONDS = env.float("SMS_LOG_GRACE_SECONDS", default=60)
SMS_LOG_UNREPORTED_SECONDS = env.float("SMS_LOG_UNREPORTED_SECONDS", default=2 * 86400)
SMS_LOG_MOVE_EVERY_SECONDS = env.float("SMS_LOG_MOVE_EVERY_SECONDS", default=15)
SMS_LOG_MOVE_CHUNK = env.int("SMS_LOG_MOVE_CHUNK", default=5000)
SMS_LOG_MOVE_TIME_BUDGET = env.float("SMS_LOG_MOVE_TIME_BUDGET", default=30)  # wall seconds per pass
SMS_LOG_PARTITIONS_AHEAD = env.int("SMS_LOG_PARTITIONS_AHEAD", default=3)  # months made ahead (PostgreSQL)
# Months of SMS log kept in PostgreSQL (UTC months, the current one included): phone numbers and
# message texts are personal data (Data Protection Act 2019: no longer than needed). 13 lets care
# answer "did I get the SMS" for a year and a month; older monthly partitions are exported to
# ARCHIVE_DIR and dropped by `archive_partitions` (docs/partitioning.md, "SMS log").
SMS_LOG_MONTHS = env.int("SMS_LOG_MONTHS", default=13)
if SMS_LOG_MONTHS < 2:
    raise ValueError("SMS_LOG_MONTHS >= 2: last month stays whole while its late reports and disputes come in")
# A message reaches the log at most SMS_LOG_UNREPORTED_SECONDS after it was sent; its month must
# still have its partition then (else it would land in the DEFAULT one, which is never archived).
if (SMS_LOG_MONTHS - 1) * 28 * 86400 <= SMS_LOG_UNREPORTED_SECONDS:
    raise ValueError("SMS_LOG_MONTHS must outlast SMS_LOG_UNREPORTED_SECONDS")
# A final report whose message is still not found this long after it arrived is given up on by the
# sweeps (a report for another application on the same gateway account, or for a message archived
# already): without the bound every pass would look again, and enough of them would fill the pass.
SMS_REPORT_MATCH_SECONDS = env.float("SMS_REPORT_MATCH_SECONDS", default=SMS_LOG_UNREPORTED_SECONDS + 86400)
if SMS_REPORT_MATCH_SECONDS <= SMS_LOG_UNREPORTED_SECONDS:
    raise ValueError("SMS_REPORT_MATCH_SECONDS must outlast SMS_LOG_UNREPORTED_SECONDS (a late report still settles)")
SMS_CODES_QUEUE = "sms_codes"
SMS_NOTICE_QUEUE = "sms_notices"
# Quiet hours, Africa/Nairobi (sms/quiet.py): reminders are never sent from START to END ("HH:MM").
SMS_QUIET_START = time.fromisoformat(os.environ.get("SMS_QUIET_START", "20:00"))
SMS_QUIET_END = time.fromisoformat(os.environ.get("SMS_QUIET_END", "08:00"))
# What one SMS segment costs (KES; Africa's Talking reports "KES 0.8000" per Kenyan SMS): the
# codes push and reminder screens show count x cost before the manager confirms.
SMS_COST_KES = os.environ.get("SMS_COST_KES", "0.80")

# --- Campaign endgame (docs/endgame.md) ----------------------------------------------------------
# A purchase under the new key counts as evidence of update when no complaint or rejected-code
# report follows within this many days.
ENDGAME_INFERENCE_GRACE_DAYS = env.float("ENDGAME_INFERENCE_GRACE_DAYS", default=3)
# Reminders written per campaign per run of the beat task (the rest go on the next run).
ENDGAME_REMINDERS_PER_RUN = env.int("ENDGAME_REMINDERS_PER_RUN", default=20000)
# Off: beat leaves reminders to `manage.py send_reminders` (run it from cron, or a rehearsal's office).
ENDGAME_REMINDERS_BY_BEAT = env.bool("ENDGAME_REMINDERS_BY_BEAT", default=True)
# Workers: `celery -A kplc_sts worker -Q sms_codes,sms_notices,celery`; in production give
# sms_codes its own worker so customers' codes never wait behind notices.
CELERY_TASK_ROUTES = {
    "sms.send_messages": {"queue": SMS_CODES_QUEUE},  # callers pass queue= for notices
    "sms.sweep": {"queue": "celery"},
    "sms.log_settled": {"queue": "celery"},
    "sms.log_partitions": {"queue": "celery"},
    "campaigns.start_due_batches": {"queue": "celery"},
    "campaigns.refresh_targets": {"queue": "celery"},
    "campaigns.send_reminders": {"queue": "celery"},
    "campaigns.infer_updates": {"queue": "celery"},
    "tokens.partitions_ensure": {"queue": "celery"},
    "tokens.vend_bodies_compact": {"queue": "celery"},
    "tokens.archive_partitions": {"queue": "celery"},
    "sms.reports_prune": {"queue": "celery"},
}
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "campaigns-start-due-batches": {"task": "campaigns.start_due_batches", "schedule": 30.0},
    "sms-sweep": {"task": "sms.sweep", "schedule": 60.0},
    "sms-log-settled": {"task": "sms.log_settled", "schedule": SMS_LOG_MOVE_EVERY_SECONDS},
    "sms-log-partitions": {"task": "sms.log_partitions", "schedule": 6 * 3600.0},
    "campaigns-refresh-targets": {"task": "campaigns.refresh_targets", "schedule": 3600.0},
    "campaigns-send-reminders": {"task": "campaigns.send_reminders", "schedule": 1800.0},
    "campaigns-infer-updates": {"task": "campaigns.infer_updates", "schedule": 3600.0},
    # Vend history (docs/partitioning.md): partitions ahead, bodies compacted after the replay window,
    # months past retention archived (the SMS log's too). Each is idempotent; the hourly/daily
    # spacing is slack, not need.
    "tokens-partitions-ensure": {"task": "tokens.partitions_ensure", "schedule": 3600.0},
    "tokens-vend-bodies-compact": {"task": "tokens.vend_bodies_compact", "schedule": 3600.0},
    "tokens-archive-partitions": {"task": "tokens.archive_partitions", "schedule": 86400.0},
    # Delivery reports (phone numbers) go with the SMS log's retention; their outcome is in the log.
    "sms-reports-prune": {"task": "sms.reports_prune", "schedule": 86400.0},
}

# --- Vend history: partitions, replay window, retention (docs/partitioning.md) -------------------------
# A partner's retry with the same reference replays the first response byte for byte for this many
# days; then the stored body is compacted and such a retry gets RESPONSE_EXPIRED (never a second sale).
VEND_REPLAY_DAYS = env.int("VEND_REPLAY_DAYS", default=7)
# Months of vends, tokens and digests kept in PostgreSQL (the current month included); older monthly
# partitions are exported to ARCHIVE_DIR (gzip CSV, counted and checksummed) and dropped.
VEND_HISTORY_MONTHS = env.int("VEND_HISTORY_MONTHS", default=13)
HISTORY_PARTITIONS_AHEAD_MONTHS = env.int("HISTORY_PARTITIONS_AHEAD_MONTHS", default=3)
ARCHIVE_DIR = Path(os.environ.get("ARCHIVE_DIR") or VAR_DIR / "archive")
if VEND_REPLAY_DAYS < 1 or VEND_HISTORY_MONTHS < 2 or HISTORY_PARTITIONS_AHEAD_MONTHS < 1:
    raise ValueError("VEND_REPLAY_DAYS >= 1, VEND_HISTORY_MONTHS >= 2, HISTORY_PARTITIONS_AHEAD_MONTHS >= 1")
if VEND_HISTORY_MONTHS * 28 <= VEND_REPLAY_DAYS:
    raise ValueError("VEND_HISTORY_MONTHS must outlast the replay window (VEND_REPLAY_DAYS)")

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
USSD_RATE_LIMIT_PER_MINUTE = env.int("USSD_RATE_LIMIT_PER_MINUTE", default=30)
USSD_SMS_COPIES_PER_HOUR = env.int("USSD_SMS_COPIES_PER_HOUR", default=3)

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSONParser that answers 400 MALFORMED_REQUEST to JSON nested deep enough to exhaust the stack.
    "DEFAULT_PARSER_CLASSES": ["tokens.api.parsers.BoundedJSONParser"],
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
# Every handler passes through the redaction filter and formatter: token digits, callback secrets,
# API keys, the KEK and session ids never reach a log line, tracebacks included. LOG_FORMAT=json
# (the production default) writes one JSON object per line; each carries the request id.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_tokens": {"()": "kplc_sts.logging.RedactTokenDigitsFilter"},
        "request_id": {"()": "kplc_sts.logging.RequestIdFilter"},
    },
    "formatters": {
        "plain": {
            "()": "kplc_sts.logging.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {
            "()": "kplc_sts.logging.RedactingJsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id", "redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Reverse proxy --------------------------------------------------------------------------------
# Addresses of the TLS-terminating proxies in front of gunicorn. Only requests from them may say who
# the client is (X-Forwarded-For) or that the request came over HTTPS (X-Forwarded-Proto); from
# anyone else those headers are dropped (kplc_sts.middleware.TrustedProxyMiddleware).
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Africa's Talking callbacks -----------------------------------------------------------------
# AT signs neither callback: the secret path segment is the guard (/ussd/<secret>/), and the
# optional allowlists name the networks AT calls from. With a secret set the bare /ussd/ refuses.
USSD_CALLBACK_SECRET = env_secret("USSD_CALLBACK_SECRET") or ""
USSD_ALLOWED_NETWORKS = env_networks("USSD_ALLOWED_NETWORKS")
SMS_DLR_ALLOWED_NETWORKS = env_networks("SMS_DLR_ALLOWED_NETWORKS")

# --- Staff sign-in: lockout (django-axes), second factor (django-otp), sessions -------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username+address
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "kplc_sts.clientip.client_ip"
AXES_HTTP_RESPONSE_CODE = 429
# A second factor for staff who can reveal token digits, issue management tokens or decide
# reversals, and for superusers. Production requires it; the demo and the tests do not.
STAFF_2FA_REQUIRED = env_bool("STAFF_2FA_REQUIRED", False)
OTP_TOTP_ISSUER = "KPLC back office"
# Staff sessions: at most 8 hours, and 30 minutes idle ends them (SESSION_SAVE_EVERY_REQUEST slides
# the idle window; accounts.middleware enforces the absolute limit).
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_SECONDS", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_MAX_AGE_SECONDS = env.int("SESSION_MAX_AGE_SECONDS", default=8 * 3600)
SESSION_COOKIE_HTTPONLY = True

# --- Content-Security-Policy (django-csp) ---------------------------------------------------------
# Scripts only from our own origin: Chart.js and the Swagger UI are served locally. Inline style
# *attributes* stay allowed (the funnel bars' widths); they cannot run script, and <style> elements
# or foreign stylesheets are still refused.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Metrics (GET /metrics, Prometheus text format) ----------------------------------------------
# Answered only with "Authorization: Bearer <METRICS_TOKEN>" or to a client in METRICS_ALLOWED_NETWORKS;
# with neither configured it answers nobody. Under gunicorn set PROMETHEUS_MULTIPROC_DIR (an empty,
# per-host directory) so every worker's counters are summed.
METRICS_TOKEN = env_secret("METRICS_TOKEN") or ""
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS")

# --- Clock (kplc_sts/clock.py) ----------------------------------------------------------------------
# Unset: the wall clock. A rehearsal runs every process on one accelerated clock: the simulated
# start instant, the wall-clock instant it corresponds to, and simulated seconds per real second.
CLOCK_START = None
if os.environ.get("CLOCK_START"):
    import datetime as _dt

    CLOCK_START = _dt.datetime.fromisoformat(os.environ["CLOCK_START"])
    if CLOCK_START.tzinfo is None:
        raise ValueError("CLOCK_START must carry a zone, e.g. 2024-06-12T08:00:00+03:00")
CLOCK_WALL_START = env.float("CLOCK_WALL_START", default=0.0)
CLOCK_SPEED = env.float("CLOCK_SPEED", default=1.0)
if CLOCK_SPEED <= 0:
    raise ValueError("CLOCK_SPEED must be positive (clock seconds per wall second)")
# Beat counts wall seconds while the schedule above is meant in clock seconds ("start due batches
# every 30 s"): on an accelerated clock each interval shrinks by the speed, but never below this
# many wall seconds, so a 4000x rehearsal does not run the sweep in a busy loop.
CLOCK_BEAT_MIN_SECONDS = env.float("CLOCK_BEAT_MIN_SECONDS", default=1.0)
if CLOCK_START is not None:
    CELERY_BEAT_SCHEDULE = {
        name: {**entry, "schedule": max(float(entry["schedule"]) / CLOCK_SPEED, CLOCK_BEAT_MIN_SECONDS)}
        for name, entry in CELERY_BEAT_SCHEDULE.items()
    }
