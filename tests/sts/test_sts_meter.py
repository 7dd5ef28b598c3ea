"""The virtual meter: TID memory, credit, management, display and key changes with rollover;
the same-key rollover refusal, the 3-token key change set and the replay property (issue 13)."""

from __future__ import annotations

import hashlib
import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tokens.sts import (
    KEY_REVISION_DISPLAY_CONTROL,
    BaseDate,
    KeyChangeRequest,
    RejectReason,
    SameKeyRollover,
    StsError,
    TokenKind,
    VirtualMeter,
    build_tokens,
    check_rollover_key_revision,
    credit_token,
    decode_token,
    derive_decoder_key,
    key_change_tokens,
    management_token,
    meter_test_token,
)
from tokens.sts._sta import StaCipher, tables_by_name

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


# --- issue 13: same-key rollover, the 3-token set, extended tokens ------------------------------


def test_same_key_rollover_is_refused_by_every_builder() -> None:
    same = {"ea": "07", "old_key": OLD, "new_key": OLD, "new_krn": 2, "new_kt": 2, "new_ti": 1, "rollover": True}
    with pytest.raises(SameKeyRollover, match="same decoder key"):
        key_change_tokens(**same)
    with pytest.raises(SameKeyRollover):
        key_change_tokens(**same, new_sgc="654321")  # the 3-token set as well
    with pytest.raises(SameKeyRollover):
        build_tokens([KeyChangeRequest("07", OLD, OLD, 2, 2, 1, True)])
    assert issubclass(SameKeyRollover, StsError) and issubclass(SameKeyRollover, ValueError)
    # without RO the meter keeps its TID memory, so re-sending the key is harmless and allowed
    assert len(key_change_tokens(**(same | {"rollover": False}))) == 2


def test_the_same_key_rollover_the_engine_refuses_would_replay_on_a_meter() -> None:
    """Why the refusal matters: a meter given such a set (built here by hand) accepts a used token."""
    from tokens.sts._tokens import CLASS_MANAGEMENT, SUB_KCT1, SUB_KCT2, _block, _transpose

    m = meter()
    used = credit(OLD, TID_1993)
    assert m.enter(used) and m.enter(used).reason is RejectReason.USED
    key = int.from_bytes(OLD, "big")
    cipher = StaCipher(key, tables_by_name("production"))
    kct1 = _block(CLASS_MANAGEMENT, SUB_KCT1, 0xF << 40 | 2 << 36 | 1 << 35 | 2 << 32 | key >> 32)  # RO = 1
    kct2 = _block(CLASS_MANAGEMENT, SUB_KCT2, 0xF << 40 | 1 << 32 | key & 0xFFFFFFFF)
    for block in (kct1, kct2):
        assert m.enter(_transpose(cipher.encrypt(block), CLASS_MANAGEMENT))
    assert m.decoder_key == OLD and m.tid_memory == ()
    assert m.enter(used).accepted  # the replay the engine's refusal prevents


@pytest.mark.parametrize(
    ("changed", "refused"),
    [({}, True), ({"new_krn": 2}, False), ({"new_vending_key": b"\x02" * 8}, False), ({"new_base_date": 2014}, False)],
)
def test_rollover_key_revision_must_move(changed: dict, refused: bool) -> None:
    revision = {
        "old_krn": 1, "new_krn": 1, "old_vending_key": b"\x01" * 8, "new_vending_key": b"\x01" * 8,
        "old_base_date": 1993, "new_base_date": 1993,
    }  # fmt: skip
    if refused:
        with pytest.raises(SameKeyRollover, match="key revision 1"):
            check_rollover_key_revision(**(revision | changed))
    else:
        assert check_rollover_key_revision(**(revision | changed)) is None


NEW_SGC = "654321"
NEW_SGC_KEY = derive_decoder_key(
    dkga="02", vending_key=bytes.fromhex("ABABABABABABABAB"), pan=PAN, sgc=NEW_SGC, ti=1, krn=2, kt=2
)


