"""Project-wide guarantees: production refuses to start without secrets, logs never carry tokens."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from django.db import connection

from kplc_sts.logging import RedactTokenDigitsFilter, redact_token_digits
from tests.security.production_env import start_production

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _import_production_settings(**env: str) -> subprocess.CompletedProcess[str]:
    # Every other documented production variable set, the KEK and secret key only as given here.
    return start_production({"STS_KEK": None, "DJANGO_SECRET_KEY": None, **env})


def test_production_refuses_to_start_without_a_key_encryption_key() -> None:
    result = _import_production_settings(DJANGO_SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "STS_KEK" in result.stderr


def test_production_refuses_to_start_without_a_secret_key() -> None:
    result = _import_production_settings(STS_KEK="ab" * 32)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_starts_with_secrets_from_files(tmp_path: Path) -> None:
    kek_file = tmp_path / "kek"
    kek_file.write_text("cd" * 32)
    result = _import_production_settings(DJANGO_SECRET_KEY="y" * 60, STS_KEK_FILE=str(kek_file))
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize(
    "text",
    [
        "vend ok token 12345678901234567890 sent",
        "token 1234-5678-9012-3456-7890",
        "token 1234 5678 9012 3456 7890!",
    ],
)
def test_token_digits_are_redacted(text: str) -> None:
    redacted = redact_token_digits(text)
    assert "[token redacted]" in redacted
    assert "7890" not in redacted


def test_meter_numbers_and_amounts_are_not_redacted() -> None:
    text = "meter 54000000019 bought 100.00 KES, phone +254712345678"
    assert redact_token_digits(text) == text


def test_log_records_pass_through_the_redaction_filter(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kplc_sts.test_redaction")
    logger.addFilter(RedactTokenDigitsFilter())
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("issued %s to meter %s", "11112222333344445555", "54000000019")
    finally:
        logger.filters.clear()
    assert "11112222333344445555" not in caplog.text
    assert "54000000019" in caplog.text


@pytest.mark.django_db
def test_postgresql_runs_on_psycopg2_not_psycopg3() -> None:
    # With psycopg 3 also installed, Django would silently pick it over the mandated driver.
    if connection.vendor != "postgresql":
        pytest.skip("SQLite run: the driver check applies to PostgreSQL (CI runs it)")
    from django.db.backends.postgresql import psycopg_any

    assert psycopg_any.is_psycopg3 is False


def test_long_decimal_fractions_are_not_mistaken_for_tokens() -> None:
    text = "Task sms.send_messages succeeded in 0.00026394199994683731s: 0"
    assert redact_token_digits(text) == text
