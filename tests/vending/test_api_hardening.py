"""Findings 7, 8, 10 and 13 at the partner API and the delivery-report callback."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from sms.models import DeliveryReport
from tokens.api.errorcodes import CODES, OPERATION_CODES
from tokens.errors import VendError

pytestmark = pytest.mark.django_db


def test_deeply_nested_json_is_a_malformed_request_not_a_500(api) -> None:
    body = '{"a":' * 1000 + "1" + "}" * 1000
    response = api.post("/api/v1/vends/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MALFORMED_REQUEST"


def test_deeply_nested_json_to_the_delivery_report_callback_is_400(settings) -> None:
    body = '{"a":' * 1000 + "1" + "}" * 1000
    url = f"/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
    assert Client().post(url, body, content_type="application/json").status_code == 400


@pytest.mark.parametrize(
    ("fields", "stored_retry"),
    [
        ({"retryCount": "99999999999999999999"}, 32767),
        ({"retryCount": "40000"}, 32767),
        ({"retryCount": "-3"}, None),
        ({"retryCount": "2"}, 2),
        ({"retryCount": "x" * 10_000}, None),
        ({"failureReason": "F" * 10_000, "phoneNumber": "9" * 500, "networkCode": "1" * 50}, None),
    ],
)
def test_delivery_report_fields_out_of_range_are_clamped_or_ignored(settings, fields, stored_retry) -> None:
    url = f"/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
    response = Client().post(url, {"id": "ATXid_range", "status": "Failed", **fields})
    assert response.status_code == 200
    report = DeliveryReport.objects.get(provider_message_id="ATXid_range")
    assert report.retry_count == stored_retry
    assert len(report.failure_reason) <= 64 and len(report.phone_number) <= 16 and len(report.network_code) <= 8


@pytest.mark.parametrize(
    "payload",
    [
        {"id": {"nested": ["x"]}, "status": "Success"},
        {"id": "x" * 65, "status": "Success"},
        {"id": "ATXid_1", "status": ["Success"]},
        {"status": "Success"},
        {"id": "   ", "status": "Success"},
        {"id": "ATXid_\u0000", "status": "Success"},
        {"id": "ATXid_1", "status": "Success", "failureReason": "a\u0000b"},
    ],
)
def test_delivery_reports_without_a_usable_id_or_status_are_400(settings, payload) -> None:
    url = f"/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
    response = Client().post(url, json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["fields"]
    assert not DeliveryReport.objects.exists()


def test_vend_responses_carry_no_store(vend, vending_keys, in_campaign, meter_factory, api) -> None:
    meter = meter_factory.create()
    first = vend(meter, reference="NS-1")
    assert first.status_code == 201 and first["Cache-Control"] == "no-store"
    assert vend(meter, reference="NS-1")["Cache-Control"] == "no-store"  # the replay
    assert api.get("/api/v1/vends/NS-1/")["Cache-Control"] == "no-store"
    assert api.get("/api/v1/vends/NS-1/reprint/")["Cache-Control"] == "no-store"


# --- OpenAPI (finding 13) ------------------------------------------------------------------------


@pytest.fixture
def schema(api) -> dict:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def test_the_schemas_own_vend_example_is_accepted(schema, vend, vending_keys, in_campaign, meter_factory, api) -> None:
    operation = schema["paths"]["/api/v1/vends/"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        body = example["value"]
        meter_factory.create(meter_number=body["meter_number"])
        response = api.post("/api/v1/vends/", body, format="json")
        assert response.status_code == 201, response.content


def test_a_blank_reversal_reason_is_invalid_in_the_schema_too(schema) -> None:
    reason = schema["components"]["schemas"]["ReversalRequest"]["properties"]["reason"]
    assert reason.get("pattern") == "\\S"  # "   " matches minLength but not this, and the API refuses it


def test_a_reason_of_spaces_is_refused(api, vend, vending_keys, in_campaign, meter_factory) -> None:
    vend(meter_factory.create(), reference="RV-1")
    response = api.post("/api/v1/vends/RV-1/reversal/", {"reason": "   "}, format="json")
    assert response.status_code == 400


def test_every_operation_lists_its_error_codes_with_meaning_and_retry_safety(schema) -> None:
    for path, method, operation in _operations(schema):
        listed = operation.get("x-error-codes")
        assert listed, f"{method.upper()} {path} lists no error codes"
        for entry in listed:
            assert entry["code"] in operation["description"]
            assert entry["meaning"] and isinstance(entry["retry_safe"], bool)
        assert "retry with the same reference" in operation["description"]


def test_the_error_code_list_is_complete() -> None:
    raised = {cls.code for cls in VendError.__subclasses__()} | {VendError.code} - {"VEND_REFUSED"}
    from tokens.api.exceptions import _CLASS_CODES, FIELD_CODES

    known = raised | {code for _cls, code in _CLASS_CODES} | set(FIELD_CODES.values())
    missing = known - set(CODES) - {"VEND_REFUSED"}
    assert not missing
    for operation, codes in OPERATION_CODES.items():
        assert set(codes) <= set(CODES), operation
