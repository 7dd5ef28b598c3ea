"""Property test of request validation: whatever the body, the answer is a JSON error or a vend, never a 500."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.factories import luhn_complete

pytestmark = pytest.mark.django_db

METER = luhn_complete("5499999999")  # exists in the vend-body test, so some bodies are valid sales

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
meter_numbers = st.from_regex(r"\A[0-9 -]{0,16}\Z") | st.sampled_from(
    [METER, METER[:-1], f"{METER[:5]} {METER[5:]}", ""]
)
amounts = st.from_regex(r"\A-?[0-9]{0,8}(\.[0-9]{0,4})?(e[0-9]{1,3})?\Z") | st.sampled_from(
    ["NaN", "Infinity", "-0", "1e999", "0.00", "100.00", "1_000"]
)
references = st.text(max_size=80) | st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z")
phones = st.text(max_size=20) | st.sampled_from(["+254712345678", "0712345678", "+254"])
bodies = st.fixed_dictionaries(
    {},
    optional={
        "meter_number": meter_numbers | json_values,
        "amount": amounts | json_values,
        "reference": references | json_values,
        "customer_phone": phones | json_values,
    },
)


def assert_json_error_or_vend(response) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        payload = response.json()
        assert set(payload) == {"error"}
        assert isinstance(payload["error"]["code"], str) and payload["error"]["code"].isupper()
        assert isinstance(payload["error"]["message"], str)
    else:
        assert response.status_code == 201
        assert response.json()["tokens"]


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=bodies)
def test_vend_bodies(api, vending_keys, meter_factory, body):
    if not _exists(METER):
        meter_factory(meter_number=METER, krn=2, base_date=2014, key_state="confirmed")
    response = api.post("/api/v1/vends/", json.dumps(body), content_type="application/json")
    event(f"HTTP {response.status_code}")
    assert_json_error_or_vend(response)


@FUZZ
@given(body=json_values)
def test_any_json_document(api, body):
    assert_json_error_or_vend(api.post("/api/v1/vends/", json.dumps(body), content_type="application/json"))


@FUZZ
@given(raw=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", "", "a/b"]))
def test_raw_bytes(api, raw, content_type):
    assert_json_error_or_vend(api.generic("POST", "/api/v1/vends/", raw, content_type=content_type))


@FUZZ
@given(number=st.text(max_size=30).filter(lambda s: "/" not in s and "?" not in s and "#" not in s))
def test_meter_lookup_paths(api, number):
    from urllib.parse import quote

    assert_json_error_or_vend_lookup(api.get(f"/api/v1/meters/{quote(number)}/"))


def assert_json_error_or_vend_lookup(response) -> None:
    assert response.status_code < 500, response.content
    assert response.status_code in (200, 400, 404)
    if response.status_code >= 400:
        assert response.json()["error"]["code"]


def _exists(number: str) -> bool:
    from meters.models import Meter

    return Meter.objects.filter(meter_number=number).exists()


@FUZZ
@given(
    field=st.sampled_from([None, "meter_number", "amount", "reference", "customer_phone"]),
    junk=json_values | amounts | references,
    drop=st.booleans(),
)
def test_one_field_wrong(api, vending_keys, meter_factory, field, junk, drop):
    """A valid sale with at most one field replaced by junk (or removed): a vend or that field's error."""
    if not _exists(METER):
        meter_factory(meter_number=METER, krn=2, base_date=2014, key_state="confirmed")
    body = {"meter_number": METER, "amount": "100.00", "reference": "FUZZ-OK", "customer_phone": "0712345678"}
    if field is not None:
        if drop:
            body.pop(field)
        else:
            body[field] = junk
    response = api.post("/api/v1/vends/", json.dumps(body), content_type="application/json")
    event(f"HTTP {response.status_code}")
    assert_json_error_or_vend(response)
    if response.status_code in (400, 404, 422) and field is not None:
        assert response.json()["error"]["field"] in (field, "reference")
