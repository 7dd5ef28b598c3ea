"""Finding 15: Prometheus metrics at /metrics, behind a bearer token or a network allowlist."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from sms.models import DeliveryReport, Message
from sms.tasks import send_messages_task as send_messages

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-abcdefghijkl"


@pytest.fixture
def metrics_token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def _scrape(**headers: str) -> str:
    response = Client().get("/metrics", **headers)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if line.split("{")[0].split(" ")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_need_the_bearer_token(metrics_token) -> None:
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Api-Key {TOKEN}").status_code == 401
    assert "kplc_sms_messages" in _scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def test_metrics_from_a_configured_network_need_no_token(settings) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.9.0.0/16"]
    assert Client().get("/metrics").status_code == 404
    assert "kplc_sms_messages" in _scrape(REMOTE_ADDR="10.9.1.2")


def test_metrics_answer_nobody_when_nothing_is_configured(settings) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_vends_errors_sms_reports_and_task_failures_are_graphed(
    metrics_token, vend, vending_keys, in_campaign, meter_factory, api
) -> None:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    before = _scrape(**auth)
    meter = meter_factory.create()
    assert vend(meter, reference="M-1").status_code == 201
    assert vend(meter, reference="M-1").status_code in (200, 201)  # the replay
    assert api.get("/api/v1/meters/54000000015/").status_code == 404
    assert vend(meter, reference="M-2", amount="0.50").status_code == 422
    Message.objects.create(recipient="+254700000009", body="notice", purpose="notice")
    DeliveryReport.objects.create(provider_message_id="ATXid_pending", status="Success")
    assert send_messages.apply(args=[None], throw=False).state == "FAILURE"  # a real task failing in Celery's tracer
    after = _scrape(**auth)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("kplc_vends_total", outcome="issued") == 1
    assert delta("kplc_vends_total", outcome="replayed") == 1
    assert delta("kplc_vends_total", outcome="AMOUNT_TOO_LOW") == 1
    assert delta("kplc_api_errors_total", code="UNKNOWN_METER") == 1
    assert delta("kplc_vend_duration_seconds_count") == 3
    assert _value(after, "kplc_sms_messages", queue="sms_notices", status="queued") >= 1
    assert "kplc_sms_oldest_queued_age_seconds" in after
    assert _value(after, "kplc_delivery_reports_unapplied") == 1
    assert "kplc_delivery_report_lag_seconds" in after
    assert _value(after, "kplc_celery_task_failures_total", task="sms.send_messages") >= 1
    assert "kplc_batch_progress" in after