def three_token_set(*, rollover: bool = True) -> list[str]:
    return key_change_tokens(
        ea="07", old_key=OLD, new_key=NEW_SGC_KEY, new_krn=2, new_kt=2, new_ti=1, rollover=rollover, new_sgc=NEW_SGC
    )


def test_three_token_set_encode_decode_meter_round_trip() -> None:
    tokens = three_token_set()
    assert len(tokens) == 3
    kct1, kct2, kct3 = (decode_token(t, ea="07", decoder_key=OLD) for t in tokens)
    assert [d.kind for d in (kct1, kct2, kct3)] == [TokenKind.KCT1, TokenKind.KCT2, TokenKind.KCT3]
    assert (kct1.subclass, kct2.subclass, kct3.subclass) == (3, 4, 8)
    assert (kct1.res, kct1.ro, kct1.krn, kct2.ti) == (1, 1, 2, 1)  # RES/3KCT announces the third token
    assert (kct1.nkho << 32 | kct2.nklo).to_bytes(8, "big") == NEW_SGC_KEY
    assert kct3.new_sgc == int(NEW_SGC) and kct3.block >> 16 & 0xFFFFF == 0  # SGC, then 20 zero bits
    m = VirtualMeter(decoder_key=OLD, sgc="123456")
    results = [m.enter(t) for t in tokens]
    assert [(r.accepted, r.key_change_pending, r.key_changed) for r in results] == [
        (True, True, False),
        (True, True, False),
        (True, False, True),
    ]
    assert (m.decoder_key, m.sgc, m.krn, m.base_date) == (NEW_SGC_KEY, NEW_SGC, 2, BaseDate.BD_2014)
    assert m.enter(credit(NEW_SGC_KEY, TID_2014)).accepted


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_meter_keeps_the_old_key_until_all_three_tokens_are_in(order: tuple[int, ...]) -> None:
    tokens = three_token_set()
    m = VirtualMeter(decoder_key=OLD, sgc="123456")
    for step, index in enumerate(order[:2]):
        assert m.enter(tokens[index]).key_change_pending
        assert (m.decoder_key, m.sgc, m.krn) == (OLD, "123456", 1)
        # the meter still works on its old key, and a new-key token is still refused
        assert m.enter(credit(OLD, TID_1993 + step)).accepted
        assert m.enter(credit(NEW_SGC_KEY, TID_2014)).reason is RejectReason.CRC_MISMATCH
    assert m.enter(tokens[order[2]]).key_changed
    assert (m.decoder_key, m.sgc, m.krn) == (NEW_SGC_KEY, NEW_SGC, 2)


def test_a_held_third_token_does_not_hijack_a_two_token_set() -> None:
    m = VirtualMeter(decoder_key=OLD, sgc="123456")
    assert m.enter(three_token_set()[2]).key_change_pending  # a stray KCT3 is held...
    pair = key_change_tokens(ea="07", old_key=OLD, new_key=NEW, new_krn=2, new_kt=2, new_ti=1, rollover=True)
    assert [m.enter(t).key_changed for t in pair] == [False, True]  # ...but RES = 0 says it is no part
    assert (m.decoder_key, m.sgc, m.key_change_pending) == (NEW, "123456", False)


def test_extended_token_set_tokens_are_recognised_but_not_acted_on() -> None:
    from tokens.sts._tokens import _block, _transpose

    m = meter()
    cipher = StaCipher(int.from_bytes(OLD, "big"), tables_by_name("production"))
    class2 = _transpose(cipher.encrypt(_block(2, 10, 5 << 40 | TID_1993 << 16 | 0xFC00)), 2)
    class1 = _transpose(_block(1, 2, 0xFC0 << 32), 1)
    for token in (class2, class1):
        result = m.enter(token)
        assert (result.accepted, result.reason) == (False, RejectReason.UNSUPPORTED)
        assert result.token is not None and result.token.kind is TokenKind.EXTENDED
    assert m.tid_memory == ()  # not acted on: its TID is not spent
    assert m.enter(credit(OLD, TID_1993)).accepted


# --- the replay property ----------------------------------------------------------------------

