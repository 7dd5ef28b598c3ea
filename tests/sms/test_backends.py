"""The Africa's Talking backend, through the real SDK, against the local gateway."""

from __future__ import annotations

from decimal import Decimal

from sms.backends import get_backend


def test_accepted_message_carries_id_and_cost(at_backend):
    result = get_backend().send(recipient="+254712345678", body="hello", purpose="codes")
    assert result.outcome == "sent"
    assert result.provider_message_id.startswith("ATXid_")
    assert (result.cost, result.currency) == (Decimal("0.8000"), "KES")
    record = at_backend.sent[-1]
    assert (record.number, record.message, record.sender_id, record.enqueue) == (
        "+254712345678",
        "hello",
        "KPLC",
        False,
    )


def test_notices_are_enqueued_in_bulk_mode(at_backend):
    get_backend().send(recipient="+254712345678", body="notice", purpose="notice")
    assert at_backend.sent[-1].enqueue is True


def test_invalid_and_blacklisted_numbers_are_permanent(at_backend):
    at_backend.config.number_status = {"+254700000403": 403, "+254700000406": 406, "+254700000401": 401}
    backend = get_backend()
    assert backend.send(recipient="+254700000403", body="x", purpose="codes").failure_reason == "InvalidPhoneNumber"
    blacklisted = backend.send(recipient="+254700000406", body="x", purpose="codes")
    assert (blacklisted.outcome, blacklisted.failure_reason) == ("rejected", "UserInBlacklist")
    risk = backend.send(recipient="+254700000401", body="x", purpose="codes")
    assert (risk.outcome, risk.failure_reason) == ("retry", "RiskHold")
    # The SDK itself refuses local formats before sending anything.
    assert backend.send(recipient="0712345678", body="x", purpose="codes").outcome == "rejected"
    assert at_backend.sent == []


def test_gateway_errors_and_bad_keys_are_transient(at_backend, settings):
    at_backend.config.fail_rate = 1.0
    outcomes = {
        get_backend().send(recipient="+254712345678", body="x", purpose="codes").failure_reason for _ in range(12)
    }
    assert outcomes == {"GatewayError", "InternalServerError"}  # HTTP 500 and statusCode 500
    at_backend.config.fail_rate = 0.0
    settings.AT_API_KEY = "wrong"
    from sms.backends import _backend

    _backend.cache_clear()
    result = get_backend().send(recipient="+254712345678", body="x", purpose="codes")
    assert result.outcome == "retry" and "authentication" in result.error


def test_slow_answers_still_arrive(at_backend):
    at_backend.config.slow_rate, at_backend.config.slow_seconds = 1.0, 0.3
    assert get_backend().send(recipient="+254712345678", body="x", purpose="codes").outcome == "sent"
