"""Vending keys are wrapped with AES-GCM under the KEK and only vending_key_get unwraps them."""

from __future__ import annotations

import logging
import secrets

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from tokens.custody import (
    VendingKeyError,
    VendingKeyNotFound,
    key_check_value,
    vending_key_get,
    vending_key_load,
)
from tokens.models import VendingKey

from .conftest import assert_no_key

pytestmark = pytest.mark.django_db


def load(key: bytes, *, sgc: str = "600675", krn: int = 1, dkga: str = "02", base_date: int = 1993) -> VendingKey:
    return vending_key_load(sgc=sgc, krn=krn, dkga=dkga, base_date=base_date, key=key, actor_label="test")


def test_round_trip_returns_the_loaded_key(des_key: bytes) -> None:
    load(des_key)
    assert vending_key_get(sgc="600675", krn=1) == des_key


def test_dkga04_keys_round_trip() -> None:
    key = secrets.token_bytes(20)
    load(key, krn=2, dkga="04", base_date=2014)
    assert vending_key_get(sgc="600675", krn=2) == key


def test_the_database_holds_ciphertext_not_the_key(des_key: bytes) -> None:
    stored = load(des_key)
    stored.refresh_from_db()
    assert des_key not in bytes(stored.ciphertext)
    assert len(bytes(stored.nonce)) >= 12 and len(bytes(stored.tag)) == 16
    assert stored.check_value == key_check_value(des_key)
    assert stored.key_bits == 64


def test_same_key_wrapped_twice_gives_different_ciphertexts(des_key: bytes) -> None:
    first = bytes(load(des_key, krn=1).ciphertext)
    second = bytes(load(des_key, krn=2).ciphertext)
    assert first != second


def test_reloading_replaces_the_key_and_is_audited(des_key: bytes) -> None:
    load(des_key)
    new_key = bytes(b ^ 0x02 for b in des_key)  # flipping bit 1 keeps odd parity
    load(new_key)
    assert VendingKey.objects.count() == 1
    assert vending_key_get(sgc="600675", krn=1) == new_key
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["vending_key.loaded", "vending_key.replaced"]


def test_wrong_kek_fails_cleanly(des_key: bytes, settings) -> None:
    load(des_key)
    settings.STS_KEK = secrets.token_hex(32)
    with pytest.raises(VendingKeyError, match="SGC 600675 KRN 1 failed to unwrap") as excinfo:
        vending_key_get(sgc="600675", krn=1)
    assert_no_key(str(excinfo.value), des_key)
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


@pytest.mark.parametrize("kek", ["", "zz" * 32, "ab" * 16])
def test_missing_or_malformed_kek_is_a_configuration_error(des_key: bytes, settings, kek: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.STS_KEK = kek
    with pytest.raises(ImproperlyConfigured):
        load(des_key)


@pytest.mark.parametrize(
    "move",
    [
        {"sgc": "600676"},
        {"krn": 3},
        {"base_date": 2014},
        {"dkga": "04"},
    ],
)
def test_ciphertext_is_bound_to_its_row(des_key: bytes, move: dict) -> None:
    stored = load(des_key)
    VendingKey.objects.filter(pk=stored.pk).update(**move)
    sgc, krn = move.get("sgc", "600675"), move.get("krn", 1)
    with pytest.raises(VendingKeyError, match="failed to unwrap"):
        vending_key_get(sgc=sgc, krn=krn)


def test_ciphertext_copied_onto_another_row_does_not_unwrap(des_key: bytes) -> None:
    original = load(des_key, sgc="600675")
    other = load(random_other_key(des_key), sgc="600999")
    VendingKey.objects.filter(pk=other.pk).update(
        nonce=original.nonce, ciphertext=original.ciphertext, tag=original.tag
    )
    with pytest.raises(VendingKeyError):
        vending_key_get(sgc="600999", krn=1)


def random_other_key(key: bytes) -> bytes:
    return bytes(b ^ 0x80 for b in key)


def test_tampered_ciphertext_fails(des_key: bytes) -> None:
    stored = load(des_key)
    tampered = bytearray(bytes(stored.ciphertext))
    tampered[0] ^= 1
    VendingKey.objects.filter(pk=stored.pk).update(ciphertext=bytes(tampered))
    with pytest.raises(VendingKeyError):
        vending_key_get(sgc="600675", krn=1)


def test_unknown_key_is_not_found() -> None:
    with pytest.raises(VendingKeyNotFound):
        vending_key_get(sgc="600675", krn=9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": bytes(7)}, "must be 64 bits, got 56"),
        ({"key": bytes(16)}, "must be 64 bits, got 128"),
        ({"sgc": "60067"}, "SGC must be 6 digits"),
        ({"krn": 0}, "KRN must be 1..9"),
        ({"dkga": "03"}, "unsupported DKGA"),
        ({"base_date": 2000}, "base date must be"),
    ],
)
def test_bad_parameters_are_refused(des_key: bytes, kwargs: dict, message: str) -> None:
    arguments = {"sgc": "600675", "krn": 1, "dkga": "02", "base_date": 1993, "key": des_key, "actor_label": "test"}
    arguments.update(kwargs)
    with pytest.raises(VendingKeyError, match=message):
        vending_key_load(**arguments)
    assert not VendingKey.objects.exists()


def test_repr_and_str_show_only_the_check_value(des_key: bytes) -> None:
    stored = load(des_key)
    for text in (repr(stored), str(stored), repr(VendingKey.objects.get(pk=stored.pk))):
        assert_no_key(text, des_key)
        assert stored.check_value in text


def test_no_key_bytes_in_logs_sql_or_audit(des_key: bytes, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    backends = logging.getLogger("django.db.backends")
    backends.setLevel(logging.DEBUG)
    try:
        # A debug cursor logs every statement with its parameters, as DEBUG=True would.
        with CaptureQueriesContext(connection) as queries:
            load(des_key)
            vending_key_get(sgc="600675", krn=1)
    finally:
        backends.setLevel(logging.WARNING)
    assert any("tokens_vendingkey" in record.getMessage() for record in caplog.records)
    assert_no_key(caplog.text, des_key)
    assert_no_key(str(queries.captured_queries), des_key)
    for event in AuditEvent.objects.all():
        assert_no_key(str(event.details), des_key)
        assert_no_key(str(event), des_key)


def test_check_value_is_the_standard_des_kcv() -> None:
    # KCV of the DES key 0123456789ABCDEF: DES-encrypt eight zero bytes, keep three bytes.
    assert key_check_value(bytes.fromhex("0123456789ABCDEF")) == "D5D44F"
