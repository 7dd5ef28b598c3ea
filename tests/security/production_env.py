"""The production variables .env.example documents, with test values, and a runner for manage.py
under production settings in a clean subprocess (settings are read once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.production",
    "DJANGO_SECRET_KEY": "prod-test-" + "k" * 60,
    "DJANGO_ALLOWED_HOSTS": "backoffice.kplc.example",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://backoffice.kplc.example",
    "STS_KEK": "ab" * 32,
    "SMS_BACKEND": "sms.backends.africastalking.AfricasTalkingBackend",
    "AT_USERNAME": "kplc",
    "AT_API_KEY": "at-live-key-" + "a" * 40,
    "AT_API_URL": "https://api.africastalking.com",
    "SMS_DELIVERY_REPORT_SECRET": "dlr-" + "d" * 40,
    "USSD_CALLBACK_SECRET": "ussd-" + "u" * 40,
    "METRICS_TOKEN": "metrics-" + "m" * 40,
    "TRUSTED_PROXIES": "10.0.0.0/8",
}
# Variables of the developer's shell that would change what the subprocess sees.
_SCRUB = (
    "DJANGO_",
    "STS_KEK",
    "AT_",
    "SMS_",
    "USSD_",
    "METRICS_",
    "TRUSTED_PROXIES",
    "STAFF_2FA",
    "LOG_FORMAT",
    "SESSION_",
    "AXES_",
    "PROMETHEUS_",
)


def run_production(args: list[str], *, env: dict[str, str | None] | None = None, tmp: Path | None = None):
    """Run `python <args>` with the production environment; `env` values of None unset a variable."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    clean.update(PRODUCTION_ENV)
    if tmp is not None:
        clean["KPLC_VAR_DIR"] = str(tmp)
    for key, value in (env or {}).items():
        if value is None:
            clean.pop(key, None)
        else:
            clean[key] = value
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_DIR, env=clean, capture_output=True, text=True, timeout=120
    )


def start_production(env: dict[str, str | None] | None = None, tmp: Path | None = None):
    return run_production(["-c", "import django; django.setup(); print('started')"], env=env, tmp=tmp)
