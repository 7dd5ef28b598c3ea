"""The virtual meter: TID memory, credit, management, display and key changes with rollover."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tokens.sts import (
    KEY_REVISION_DISPLAY_CONTROL,
    BaseDate,
    RejectReason,
    VirtualMeter,
    credit_token,
    derive_decoder_key,
    key_change_tokens,
    management_token,
    meter_test_token,
)

PAN = "600727000000000009"
OLD = derive_decoder_key(
    dkga="02", vending_key=bytes.fromhex("ABABABABABABABAB"), pan=PAN, sgc="123456", ti=1, krn=1, kt=2
)
NEW = derive_decoder_key(
    dkga="02", vending_key=bytes.fromhex("ABABABABABABABAB"), pan=PAN, sgc="123456", ti=1, krn=2, kt=2
)
TID_1993 = 16_000_000  # 2023, base 1993
TID_2014 = 5_750_000  # 2024-12, base 2014


def meter(**kwargs: object) -> VirtualMeter:
    return VirtualMeter(decoder_key=OLD, ea="07", krn=1, kt=2, ti=1, **kwargs)  # type: ignore[arg-type]


def credit(key: bytes, tid: int, kwh: str = "10", ea: str = "07") -> str:
    return credit_token(ea=ea, decoder_key=key, tid=tid, units=Decimal(kwh))


def test_credit_accepted_once_then_used() -> None:
    m = meter()
    token = credit(OLD, TID_1993, "12.5")
    first = m.enter(token)
    assert first.accepted and first.credit_added == Decimal("12.5")
    assert m.credit == Decimal("12.5")
    second = m.enter(token)
    assert not second.accepted and second.reason is RejectReason.USED
    assert m.credit == Decimal("12.5")


def test_old_tokens_once_the_memory_is_full() -> None:
    m = meter(tid_memory_size=3)
    for offset in (10, 20, 30):
        assert m.enter(credit(OLD, TID_1993 + offset))
    assert m.enter(credit(OLD, TID_1993 + 5)).reason is RejectReason.OLD
    assert m.enter(credit(OLD, TID_1993 + 15))  # newer than the oldest remembered: still fine
    assert m.tid_memory == (TID_1993 + 15, TID_1993 + 20, TID_1993 + 30)
    assert m.enter(credit(OLD, TID_1993 + 10)).reason is RejectReason.OLD  # evicted, now older


def test_out_of_order_tokens_are_fine_while_memory_has_room() -> None:
    m = meter()
    assert m.enter(credit(OLD, TID_1993 + 100))
    assert m.enter(credit(OLD, TID_1993 + 50))


def test_wrong_key_typo_and_format() -> None:
    m = meter()
    assert m.enter(credit(NEW, TID_1993)).reason is RejectReason.CRC_MISMATCH
    token = credit(OLD, TID_1993)
    typo = token[:5] + str((int(token[5]) + 1) % 10) + token[6:]
    assert m.enter(typo).reason in (RejectReason.CRC_MISMATCH, RejectReason.INVALID_FORMAT)
    assert m.enter(token[:-1]).reason is RejectReason.INVALID_FORMAT
    assert m.credit == 0 and m.tid_memory == ()


def test_ken_expiry() -> None:
    m = meter(ken=0x55)
    late = credit_token(ea="07", decoder_key=OLD, tid=0x560010, amount_field=1)  # vending side has no KEN here
    assert m.enter(late).reason is RejectReason.KEY_EXPIRED
    assert m.enter(credit(OLD, 0x55FF00))


def test_other_utility_credit_is_unsupported() -> None:
    water = credit_token(ea="07", decoder_key=OLD, tid=TID_1993, amount_field=5, subclass=1)
    assert meter().enter(water).reason is RejectReason.UNSUPPORTED
    assert meter(credit_subclass=1).enter(water)


def test_management_tokens() -> None:
    m = meter()
    m.enter(credit(OLD, TID_1993, "50"))
    m.tampered = True
    assert m.enter(management_token(ea="07", decoder_key=OLD, subclass=0, tid=TID_1993 + 1, value=1000))
    assert m.power_limit_watts == 1000
    assert m.enter(management_token(ea="07", decoder_key=OLD, subclass=6, tid=TID_1993 + 2, value=0x4000))
    assert m.phase_unbalance_limit_watts == 16384
    assert m.enter(management_token(ea="07", decoder_key=OLD, subclass=5, tid=TID_1993 + 3, value=0))
    assert not m.tampered
    assert m.enter(management_token(ea="07", decoder_key=OLD, subclass=1, tid=TID_1993 + 4, value=0xFFFF))
    assert m.credit == 0
    reused = management_token(ea="07", decoder_key=OLD, subclass=5, tid=TID_1993 + 3, value=0)
    assert m.enter(reused).reason is RejectReason.USED


def test_key_revision_display_token() -> None:
    m = meter()
    result = m.enter("1844 6744 0738 4377 2416")
    assert result.accepted and result.display == "1"
    other_mfr = meter_test_token(control=KEY_REVISION_DISPLAY_CONTROL, mfr=47)
    assert m.enter(other_mfr).reason is RejectReason.WRONG_MANUFACTURER
    assert meter(mfr_code=47).enter(other_mfr).display == "1"


def rollover_pair() -> list[str]:
    return key_change_tokens(ea="07", old_key=OLD, new_key=NEW, new_krn=2, new_kt=2, new_ti=1, rollover=True)


def test_rollover_scenario() -> None:
    m = meter()
    old_credit = credit(OLD, TID_1993 + 7)
    assert m.enter(credit(OLD, TID_1993))
    reset, update = rollover_pair()
    held = m.enter(reset)
    assert held.accepted and held.key_change_pending and not held.key_changed
    assert m.krn == 1 and m.decoder_key == OLD  # nothing changes until the second half
    done = m.enter(update)
    assert done.accepted and done.key_changed
    assert (m.decoder_key, m.krn, m.kt, m.ti, m.ken) == (NEW, 2, 2, 1, 255)
    assert m.tid_memory == () and m.base_date is BaseDate.BD_2014
    assert m.credit == Decimal(10)  # credit survives a key change
    # old-key tokens, even unused ones and the KCTs themselves, now fail; 2014 TIDs work
    assert m.enter(old_credit).reason is RejectReason.CRC_MISMATCH
    assert m.enter(reset).reason is RejectReason.CRC_MISMATCH
    assert m.enter(credit(NEW, TID_2014))
    assert m.enter("1844 6744 0738 4377 2416").display == "2"


def test_kct_halves_in_either_order() -> None:
    m = meter()
    reset, update = rollover_pair()
    assert m.enter(update).key_change_pending
    assert m.enter(reset).key_changed
    assert m.decoder_key == NEW


def test_key_change_without_rollover_keeps_the_tid_memory() -> None:
    m = meter(tid_memory_size=1)
    assert m.enter(credit(OLD, TID_1993))
    for token in key_change_tokens(ea="07", old_key=OLD, new_key=NEW, new_krn=2, new_kt=2, new_ti=1, rollover=False):
        assert m.enter(token)
    assert m.tid_memory == (TID_1993,)
    assert m.base_date is BaseDate.BD_1993
    # without RO a 2014-based TID looks OLD: exactly why the rollover KCT sets RO
    assert m.enter(credit(NEW, TID_2014)).reason is RejectReason.OLD
    assert m.enter(credit(NEW, TID_1993)).reason is RejectReason.USED  # replay protection kept
    assert m.enter(credit(NEW, TID_1993 + 1))


def test_ea11_four_token_key_change() -> None:
    vk = bytes.fromhex("ABABABABABABABAB949494949494949401234567")
    common = {"dkga": "04", "vending_key": vk, "pan": PAN, "ti": 1, "kt": 2, "ea": "11"}
    old = derive_decoder_key(sgc="123457", krn=1, base_date=1993, **common)
    new = derive_decoder_key(sgc="654321", krn=2, base_date=2014, **common)
    m = VirtualMeter(decoder_key=old, ea="11", krn=1, sgc="123457")
    tokens = key_change_tokens(
        ea="11", old_key=old, new_key=new, new_krn=2, new_kt=2, new_ti=1, rollover=True, new_sgc="654321"
    )
    results = [m.enter(t) for t in tokens]
    assert [r.key_changed for r in results] == [False, False, False, True]
    assert (m.decoder_key, m.sgc, m.krn) == (new, "654321", 2)
    assert m.enter(credit(new, TID_2014, ea="11"))


def test_tid_memory_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        meter(tid_memory_size=0)


keys = st.binary(min_size=8, max_size=8)


@settings(derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(keys, st.integers(min_value=0, max_value=0xFEFFFF).filter(lambda t: t % 1440 != 1), st.integers(0, 0xFFFF))
def test_fresh_credit_accepted_once_then_rejected(key: bytes, tid: int, field: int) -> None:
    m = VirtualMeter(decoder_key=key)
    token = credit_token(ea="07", decoder_key=key, tid=tid, amount_field=field)
    assert m.enter(token).accepted
    again = m.enter(token)
    assert not again.accepted and again.reason is RejectReason.USED


# derandomize: a token under the wrong key passes a 16-bit CRC with probability 2**-16; fixed
# examples keep the test deterministic instead of failing once in a few hundred runs.
@settings(derandomize=True, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys,
    keys,
    st.lists(st.integers(min_value=0x800000, max_value=0xFFFFFF), min_size=1, max_size=5, unique=True),
    st.lists(st.integers(min_value=0, max_value=0x7FFFFF), min_size=1, max_size=5, unique=True),
    st.booleans(),
)
def test_after_rollover_old_key_tokens_fail_and_2014_tokens_work(
    old: bytes, new: bytes, old_tids: list[int], new_tids: list[int], reset_first: bool
) -> None:
    assume(old != new)
    old_tids = [t for t in old_tids if t % 1440 != 1]
    new_tids = [t for t in new_tids if t % 1440 != 1]
    m = VirtualMeter(decoder_key=old, ea="07", krn=1)
    unused_old = [credit_token(ea="07", decoder_key=old, tid=t, amount_field=10) for t in old_tids]
    pair = key_change_tokens(ea="07", old_key=old, new_key=new, new_krn=2, new_kt=2, new_ti=1, rollover=True)
    if not reset_first:
        pair.reverse()
    assert [m.enter(t).accepted for t in pair] == [True, True]
    for token in unused_old:
        assert m.enter(token).reason is RejectReason.CRC_MISMATCH
    for tid in new_tids:  # 2014-based TIDs, far below every 1993-era TID
        assert m.enter(credit_token(ea="07", decoder_key=new, tid=tid, amount_field=10)).accepted
