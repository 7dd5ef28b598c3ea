"""Findings 6 and 10: the delivery-report secret was in gunicorn's access log, in Django's error
lines and in the fake gateway's start-up line; `logger.exception` printed token digits from the
exception text. The logs of a real gunicorn run are grepped for every secret, as for token digits."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import subprocess
import sys
import time

import pytest
from django.conf import settings

from kplc_sts.logging import redact
from tests.security.live_gunicorn import live_gunicorn
from tests.security.production_env import PRODUCTION_ENV, PROJECT_DIR
from tests.support import needs_postgres_and_redis
from tests.vending.factories import load_vending_keys, make_partner

SECRET_NAMES = (
    "SMS_DELIVERY_REPORT_SECRET",
    "USSD_CALLBACK_SECRET",
    "METRICS_TOKEN",
    "AT_API_KEY",
    "DJANGO_SECRET_KEY",
)
SESSION_ID = "q8z1r0k3v7m2n4b6c9x5l0p2w8e4t6y1"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_no_secret_or_token_in_the_logs_of_a_real_run(tmp_path, meter_factory) -> None:
    needs_postgres_and_redis("the server process must share a PostgreSQL test database")
    load_vending_keys()
    _partner, api_key = make_partner()
    meter = meter_factory.create(krn=2, base_date=2014, key_state="confirmed")
    env = PRODUCTION_ENV
    dlr = f"/sms/delivery-reports/{env['SMS_DELIVERY_REPORT_SECRET']}/"
    ussd = f"/ussd/{env['USSD_CALLBACK_SECRET']}/"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    digits: list[str] = []
    with live_gunicorn(tmp_path) as server:
        auth = {"Authorization": f"Api-Key {api_key}", "Content-Type": "application/json"}
        for n in range(3):
            body = json.dumps({"meter_number": meter.meter_number, "amount": "100.00", "reference": f"LOG-{n}"})
            status, _h, content = server.request("POST", "/api/v1/vends/", body.encode(), auth)
            assert status == 201, content
            digits += [token["digits"] for token in json.loads(content)["tokens"]]
        assert server.request("POST", dlr, b"id=ATXid_x&status=Success", form)[0] == 200
        assert server.request("POST", dlr, b"{not json", {"Content-Type": "application/json"})[0] == 400
        assert server.request("POST", dlr, b"status=Success", form)[0] == 400  # Django logs "Bad Request: <path>"
        assert server.request("POST", "/sms/delivery-reports/a-wrong-guess/", b"id=1&status=x", form)[0] == 404
        assert server.request("POST", ussd, b"sessionId=s&phoneNumber=%2B254712345678&text=", form)[0] == 200
        bearer = {"Authorization": f"Bearer {env['METRICS_TOKEN']}"}
        assert server.request("GET", "/metrics", headers=bearer)[0] == 200
        # Credentials where they do not belong: in a query string, in a cookie.
        server.request("GET", f"/api/v1/meters/{meter.meter_number}/?key={api_key}", headers=auth)
        server.request("GET", f"/dashboard/?sessionid={SESSION_ID}", headers={"Cookie": f"sessionid={SESSION_ID}"})
        server.request("GET", f"/api/v1/vends/LOG-0/?token={digits[0]}", headers=auth)
        time.sleep(0.5)  # let the workers flush their last lines
    text = server.log_text()
    assert "/api/v1/vends/" in text and "/sms/delivery-reports/[redacted]/" in text  # the requests were logged
    assert "Bad Request" in text
    for name in SECRET_NAMES:
        assert env[name] not in text, name
    assert settings.STS_KEK not in text
    assert api_key not in text and api_key.split(".")[1] not in text
    assert SESSION_ID not in text
    for token in digits:
        assert token not in text
    assert any(line.startswith("{") and '"request_id"' in line for line in text.splitlines())  # JSON lines


def test_the_fake_gateways_start_up_line_hides_the_callback_secret(tmp_path) -> None:
    secret = "dlr-start-up-secret-987654321"
    process = subprocess.Popen(
        [
            sys.executable, "manage.py", "fake_africastalking", "--port", "0",
            "--callback", f"http://127.0.0.1:8000/sms/delivery-reports/{secret}/",
        ],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.test"},
    )  # fmt: skip
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "fake Africa's Talking" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
    finally:
        process.kill()
        process.wait()
    assert "fake Africa's Talking" in line
    assert secret not in line and "/sms/delivery-reports/[redacted]/" in line


@pytest.fixture
def project_log() -> io.StringIO:
    """A logger wired exactly as settings.LOGGING wires the console handler, writing to a buffer."""
    stream = io.StringIO()
    config = json.loads(json.dumps(settings.LOGGING, default=str))
    config["handlers"]["console"]["stream"] = stream
    config["root"] = {"handlers": [], "level": "INFO"}
    config["loggers"] = {"kplc_sts.test_redaction": {"handlers": ["console"], "level": "INFO", "propagate": False}}
    logging.config.dictConfig({**config, "disable_existing_loggers": False})
    yield stream
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_exception_text_and_tracebacks_are_redacted(project_log, fmt) -> None:
    handler = logging.getLogger("kplc_sts.test_redaction").handlers[0]
    if fmt == "json":
        from kplc_sts.logging import RedactingJsonFormatter

        handler.setFormatter(RedactingJsonFormatter("%(levelname)s %(name)s %(request_id)s %(message)s"))
    logger = logging.getLogger("kplc_sts.test_redaction")
    try:
        raise ValueError(
            f"token 11112222333344445555 refused; callback /ussd/{settings.SECRET_KEY}/ key kplc_0a1b2c3d.{'x' * 43}"
        )
    except ValueError:
        logger.exception("vend failed for token %s", "99998888777766665555")
    text = project_log.getvalue()
    assert "Traceback" in text or "traceback" in text.lower() or "ValueError" in text
    for secret in ("11112222333344445555", "99998888777766665555", settings.SECRET_KEY, "x" * 43):
        assert secret not in text
    assert "kplc_0a1b2c3d.[redacted]" in text


def test_redaction_keeps_what_operators_need() -> None:
    line = "POST /api/v1/vends/ 201 12.3ms meter 54000000015 amount 100.00 phone +254712345678 prefix kplc_0a1b2c3d"
    assert redact(line) == line
    assert re.search(r"\[redacted\]", redact("Authorization: Bearer abcdefghijklmnop"))
