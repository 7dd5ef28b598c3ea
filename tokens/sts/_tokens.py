"""Token building and decoding (reference.md sections 2 and 3). Work in progress."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class DecodedToken:
    """A decoded token (fields not used by the token kind are None)."""

    token_class: int
    subclass: int
    kind: str
    tid: int | None = None
    rnd: int | None = None
    amount_field: int | None = None
    units: Decimal | None = None
    value: int | None = None


def format_token(digits: str) -> str:
    raise NotImplementedError


def credit_token(*, ea, decoder_key, tid, units=None, amount_field=None, subclass=0, rnd=None) -> str:  # noqa: ANN001
    raise NotImplementedError


def management_token(*, ea, decoder_key, subclass, tid, value, rnd=None) -> str:  # noqa: ANN001
    raise NotImplementedError


def key_change_tokens(  # noqa: ANN201
    *, ea, old_key, new_key, new_krn, new_kt, new_ti, new_ken=255, rollover, new_sgc=None  # noqa: ANN001
):
    raise NotImplementedError


def decode_token(digits, *, ea=None, decoder_key=None):  # noqa: ANN001, ANN201
    raise NotImplementedError
