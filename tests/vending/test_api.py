"""The partner API contract: errors, idempotency, limits, authentication, retrieval, reversal, docs."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from meters.models import Meter
from partners.models import PartnerDailyTotal
from partners.services import partner_api_key_revoke
from tests.factories import luhn_complete
from tests.vending.factories import make_partner
from tokens.models import IssuedToken, ReversalRequest, Vend

pytestmark = pytest.mark.django_db

UNKNOWN = luhn_complete("5999999999")  # Luhn-valid, never made by the meter factory


def error(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content
    return response.json()["error"]


# --- Idempotency ----------------------------------------------------------------------------------------


def test_same_reference_same_body_replays_first_response_byte_for_byte(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    first = vend(meter, reference="R1", customer_phone="0712 345 678")
    second = vend(meter, reference="R1", customer_phone="+254712345678")  # same phone, other spelling
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Vend.objects.count() == 1 and IssuedToken.objects.count() == 1


def test_same_reference_different_body_is_duplicate_reference(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    assert vend(meter, reference="R1", amount="100.00").status_code == 201
    response = vend(meter, reference="R1", amount="200.00")
    assert response.status_code == 409
    assert error(response) == {
        "code": "DUPLICATE_REFERENCE",
        "message": error(response)["message"],
        "field": "reference",
    }
    assert Vend.objects.count() == 1


def test_same_reference_other_partner_is_independent(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    assert vend(meter, reference="R1").status_code == 201
    _other, key = make_partner("Other Bank")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    body = {"meter_number": meter.meter_number, "amount": "100.00", "reference": "R1"}
    response = client.post("/api/v1/vends/", body, format="json")
    assert response.status_code == 201
    assert Vend.objects.count() == 2


def test_refused_vend_does_not_burn_the_reference(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    assert error(vend(meter, reference="R1", amount="1.00"))["code"] == "AMOUNT_TOO_LOW"
    assert vend(meter, reference="R1", amount="100.00").status_code == 201


def test_retrieval_and_reprint(api, vend, vending_keys, in_campaign, meter_factory, partner):
    meter = meter_factory()
    first = vend(meter, reference="R-9")
    got = api.get("/api/v1/vends/R-9/")
    assert got.status_code == 200 and got.content == first.content
    reprint = api.get("/api/v1/vends/R-9/reprint/")
    assert reprint.status_code == 200
    assert reprint.json()["reprint"] is True
    assert reprint.json()["tokens"] == first.json()["tokens"]
    assert AuditEvent.objects.filter(action="vend.reprinted").count() == 1
    missing = api.get("/api/v1/vends/NOPE/")
    assert missing.status_code == 404 and error(missing)["code"] == "VEND_NOT_FOUND"


def test_vends_are_private_to_their_partner(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    vend(meter, reference="SECRET-1")
    _other, key = make_partner("Other Bank")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/vends/SECRET-1/").status_code == 404


def test_reversal_is_recorded_and_never_revokes(api, vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    vend(meter, reference="R-5")
    response = api.post("/api/v1/vends/R-5/reversal/", {"reason": "wrong meter"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["tokens_revoked"] is False and body["status"] == "open"
    assert "cannot be revoked" in body["message"]
    again = api.post("/api/v1/vends/R-5/reversal/", {"reason": "again"}, format="json")
    assert again.status_code == 200 and again.json()["reason"] == "wrong meter"
    assert ReversalRequest.objects.count() == 1
    assert IssuedToken.objects.filter(vend__reference="R-5").exists()
    missing_reason = api.post("/api/v1/vends/R-5/reversal/", {}, format="json")
    assert missing_reason.status_code == 400 and error(missing_reason) == {
        "code": "MISSING_FIELD",
        "message": "This field is required.",
        "field": "reason",
    }


# --- Validation and business errors ---------------------------------------------------------------------


def test_luhn_invalid_meter_number_rejected_before_the_database(api, partner):
    with CaptureQueriesContext(connection) as queries:
        vend_response = api.post(
            "/api/v1/vends/", {"meter_number": "54000000010", "amount": "100", "reference": "X"}, format="json"
        )
        lookup = api.get("/api/v1/meters/54000000010/")
    assert vend_response.status_code == lookup.status_code == 400
    assert error(vend_response)["code"] == error(lookup)["code"] == "INVALID_METER_NUMBER"
    assert error(vend_response)["field"] == "meter_number"
    assert not [q for q in queries.captured_queries if "meters_meter" in q["sql"] or "tokens_vend" in q["sql"]]


@pytest.mark.parametrize(
    ("changes", "code", "field", "status"),
    [
        ({"amount": "abc"}, "INVALID_AMOUNT", "amount", 400),
        ({"amount": "10.001"}, "INVALID_AMOUNT", "amount", 400),
        ({"amount": True}, "INVALID_AMOUNT", "amount", 400),
        ({"amount": 100}, "INVALID_AMOUNT", "amount", 400),
        ({"amount": 100.5}, "INVALID_AMOUNT", "amount", 400),
        ({"amount": "1e3"}, "INVALID_AMOUNT", "amount", 400),
        ({"amount": " 100"}, "INVALID_AMOUNT", "amount", 400),
        # One rule for the range, whatever the sign: below the partner's minimum is 422.
        ({"amount": "-100"}, "AMOUNT_TOO_LOW", "amount", 422),
        ({"amount": "0"}, "AMOUNT_TOO_LOW", "amount", 422),
        ({"amount": "5"}, "AMOUNT_TOO_LOW", "amount", 422),
        ({"amount": "9.99"}, "AMOUNT_TOO_LOW", "amount", 422),
        ({"amount": "35000.01"}, "AMOUNT_TOO_HIGH", "amount", 422),
        ({"reference": "has space"}, "INVALID_REFERENCE", "reference", 400),
        ({"reference": "x" * 65}, "INVALID_REFERENCE", "reference", 400),
        ({"customer_phone": "12345"}, "INVALID_PHONE", "customer_phone", 400),
        ({"meter_number": 54000000018}, "INVALID_METER_NUMBER", "meter_number", 400),
        ({"meter_number": UNKNOWN}, "UNKNOWN_METER", "meter_number", 404),
    ],
)
def test_vend_errors(api, vending_keys, in_campaign, meter_factory, changes, code, field, status):
    meter = meter_factory()
    body = {"meter_number": meter.meter_number, "amount": "100.00", "reference": "E-1", **changes}
    response = api.post("/api/v1/vends/", body, format="json")
    assert response.status_code == status, response.content
    assert error(response)["code"] == code and error(response)["field"] == field
    assert not Vend.objects.exists()


def test_missing_field(api, meter_factory):
    response = api.post("/api/v1/vends/", {"amount": "100.00", "reference": "E-1"}, format="json")
    assert response.status_code == 400
    assert error(response)["code"] == "MISSING_FIELD" and error(response)["field"] == "meter_number"


@pytest.mark.parametrize("status", [Meter.Status.BLOCKED, Meter.Status.RETIRED])
def test_blocked_meter(vend, vending_keys, in_campaign, meter_factory, status):
    response = vend(meter_factory(status=status))
    assert response.status_code == 422 and error(response)["code"] == "METER_BLOCKED"


def test_daily_limit_is_enforced_in_the_transaction(vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    partner, key = make_partner("Small Agent", daily_limit=Decimal("250.00"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    def sell(reference: str, amount: str):
        body = {"meter_number": meter.meter_number, "amount": amount, "reference": reference}
        return client.post("/api/v1/vends/", body, format="json")

    assert sell("D1", "100.00").status_code == 201
    assert sell("D2", "100.00").status_code == 201
    refused = sell("D3", "100.00")
    assert refused.status_code == 422 and error(refused)["code"] == "DAILY_LIMIT_EXCEEDED"
    assert sell("D4", "50.00").status_code == 201
    total = PartnerDailyTotal.objects.get(partner=partner, day=timezone.localdate())
    assert (total.amount, total.vend_count) == (Decimal("250.00"), 3)
    # The refused vend left nothing behind: no vend, no token, no TID used.
    assert not Vend.objects.filter(reference="D3").exists()
    assert IssuedToken.objects.count() == 3


# --- Meter lookup -----------------------------------------------------------------------------------------


def test_meter_lookup(api, vending_keys, in_campaign, meter_factory):
    from tests.vending.factories import enroll, make_campaign

    meter = meter_factory(customer_name="Jane Wanjiru", region="Nairobi")
    response = api.get(f"/api/v1/meters/{meter.meter_number}/")
    assert response.status_code == 200
    body = response.json()
    assert body["customer_name"] == "J*** W******"
    assert (body["region"], body["can_vend"], body["pending_update"]) == ("Nairobi", True, False)
    enroll(meter, make_campaign())
    assert api.get(f"/api/v1/meters/{meter.meter_number}/").json()["pending_update"] is True
    unknown = api.get(f"/api/v1/meters/{UNKNOWN}/")
    assert unknown.status_code == 404 and error(unknown)["code"] == "UNKNOWN_METER"


def test_meter_lookup_says_blocked(api, meter_factory):
    meter = meter_factory(status=Meter.Status.BLOCKED)
    body = api.get(f"/api/v1/meters/{meter.meter_number}/").json()
    assert (body["can_vend"], body["reason"]) == (False, "METER_BLOCKED")


# --- Authentication, authorisation, throttling, HTTP errors ------------------------------------------------


def test_no_key_bad_key_revoked_key(partner_and_key, meter_factory):
    partner, key = partner_and_key
    meter = meter_factory()
    url = f"/api/v1/meters/{meter.meter_number}/"
    client = APIClient()
    missing = client.get(url)
    assert missing.status_code == 401 and error(missing)["code"] == "UNAUTHENTICATED"
    assert missing["WWW-Authenticate"] == "Api-Key"
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key[:-2]}xx")
    assert error(client.get(url))["code"] == "INVALID_API_KEY"
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get(url).status_code == 200
    partner_api_key_revoke(api_key=partner.api_keys.get())
    revoked = client.get(url)
    assert revoked.status_code == 401 and error(revoked)["code"] == "INVALID_API_KEY"


def test_suspended_partner_is_refused(api, partner, meter_factory):
    partner.active = False
    partner.save()
    assert api.get(f"/api/v1/meters/{meter_factory().meter_number}/").status_code == 401


def test_key_is_stored_hashed_with_only_a_prefix(partner_and_key):
    partner, key = partner_and_key
    stored = partner.api_keys.get()
    assert key.startswith(f"kplc_{stored.prefix}.")
    assert key not in json.dumps(list(partner.api_keys.values()), default=str)
    assert len(stored.key_hash) == 64


def test_allowed_ips(api, partner, meter_factory):
    url = f"/api/v1/meters/{meter_factory().meter_number}/"
    partner.allowed_ips = "10.0.0.0/8\n192.168.1.7"
    partner.save()
    refused = api.get(url, REMOTE_ADDR="127.0.0.1")
    assert refused.status_code == 403 and error(refused)["code"] == "IP_NOT_ALLOWED"
    assert api.get(url, REMOTE_ADDR="10.1.2.3").status_code == 200


def test_per_partner_throttle(api, partner, meter_factory):
    partner.throttle_rate = "3/min"
    partner.save()
    url = f"/api/v1/meters/{meter_factory().meter_number}/"
    assert [api.get(url).status_code for _ in range(3)] == [200, 200, 200]
    throttled = api.get(url)
    assert throttled.status_code == 429 and error(throttled)["code"] == "RATE_LIMITED"
    assert int(throttled["Retry-After"]) > 0
    # Another partner has its own allowance.
    _other, key = make_partner("Other Bank")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert other.get(url).status_code == 200


def test_http_level_errors_are_json(api):
    not_found = api.get("/api/v1/nothing/here/")
    assert not_found.status_code == 404 and error(not_found)["code"] == "NOT_FOUND"
    wrong_method = api.delete("/api/v1/vends/")
    assert wrong_method.status_code == 405 and error(wrong_method)["code"] == "METHOD_NOT_ALLOWED"
    form = api.post("/api/v1/vends/", "meter_number=1", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and error(form)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    broken = api.post("/api/v1/vends/", '{"meter_number": ', content_type="application/json")
    assert broken.status_code == 400 and error(broken)["code"] == "MALFORMED_REQUEST"
    not_object = api.post("/api/v1/vends/", "[1, 2]", content_type="application/json")
    assert not_object.status_code == 400 and error(not_object)["code"] == "INVALID_BODY"


def test_post_without_trailing_slash_is_not_redirected(api, vending_keys, in_campaign, meter_factory):
    body = {"meter_number": meter_factory().meter_number, "amount": "100.00", "reference": "NS-1"}
    assert api.post("/api/v1/vends", body, format="json").status_code == 201


# --- Schema and docs ------------------------------------------------------------------------------------------


def test_openapi_schema_and_offline_docs(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/meters/{meter_number}/", "/api/v1/vends/", "/api/v1/vends/{reference}/"):
        assert any(p.rstrip("/") == path.rstrip("/") for p in paths), paths.keys()
    assert "ApiKey" in schema.json()["components"]["securitySchemes"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    from django.contrib.staticfiles import finders

    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_no_vending_key_is_service_unavailable_not_500(vend, in_campaign, meter_factory):
    response = vend(meter_factory())
    assert response.status_code == 503 and error(response)["code"] == "VENDING_UNAVAILABLE"
    assert not Vend.objects.exists()


def test_one_rule_for_amounts_below_the_minimum(api, vending_keys, in_campaign, meter_factory, partner):
    meter = meter_factory()
    answers = []
    for amount in ("-100", "5"):
        body = {"meter_number": meter.meter_number, "amount": amount, "reference": f"LOW{amount}"}
        response = api.post("/api/v1/vends/", body, format="json")
        answers.append((response.status_code, error(response)))
    assert (
        answers[0]
        == answers[1]
        == (
            422,
            {
                "code": "AMOUNT_TOO_LOW",
                "message": f"The smallest vend is KES {partner.min_vend_amount}.",
                "field": "amount",
            },
        )
    )


def test_a_json_number_is_refused_with_the_documented_format(api, meter_factory):
    body = {"meter_number": meter_factory().meter_number, "amount": 100, "reference": "NUM-1"}
    response = api.post("/api/v1/vends/", body, format="json")
    assert response.status_code == 400
    assert error(response)["code"] == "INVALID_AMOUNT"
    assert 'decimal string with at most 2 decimals, e.g. "100.00"' in error(response)["message"]
    assert "JSON number" in error(response)["message"]
    schema = api.get("/api/schema/?format=json").json()
    amount = schema["components"]["schemas"]["VendRequest"]["properties"]["amount"]
    assert amount["type"] == "string" and amount["pattern"].startswith("^-?[0-9]")


def test_every_timestamp_the_api_gives_is_in_utc(api, vend, vending_keys, in_campaign, meter_factory, settings):
    # An accelerated clock started at +03:00 keeps that offset in clock.now(): the API still says UTC.
    settings.CLOCK_START = dt.datetime(2024, 8, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    settings.CLOCK_WALL_START = time.time()
    meter = meter_factory()
    created = vend(meter, reference="TZ-1").json()["created_at"]
    reprinted = api.get("/api/v1/vends/TZ-1/reprint/").json()["reprinted_at"]
    requested = api.post("/api/v1/vends/TZ-1/reversal/", {"reason": "x"}, format="json").json()["requested_at"]
    for stamp in (created, reprinted, requested):
        assert stamp.endswith("+00:00"), stamp
        assert dt.datetime.fromisoformat(stamp) >= dt.datetime(2024, 8, 1, 10, 0, tzinfo=dt.UTC)
