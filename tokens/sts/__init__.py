"""Pure-Python STS (IEC 62055-41) token engine: the public facade.

Nothing here imports Django; only the standard library and pycryptodome. The protocol facts the
engine implements, with their sources, are in docs/sts-protocol.md (cited as "§n" throughout the
package); docs/sts.md describes the API, which vectors verify what, and the open questions.
Everything a caller needs is re-exported here; the ``_``-prefixed modules are private.

Typical rollover for one meter (EA07, DKGA02)::

    old_dk = derive_decoder_key(dkga="02", vending_key=vk1, pan=pan, sgc=sgc, ti=1, krn=1, kt=2)
    new_dk = derive_decoder_key(dkga="02", vending_key=vk2, pan=pan, sgc=sgc, ti=1, krn=2, kt=2)
    reset, update = key_change_tokens(ea="07", old_key=old_dk, new_key=new_dk, new_krn=2,
                                      new_kt=2, new_ti=1, rollover=True)
    tid = next_tid(last_tid_under_2014, now, BaseDate.BD_2014)
    credit = credit_token(ea="07", decoder_key=new_dk, tid=tid, units=Decimal("25.5"))

A rollover to the same key is refused (:class:`SameKeyRollover`): RO clears the meter's TID
memory, so only a new key keeps its used tokens from being accepted again.

For campaigns, :func:`derive_decoder_keys` and :func:`build_tokens` do the same for thousands
of meters at once (vectorised DES, bitsliced STA), several times faster per meter.

Keys are big-endian ``bytes``; amounts are ``Decimal`` (never float); all errors are
:class:`StsError` subclasses (which are ``ValueError``).
"""

from __future__ import annotations

from ._amount import (
    decode_amount,
    decode_currency_amount,
    decode_transfer_amount,
    encode_amount,
    encode_currency_amount,
    encode_transfer_amount,
)
from ._dkga import DecoderKeyRequest, clear_key_caches, derive_decoder_key, derive_decoder_keys
from ._errors import (
    AmountOutOfRange,
    CrcMismatch,
    InvalidKey,
    InvalidMeterNumber,
    InvalidParameter,
    InvalidTokenFormat,
    KeyExpired,
    SameKeyRollover,
    StsError,
    TidOutOfRange,
    UnknownAlgorithm,
)
from ._ident import (
    BaseDate,
    is_valid_meter_number,
    luhn_check_digit,
    next_tid,
    pan_from_meter_number,
    tid_from_datetime,
    tid_to_datetime,
    validate_meter_number,
)
from ._tokens import (
    KEY_REVISION_DISPLAY_CONTROL,
    CreditRequest,
    DecodedToken,
    KeyChangeRequest,
    ManagementRequest,
    TokenKind,
    TokenRequest,
    build_tokens,
    check_rollover_key_revision,
    credit_token,
    decode_token,
    format_token,
    key_change_tokens,
    management_token,
    meter_test_token,
)
from .meter import EntryResult, RejectReason, VirtualMeter

__all__ = [
    "KEY_REVISION_DISPLAY_CONTROL",
    "AmountOutOfRange",
    "BaseDate",
    "CrcMismatch",
    "CreditRequest",
    "DecodedToken",
    "DecoderKeyRequest",
    "EntryResult",
    "InvalidKey",
    "InvalidMeterNumber",
    "InvalidParameter",
    "InvalidTokenFormat",
    "KeyChangeRequest",
    "KeyExpired",
    "ManagementRequest",
    "RejectReason",
    "SameKeyRollover",
    "StsError",
    "TokenKind",
    "TokenRequest",
    "TidOutOfRange",
    "UnknownAlgorithm",
    "VirtualMeter",
    "build_tokens",
    "check_rollover_key_revision",
    "clear_key_caches",
    "credit_token",
    "decode_amount",
    "decode_currency_amount",
    "decode_token",
    "decode_transfer_amount",
    "derive_decoder_key",
    "derive_decoder_keys",
    "encode_amount",
    "encode_currency_amount",
    "encode_transfer_amount",
    "format_token",
    "is_valid_meter_number",
    "key_change_tokens",
    "luhn_check_digit",
    "management_token",
    "next_tid",
    "pan_from_meter_number",
    "meter_test_token",
    "tid_from_datetime",
    "tid_to_datetime",
    "validate_meter_number",
]
