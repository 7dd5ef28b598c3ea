"""A virtual STS meter: what the rest of the product's end-to-end tests type tokens into.

It models the meter-side rules the back office depends on (docs/sts-protocol.md §4.4, §5, §9):

* decryption with the meter's decoder key and the CRC check (a token made under another key,
  for example the old key after a rollover, fails here: :attr:`RejectReason.CRC_MISMATCH`);
* the TID memory: a token whose TID is in memory is USED; once the memory is full, a token older
  than the oldest remembered TID is OLD; the memory keeps the ``tid_memory_size`` newest TIDs;
* the key expiry number: ``(TID >> 16) > KEN`` is KEY_EXPIRED;
* key change token sets: each token is held until the set is complete (any order), then the
  new key, KRN, KT, TI and KEN (and SGC, when the set carries one) are installed; RO = 1 also
  clears the TID memory and moves the base date on (1993 -> 2014 -> 2035). A 64-bit-key set is
  two tokens, or three when KCT1's RES/3KCT bit announces a KCT3 with the new SGC; an EA11 set
  is four tokens;
* credit register, tamper flag, power limit and phase unbalance limit, class 1 display of the KRN;
  extended token set tokens are recognised and not acted on (UNSUPPORTED).

Meter-specific behaviour that no public source pins down (TID memory size, KCT timeouts, the IEC
KT transition rules) is kept simple and documented in docs/sts.md. The meter does not second-guess
the vending side: a same-key rollover set, which the engine refuses to build, would clear its TID
memory here as on a real meter.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ._amount import decode_transfer_amount
from ._ciphers import EA11, check_key, make_cipher, normalise_ea
from ._dkga import check_kt, check_sgc, check_ti
from ._errors import CrcMismatch, InvalidParameter, InvalidTokenFormat, StsError
from ._ident import BaseDate, check_ken, normalise_base_date
from ._tokens import (
    KEY_REVISION_DISPLAY_CONTROL,
    SUB_CLEAR_CREDIT,
    SUB_CLEAR_TAMPER,
    SUB_SET_MAX_POWER,
    SUB_SET_PHASE_UNBALANCE,
    DecodedToken,
    TokenKind,
    decode_block,
    decode_token,
    parse_token,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["EntryResult", "RejectReason", "VirtualMeter"]

_KCT_PART = {TokenKind.KCT1: 1, TokenKind.KCT2: 2, TokenKind.KCT3: 3, TokenKind.KCT4: 4}


class RejectReason(enum.StrEnum):
    """Why a virtual meter rejected a token."""

    INVALID_FORMAT = "invalid_format"  # not 20 digits, >= 2**66, class 3, unknown layout
    CRC_MISMATCH = "crc_mismatch"  # wrong key (e.g. old key after a key change) or a typo
    USED = "used"  # TID already in the TID memory
    OLD = "old"  # TID older than the oldest TID of a full memory
    KEY_EXPIRED = "key_expired"  # (TID >> 16) > KEN
    UNSUPPORTED = "unsupported"  # a valid token this meter does not act on (e.g. water credit)
    WRONG_MANUFACTURER = "wrong_manufacturer"  # class 1 token for another manufacturer
    INVALID_KEY_CHANGE = "invalid_key_change"  # completed KCT set with impossible values


@dataclass(frozen=True)
class EntryResult:
    """Outcome of :meth:`VirtualMeter.enter`."""

    accepted: bool
    reason: RejectReason | None = None
    token: DecodedToken | None = None
    message: str = ""
    credit_added: Decimal | None = None
    key_change_pending: bool = False  # a KCT half was accepted and is held for the rest of the set
    key_changed: bool = False  # this token completed a KCT set and the new key is installed
    display: str | None = None  # what a class 1 display token shows (the KRN for control 0x8)

    def __bool__(self) -> bool:
        return self.accepted


class VirtualMeter:
    """A software STS meter holding one decoder key.

    ``credit_subclass`` is the class 0 subclass the meter accepts (0 electricity by default);
    credit of other subclasses is rejected as UNSUPPORTED. ``sgc`` is the meter's supply group
    code, changed by the key change sets that carry one (EA07/EA09 3-token set, EA11 4-token set).
    """

    def __init__(
        self,
        *,
        decoder_key: bytes,
        ea: str = "07",
        krn: int = 1,
        kt: int = 2,
        ti: int = 1,
        ken: int = 255,
        base_date: int = 1993,
        sgc: str | None = None,
        tables: str = "production",
        credit_subclass: int = 0,
        mfr_code: int = 0,
        tid_memory_size: int = 50,
    ) -> None:
        self.ea = normalise_ea(ea)
        self.decoder_key = check_key(self.ea, decoder_key)
        if not isinstance(krn, int) or not 0 <= krn <= 15:
            raise InvalidParameter(f"KRN must fit 4 bits, got {krn!r}")
        self.krn = krn
        self.kt = check_kt(kt)
        self.ti = check_ti(ti)
        self.ken = check_ken(ken)
        self.base_date: BaseDate = normalise_base_date(base_date)
        self.sgc = None if sgc is None else check_sgc(sgc)
        self.tables = tables
        if credit_subclass not in range(8):
            raise InvalidParameter(f"credit subclass must be 0..7, got {credit_subclass!r}")
        self.credit_subclass = credit_subclass
        self.mfr_code = mfr_code
        if tid_memory_size < 1:
            raise InvalidParameter("the TID memory must hold at least one TID")
        self.tid_memory_size = tid_memory_size
        self.credit = Decimal(0)
        self.tampered = False
        self.power_limit_watts: int | None = None
        self.phase_unbalance_limit_watts: int | None = None
        self.key_changes = 0
        self._tids: list[int] = []  # sorted ascending, at most tid_memory_size entries
        self._pending_kct: dict[int, DecodedToken] = {}
        self._cipher = make_cipher(self.ea, self.decoder_key, tables)

    # --- state inspection ---------------------------------------------------------------------

    @property
    def tid_memory(self) -> tuple[int, ...]:
        """Remembered TIDs, oldest first."""
        return tuple(self._tids)

    @property
    def key_change_pending(self) -> bool:
        return bool(self._pending_kct)

    def __repr__(self) -> str:
        return (
            f"VirtualMeter(ea={self.ea}, krn={self.krn}, kt={self.kt}, ti={self.ti:02d}, ken={self.ken}, "
            f"base_date={int(self.base_date)}, credit={self.credit}, tids={len(self._tids)})"
        )

    # --- token entry --------------------------------------------------------------------------

    def enter(self, token: str) -> EntryResult:
        """Type one 20-digit token (separators allowed) and return what the meter does."""
        try:
            token_class, block = parse_token(token)
            if token_class == 1:
                return self._test(decode_token(token))
            if token_class == 3:
                raise InvalidTokenFormat("token class 3 is reserved")
            decoded = decode_block(token_class, self._cipher.decrypt(block), ea=self.ea)
        except CrcMismatch as exc:
            return EntryResult(False, RejectReason.CRC_MISMATCH, message=str(exc))
        except StsError as exc:
            return EntryResult(False, RejectReason.INVALID_FORMAT, message=str(exc))
        if decoded.is_key_change:
            return self._key_change(decoded)
        if decoded.kind is TokenKind.CREDIT and decoded.subclass == self.credit_subclass:
            return self._with_tid(decoded, self._credit)
        if decoded.kind is TokenKind.MANAGEMENT and decoded.subclass in (
            SUB_SET_MAX_POWER,
            SUB_CLEAR_CREDIT,
            SUB_CLEAR_TAMPER,
            SUB_SET_PHASE_UNBALANCE,
        ):
            return self._with_tid(decoded, self._management)
        return EntryResult(
            False, RejectReason.UNSUPPORTED, decoded, f"{decoded.kind} subclass {decoded.subclass} not handled"
        )

    def _with_tid(self, decoded: DecodedToken, apply: Callable[[DecodedToken], EntryResult]) -> EntryResult:
        tid = decoded.tid
        assert tid is not None
        if tid >> 16 > self.ken:
            return EntryResult(False, RejectReason.KEY_EXPIRED, decoded, f"TID {tid} is past KEN {self.ken}")
        index = bisect.bisect_left(self._tids, tid)
        if index < len(self._tids) and self._tids[index] == tid:
            return EntryResult(False, RejectReason.USED, decoded, f"TID {tid} was already used")
        if len(self._tids) >= self.tid_memory_size and index == 0:
            return EntryResult(False, RejectReason.OLD, decoded, f"TID {tid} is older than the oldest remembered TID")
        self._tids.insert(index, tid)
        if len(self._tids) > self.tid_memory_size:
            del self._tids[0]
        return apply(decoded)

    def _credit(self, decoded: DecodedToken) -> EntryResult:
        assert decoded.units is not None
        self.credit += decoded.units
        return EntryResult(True, None, decoded, f"credit +{decoded.units}", credit_added=decoded.units)

    def _management(self, decoded: DecodedToken) -> EntryResult:
        value = decoded.value
        assert value is not None
        if decoded.subclass == SUB_SET_MAX_POWER:
            self.power_limit_watts = decode_transfer_amount(value)
            message = f"maximum power limit {self.power_limit_watts} W"
        elif decoded.subclass == SUB_SET_PHASE_UNBALANCE:
            self.phase_unbalance_limit_watts = decode_transfer_amount(value)
            message = f"phase power unbalance limit {self.phase_unbalance_limit_watts} W"
        elif decoded.subclass == SUB_CLEAR_TAMPER:
            self.tampered = False
            message = "tamper condition cleared"
        else:  # ClearCredit: 0xFFFF clears every register, otherwise the numbered register
            if value in (0xFFFF, self.credit_subclass):
                self.credit = Decimal(0)
            message = f"clear credit register {value:#06x}"
        return EntryResult(True, None, decoded, message)

    def _test(self, decoded: DecodedToken) -> EntryResult:
        if decoded.kind is TokenKind.EXTENDED:
            return EntryResult(False, RejectReason.UNSUPPORTED, decoded, "extended token set token not handled")
        if decoded.mfr not in (0, self.mfr_code):
            return EntryResult(False, RejectReason.WRONG_MANUFACTURER, decoded, f"manufacturer {decoded.mfr}")
        assert decoded.control is not None
        display = str(self.krn) if decoded.control & KEY_REVISION_DISPLAY_CONTROL else "test"
        return EntryResult(True, None, decoded, f"test/display control {decoded.control:#x}", display=display)

    def _needed_parts(self) -> set[int]:
        if self.ea == EA11:
            return {1, 2, 3, 4}
        kct1 = self._pending_kct.get(1)
        # Until KCT1 arrives the meter cannot know whether a KCT3 belongs to the set; a KCT3
        # held on its own therefore waits for a KCT1 with RES/3KCT = 1.
        return {1, 2, 3} if kct1 is not None and kct1.res else {1, 2}

    def _key_change(self, decoded: DecodedToken) -> EntryResult:
        self._pending_kct[_KCT_PART[decoded.kind]] = decoded
        if not self._needed_parts() <= self._pending_kct.keys():
            return EntryResult(
                True, None, decoded, "key change token held for the rest of the set", key_change_pending=True
            )
        parts, self._pending_kct = self._pending_kct, {}
        kct1, kct2 = parts[1], parts[2]
        assert kct1.kenho is not None and kct2.kenlo is not None and kct1.nkho is not None and kct2.nklo is not None
        key = kct1.nkho << 32 | kct2.nklo
        sgc_value: int | None = None
        if self.ea == EA11:
            kct3, kct4 = parts[3], parts[4]
            assert kct3.nkmo is not None and kct4.nkmo is not None
            assert kct3.sgc_part is not None and kct4.sgc_part is not None
            key = kct1.nkho << 96 | kct3.nkmo << 64 | kct4.nkmo << 32 | kct2.nklo
            sgc_value = kct4.sgc_part << 12 | kct3.sgc_part
        elif kct1.res:  # the 3-token set of a 64-bit key: KCT3 carries the whole new SGC
            sgc_value = parts[3].new_sgc
        if sgc_value is not None and sgc_value > 999_999:
            return EntryResult(False, RejectReason.INVALID_KEY_CHANGE, decoded, f"new SGC {sgc_value} is not 6 digits")
        new_sgc = self.sgc if sgc_value is None else f"{sgc_value:06d}"
        if not 1 <= (kct1.krn or 0) <= 9 or (kct2.ti or 0) > 99:
            return EntryResult(False, RejectReason.INVALID_KEY_CHANGE, decoded, "new KRN or TI out of range")
        new_key = key.to_bytes(16 if self.ea == EA11 else 8, "big")
        self.decoder_key = new_key
        self._cipher = make_cipher(self.ea, new_key, self.tables)
        # decode_block fills these on KCT halves; the check above already range-checked them.
        assert kct1.krn is not None and kct1.kt is not None and kct2.ti is not None
        self.krn = kct1.krn
        self.kt = kct1.kt
        self.ti = kct2.ti
        self.ken = kct1.kenho << 4 | kct2.kenlo
        self.sgc = new_sgc
        self.key_changes += 1
        message = f"new key installed: KRN {self.krn}, KT {self.kt}, TI {self.ti:02d}, KEN {self.ken}"
        if sgc_value is not None:
            message += f", SGC {new_sgc}"
        if kct1.ro:
            # RO: reset the TID memory (docs/sts-protocol.md §5.6) and continue on the next
            # base date; tokens under the old key now fail the CRC, so nothing can be replayed.
            self._tids.clear()
            self.base_date = self.base_date.next or self.base_date
            message += f", TID memory cleared (rollover, base date {int(self.base_date)})"
        return EntryResult(True, None, decoded, message, key_changed=True)
