"""Vending-key custody: wrap and unwrap vending keys under the key-encryption key (KEK).

Real STS vending keeps vending keys inside a hardware security module. This is the software
stand-in: AES-256-GCM with the KEK from the environment, the (SGC, KRN, base date, DKGA) bound in
as associated data so a wrapped key cannot be moved to another row. Nothing here logs or returns
key bytes except `vending_key_get`, the single door the token service uses.
"""

from __future__ import annotations

import hashlib
import hmac

from Crypto.Cipher import AES, DES
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from audit.services import audit_record

from .models import VendingKey

# DKGA02 takes a single-DES key; DKGA04 is HMAC-based and the compliance vectors use 160 bits.
KEY_LENGTHS = {"02": {8}, "04": {16, 20, 24, 32}}


class VendingKeyError(ValueError):
    pass


class VendingKeyNotFound(LookupError):
    pass


def _kek() -> bytes:
    value = settings.STS_KEK
    if not value:
        raise ImproperlyConfigured("STS_KEK (or STS_KEK_FILE) is not set.")
    try:
        kek = bytes.fromhex(value)
    except ValueError:
        raise ImproperlyConfigured("STS_KEK must be 64 hexadecimal characters.") from None
    if len(kek) != 32:
        raise ImproperlyConfigured("STS_KEK must be 64 hexadecimal characters (a 32-byte key).")
    return kek


def _associated_data(sgc: str, krn: int, base_date: int, dkga: str) -> bytes:
    return f"vending-key|{sgc}|{krn}|{base_date}|{dkga}".encode()


def key_check_value(key: bytes) -> str:
    """Six hex digits that identify a key without revealing it.

    DES keys use the industry-standard KCV (first three bytes of the key encrypting zeros);
    longer HMAC keys use HMAC-SHA-256 over eight zero bytes the same way.
    """
    if len(key) == 8:
        return DES.new(key, DES.MODE_ECB).encrypt(bytes(8))[:3].hex().upper()  # noqa: S304 - STS keys are DES keys
    return hmac.new(key, bytes(8), hashlib.sha256).digest()[:3].hex().upper()


def parse_key_hex(text: str) -> bytes:
    compact = "".join(text.split())
    try:
        return bytes.fromhex(compact)
    except ValueError:
        raise VendingKeyError("the key must be hexadecimal") from None


def vending_key_load(*, sgc: str, krn: int, dkga: str, base_date: int, key: bytes, actor_label: str) -> VendingKey:
    """Wrap and store a vending key (replacing the same SGC/KRN), and audit it by check value."""
    if not (len(sgc) == 6 and sgc.isdigit()):
        raise VendingKeyError("SGC must be 6 digits")
    if not 1 <= krn <= 9:
        raise VendingKeyError("KRN must be 1..9")
    if dkga not in KEY_LENGTHS:
        raise VendingKeyError(f"unsupported DKGA {dkga!r}: use 02 or 04")
    if base_date not in (1993, 2014, 2035):
        raise VendingKeyError("base date must be 1993, 2014 or 2035")
    if len(key) not in KEY_LENGTHS[dkga]:
        allowed = ", ".join(str(n * 8) for n in sorted(KEY_LENGTHS[dkga]))
        raise VendingKeyError(f"a DKGA{dkga} vending key must be {allowed} bits, got {len(key) * 8}")
    cipher = AES.new(_kek(), AES.MODE_GCM)
    cipher.update(_associated_data(sgc, krn, base_date, dkga))
    ciphertext, tag = cipher.encrypt_and_digest(key)
    check_value = key_check_value(key)
    with transaction.atomic():
        vending_key, created = VendingKey.objects.update_or_create(
            sgc=sgc,
            krn=krn,
            defaults={
                "base_date": base_date,
                "dkga": dkga,
                "key_bits": len(key) * 8,
                "check_value": check_value,
                "nonce": cipher.nonce,
                "ciphertext": ciphertext,
                "tag": tag,
                "loaded_by": actor_label,
            },
        )
        audit_record(
            action="vending_key.loaded" if created else "vending_key.replaced",
            actor_label=actor_label,
            target=vending_key,
            sgc=sgc,
            krn=krn,
            check_value=check_value,
        )
    return vending_key


def vending_key_unwrap(vending_key: VendingKey) -> bytes:
    cipher = AES.new(_kek(), AES.MODE_GCM, nonce=bytes(vending_key.nonce))
    cipher.update(_associated_data(vending_key.sgc, vending_key.krn, vending_key.base_date, vending_key.dkga))
    try:
        return cipher.decrypt_and_verify(bytes(vending_key.ciphertext), bytes(vending_key.tag))
    except ValueError:
        # Wrong KEK or a tampered row; say which key without saying anything about its bytes.
        raise VendingKeyError(f"vending key SGC {vending_key.sgc} KRN {vending_key.krn} failed to unwrap") from None


def vending_key_get(*, sgc: str, krn: int) -> bytes:
    """The decrypted vending key for (SGC, KRN): the only function that hands out key bytes."""
    try:
        vending_key = VendingKey.objects.get(sgc=sgc, krn=krn)
    except VendingKey.DoesNotExist:
        raise VendingKeyNotFound(f"no vending key for SGC {sgc} KRN {krn}") from None
    return vending_key_unwrap(vending_key)
