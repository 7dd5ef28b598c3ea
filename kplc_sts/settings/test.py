"""Settings for the test suite. DATABASE_URL points it at PostgreSQL (as CI does)."""

from __future__ import annotations

import secrets

from .base import *  # noqa: F403

DEBUG = False
STS_KEK = secrets.token_hex(32)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
SMS_BACKEND = "sms.backends.memory.MemoryBackend"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Close connections at the end of each request: live-server and worker threads must not keep the
# test database open, or it cannot be dropped at the end of the run.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# WhiteNoise warns on every request when STATIC_ROOT does not exist yet (no collectstatic in tests).
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
# A `replica` alias that is a TEST mirror of the test database, so the router's tests run in the
# ordinary suite (they switch REPLICA_READS on and declare databases={"default", "replica"}); the
# real streaming replica is tests/project/test_replica_streaming.py's own.
if "replica" not in DATABASES:  # noqa: F405
    DATABASES["replica"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}  # noqa: F405
DATABASES["replica"]["CONN_MAX_AGE"] = 0  # noqa: F405
REPLICA_READS = False
