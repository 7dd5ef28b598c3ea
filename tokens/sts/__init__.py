"""Pure-Python STS (IEC 62055-41) token engine: the public facade.

Nothing here imports Django; only the standard library and pycryptodome. See docs/sts.md.
Everything a caller needs is re-exported here; the ``_``-prefixed modules are private.
"""

from __future__ import annotations

from ._amount import decode_amount, encode_amount
from ._dkga import derive_decoder_key
from ._errors import (
    AmountOutOfRange,
    CrcMismatch,
    InvalidKey,
    InvalidMeterNumber,
    InvalidParameter,
    InvalidTokenFormat,
    KeyExpired,
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
    DecodedToken,
    credit_token,
    decode_token,
    format_token,
    key_change_tokens,
    management_token,
)
from .meter import EntryResult, RejectReason, VirtualMeter

__all__ = [
    "AmountOutOfRange",
    "BaseDate",
    "CrcMismatch",
    "DecodedToken",
    "EntryResult",
    "InvalidKey",
    "InvalidMeterNumber",
    "InvalidParameter",
    "InvalidTokenFormat",
    "KeyExpired",
    "RejectReason",
    "StsError",
    "TidOutOfRange",
    "UnknownAlgorithm",
    "VirtualMeter",
    "credit_token",
    "decode_amount",
    "decode_token",
    "derive_decoder_key",
    "encode_amount",
    "format_token",
    "is_valid_meter_number",
    "key_change_tokens",
    "luhn_check_digit",
    "management_token",
    "next_tid",
    "pan_from_meter_number",
    "tid_from_datetime",
    "tid_to_datetime",
    "validate_meter_number",
]
