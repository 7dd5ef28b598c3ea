"""The token digest index: find a token from the 20 digits a customer reads out.

The vend and key change services index what they issue (explicitly, in their transaction); care
searches it. Digits are never stored again or scanned: an HMAC of them is looked up instead.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from meters.models import Meter

from .models import IssuedToken, KeyChangeSet, TokenDigest


def _digest_key() -> bytes:
    # A dedicated key derived from SECRET_KEY: the digest is useless without it (20 digits are only
    # ~66 bits, a plain hash could be brute-forced per meter). Rotating SECRET_KEY invalidates the
    # index: re-index with `manage.py index_token_digests`.
    return hmac.new(settings.SECRET_KEY.encode(), b"care.token-digest.v1", hashlib.sha256).digest()


def token_digits_clean(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch not in "-.")


def token_digest(digits: str) -> str:
    return hmac.new(_digest_key(), token_digits_clean(digits).encode(), hashlib.sha256).hexdigest()


def token_digest_index_issued(*, token: IssuedToken) -> None:
    TokenDigest.objects.bulk_create(
        [
            TokenDigest(
                digest=token_digest(token.digits),
                meter_id=token.meter_id,
                issued_token_id=token.pk,
                created_at=token.issued_at,  # the token's partition month (docs/partitioning.md)
            )
        ],
        ignore_conflicts=True,
    )


def token_digest_index_key_change_set(*, key_change_set: KeyChangeSet) -> None:
    TokenDigest.objects.bulk_create(
        [
            TokenDigest(
                digest=token_digest(code),
                meter_id=key_change_set.meter_id,
                key_change_set_id=key_change_set.pk,
                position=position,
                created_at=key_change_set.created_at,
            )
            for position, code in enumerate(key_change_set.codes, start=1)
        ],
        ignore_conflicts=True,
    )


def token_digests_reindex(*, chunk: int = 5000) -> int:
    """Index every issued token and key change code (after a restore or a SECRET_KEY rotation):
    the old digests are dropped and rebuilt. Returns the digests written."""
    TokenDigest.objects.all().delete()
    done = 0
    tokens: Iterable[IssuedToken] = IssuedToken.objects.only("pk", "meter_id", "digits", "issued_at").iterator(chunk)
    for token in tokens:
        token_digest_index_issued(token=token)
        done += 1
    for key_change_set in KeyChangeSet.objects.iterator(chunk):
        token_digest_index_key_change_set(key_change_set=key_change_set)
        done += len(key_change_set.codes)
    return done


@dataclass(frozen=True)
class TokenMatch:
    meter: Meter
    issued_token: IssuedToken | None = None
    key_change_set: KeyChangeSet | None = None
    position: int | None = None


def token_find(*, digits: str) -> list[TokenMatch]:
    """Which meter (and vend, or key change set) these 20 digits were issued to."""
    digits = token_digits_clean(digits)
    if len(digits) != 20 or not digits.isdigit():
        return []
    matches = []
    for row in TokenDigest.objects.filter(digest=token_digest(digits)).select_related("meter"):
        if row.issued_token_id:
            token = IssuedToken.objects.filter(pk=row.issued_token_id).select_related("vend").first()
            if token is not None and hmac.compare_digest(token.digits, digits):
                matches.append(TokenMatch(meter=row.meter, issued_token=token))
        elif row.key_change_set_id:
            key_change_set = KeyChangeSet.objects.filter(pk=row.key_change_set_id).first()
            if key_change_set is not None:
                matches.append(TokenMatch(meter=row.meter, key_change_set=key_change_set, position=row.position))
    return matches
