"""Exception hierarchy of the STS engine.

Every error the engine raises on purpose is an :class:`StsError`, which is a
``ValueError`` so that callers that only know "bad input" still catch it. Each
subclass names one precise failure so that a back office can tell a typo
(:class:`CrcMismatch`) from a configuration mistake (:class:`UnknownAlgorithm`).
"""

from __future__ import annotations

__all__ = [
    "AmountOutOfRange",
    "CrcMismatch",
    "InvalidKey",
    "InvalidMeterNumber",
    "InvalidParameter",
    "InvalidTokenFormat",
    "KeyExpired",
    "SameKeyRollover",
    "StsError",
    "TidOutOfRange",
    "UnknownAlgorithm",
]


class StsError(ValueError):
    """Base class of every error raised by :mod:`tokens.sts`."""


class InvalidMeterNumber(StsError):
    """A meter number (DRN) or PAN is malformed or fails its Luhn check."""


class InvalidTokenFormat(StsError):
    """A token string is not 20 decimal digits, is >= 2**66, or has a reserved class/subclass."""


class CrcMismatch(StsError):
    """The CRC of a decoded token does not match: wrong decoder key, wrong EA, or a typo."""


class UnknownAlgorithm(StsError):
    """An EA (encryption algorithm) or DKGA code that the engine does not implement."""


class InvalidKey(StsError):
    """A vending or decoder key of the wrong length, or a key that is missing."""


class AmountOutOfRange(StsError):
    """An amount that is negative, too large for its field, or has too many decimals."""


class TidOutOfRange(StsError):
    """A TID outside 24 bits, before the base date, or on the reserved minute (TID % 1440 == 1)."""


class KeyExpired(StsError):
    """The TID is past the key expiry number: ``(TID >> 16) > KEN`` (docs/sts-protocol.md §5.4)."""


class InvalidParameter(StsError):
    """Any other token field out of range (RND, subclass, KRN, KT, TI, SGC, KEN, ...)."""


class SameKeyRollover(StsError):
    """A rollover (RO = 1) key change that would leave the meter on the key it already has.

    RO makes the meter forget every TID it has seen; only the change of key stops the tokens it
    already accepted from being accepted again. A rollover set whose new key is the old key (or
    whose key revision, vending key and base date are all unchanged) would reopen exactly that
    replay, so it is refused (docs/sts-protocol.md §5.6).
    """