#: decoder keys the vending side moves a meter through: distinct, and never one it held before
FRESH_KEYS = [hashlib.sha256(b"fresh key %d" % n).digest()[:8] for n in range(40)]

operations = st.one_of(
    st.tuples(st.just("credit"), st.integers(0, 40), st.integers(0, 0xFFFFFF).filter(lambda t: t % 1440 != 1)),
    st.tuples(st.just("rekey"), st.integers(0, 40), st.booleans(), st.booleans()),
    st.tuples(st.just("same_key_rollover"), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("enter_credit"), st.integers(0, 1000)),
    st.tuples(st.just("enter_set"), st.integers(0, 1000), st.booleans()),
    st.tuples(st.just("enter_code"), st.integers(0, 1000), st.integers(0, 3)),
)


@settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=30))
# the shortest replays a same-key rollover would open: use a token, rollover to the same key, replay
@example([("credit", 0, 5), ("enter_credit", 0), ("same_key_rollover", 0, False), ("enter_set", 0, False),
          ("enter_credit", 0)])  # fmt: skip
@example([("credit", 0, 5), ("enter_credit", 0), ("same_key_rollover", 0, True), ("enter_code", 0, 2),
          ("enter_code", 0, 0), ("enter_code", 0, 1), ("enter_credit", 0)])  # fmt: skip
def test_no_sequence_of_engine_tokens_makes_a_used_credit_token_acceptable_again(ops: list[tuple]) -> None:
    """Build tokens with the engine as a vending side would, type them in any order and any
    number of times, and a credit token the meter accepted is never accepted again.

    The vending side: credit tokens under any key it ever used for the meter (old unsold tokens
    included), any TID; key change sets (2- or 3-token, with or without RO) from any of those keys
    to a key never used before (key revisions move forward; returning a meter to a retired key is
    a key management error the engine cannot see, docs/sts-protocol.md §5.6); and rollover sets
    from any of those keys to itself, which the engine must refuse - if it ever built one, the
    replay would show here (the two explicit examples are the shortest such replays).
    derandomize: an old-key token passes a wrong key's 16-bit CRC once in 65 536 tries; fixed
    examples keep that chance out of the test.
    """
    keys = [OLD]
    credits: list[str] = []
    sets: list[list[str]] = []
    m = VirtualMeter(decoder_key=OLD, sgc="123456", tid_memory_size=4)
    used: set[str] = set()

    def key_change(old: bytes, new: bytes, *, rollover: bool, sgc: str | None) -> list[str]:
        return key_change_tokens(
            ea="07", old_key=old, new_key=new, new_krn=2, new_kt=2, new_ti=1, rollover=rollover, new_sgc=sgc
        )

    def enter(token: str) -> None:
        result = m.enter(token)
        if result.accepted and result.credit_added is not None:
            assert token not in used, f"used credit token accepted again: {result}"
            used.add(token)

    for op in ops:
        if op[0] == "credit":
            key = keys[op[1] % len(keys)]
            credits.append(credit_token(ea="07", decoder_key=key, tid=op[2], amount_field=5, rnd=op[2] % 16))
        elif op[0] == "rekey" and len(keys) < len(FRESH_KEYS):
            new = FRESH_KEYS[len(keys)]
            sets.append(
                key_change(keys[op[1] % len(keys)], new, rollover=op[2], sgc=f"{len(keys):06d}" if op[3] else None)
            )
            keys.append(new)
        elif op[0] == "same_key_rollover":
            key = keys[op[1] % len(keys)]
            try:
                sets.append(key_change(key, key, rollover=True, sgc="999999" if op[2] else None))
            except SameKeyRollover:
                pass
        elif op[0] == "enter_credit" and credits:
            enter(credits[op[1] % len(credits)])
        elif op[0] == "enter_set" and sets:
            chosen = sets[op[1] % len(sets)]
            for token in reversed(chosen) if op[2] else chosen:
                enter(token)
        elif op[0] == "enter_code" and sets:
            chosen = sets[op[1] % len(sets)]
            enter(chosen[op[2] % len(chosen)])
