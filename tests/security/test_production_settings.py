"""Findings 11 and 14: production refuses demo defaults and passes `check --deploy` with the
documented variables; typed environment values fail loudly."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from kplc_sts.envconf import StrictEnv
from tests.security.production_env import run_production, start_production


def test_check_deploy_passes_at_warning_level_with_the_documented_variables(tmp_path) -> None:
    result = run_production(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_starts_with_the_documented_variables(tmp_path) -> None:
    result = start_production(tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AT_API_URL": None}, "AT_API_URL"),  # unset used to mean the local fake gateway
        ({"AT_API_URL": "http://127.0.0.1:8025"}, "AT_API_URL"),
        ({"SMS_DELIVERY_REPORT_SECRET": "dev-delivery-report-secret"}, "SMS_DELIVERY_REPORT_SECRET"),
        ({"SMS_DELIVERY_REPORT_SECRET": "demo-dlr-secret"}, "SMS_DELIVERY_REPORT_SECRET"),
        ({"SMS_DELIVERY_REPORT_SECRET": None}, "SMS_DELIVERY_REPORT_SECRET"),
        ({"USSD_CALLBACK_SECRET": None}, "USSD_CALLBACK_SECRET"),
        ({"USSD_CALLBACK_SECRET": "short"}, "USSD_CALLBACK_SECRET"),
        ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_ALLOWED_HOSTS": ""}, "DJANGO_ALLOWED_HOSTS"),
        ({"AT_API_KEY": None}, "AT_API_KEY"),
        ({"AT_API_KEY": "local-gateway-key"}, "AT_API_KEY"),
        ({"SMS_BACKEND": "sms.backends.console.ConsoleBackend"}, "SMS_BACKEND"),
        ({"DJANGO_SECRET_KEY": "insecure-dev-only-key-change-me"}, "DJANGO_SECRET_KEY"),
        ({"METRICS_TOKEN": "demo-metrics-token"}, "METRICS_TOKEN"),
        ({"DJANGO_DEBUG": "ture"}, "DJANGO_DEBUG"),
        ({"STAFF_2FA_REQUIRED": "flase"}, "STAFF_2FA_REQUIRED"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"}, "TRUSTED_PROXIES"),
        ({"SMS_SEND_RATE": "fast"}, "SMS_SEND_RATE"),
    ],
)
def test_production_refuses_demo_defaults_and_unreadable_values(tmp_path, env, named) -> None:
    result = start_production(env, tmp=tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_production_requires_the_second_factor_and_short_sessions(tmp_path) -> None:
    result = run_production(
        [
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.STAFF_2FA_REQUIRED, s.SESSION_COOKIE_AGE, s.SESSION_MAX_AGE_SECONDS, s.SESSION_SAVE_EVERY_REQUEST,"
            " s.LOGGING['handlers']['console']['formatter'], s.SECURE_PROXY_SSL_HEADER)",
        ],
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "1800", "28800", "True", "json", "('HTTP_X_FORWARDED_PROTO',", "'https')"]


def test_proxy_ssl_header_is_trusted_only_with_a_configured_proxy(tmp_path) -> None:
    result = run_production(
        [
            "-c",
            "import django; django.setup(); from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER)",
        ],
        env={"TRUSTED_PROXIES": None},
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


@pytest.mark.parametrize("value", ["ture", "flase", "enabled", "2x"])
def test_strict_bool_refuses_what_it_cannot_read(monkeypatch, value) -> None:
    monkeypatch.setenv("KPLC_TEST_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match="KPLC_TEST_FLAG"):
        StrictEnv().bool("KPLC_TEST_FLAG", default=False)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("TRUE", True), ("off", False), ("", False)])
def test_strict_bool_reads_the_usual_spellings(monkeypatch, value, expected) -> None:
    monkeypatch.setenv("KPLC_TEST_FLAG", value)
    assert StrictEnv().bool("KPLC_TEST_FLAG", default=False) is expected
