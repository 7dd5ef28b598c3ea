"""Property tests: every token kind survives encode -> decode; fast paths equal the reference."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tokens.sts import (
    CreditRequest,
    DecoderKeyRequest,
    KeyChangeRequest,
    ManagementRequest,
    TokenKind,
    build_tokens,
    credit_token,
    decode_amount,
    decode_token,
    derive_decoder_key,
    derive_decoder_keys,
    key_change_tokens,
    management_token,
    meter_test_token,
)
from tokens.sts._ident import luhn_check_digit
from tokens.sts._sta import PRODUCTION, SAMPLE, StaCipher, reference_decrypt, reference_encrypt
from tokens.sts._sta_batch import _generic_sbox, _production_sbox, encrypt_many

EAS = {"07": 8, "09": 8, "11": 16}
ea_and_key = st.sampled_from(sorted(EAS)).flatmap(
    lambda ea: st.tuples(st.just(ea), st.binary(min_size=EAS[ea], max_size=EAS[ea]))
)
tids = st.integers(min_value=0, max_value=0xFFFFFF).filter(lambda t: t % 1440 != 1)
u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


@given(ea_and_key, tids, st.integers(0, 0xFFFF), st.integers(0, 3), st.integers(0, 15))
def test_credit_round_trip(ek: tuple[str, bytes], tid: int, field: int, subclass: int, rnd: int) -> None:
    ea, key = ek
    token = credit_token(ea=ea, decoder_key=key, tid=tid, amount_field=field, subclass=subclass, rnd=rnd)
    assert len(token) == 20 and token.isdigit()
    decoded = decode_token(token, ea=ea, decoder_key=key)
    assert decoded.kind is TokenKind.CREDIT
    assert (decoded.token_class, decoded.subclass, decoded.tid, decoded.amount_field, decoded.rnd) == (
        0,
        subclass,
        tid,
        field,
        rnd,
    )
    assert decoded.units == decode_amount(field)


@given(
    ea_and_key,
    tids,
    st.integers(4, 7),
    st.decimals(min_value=0, max_value=Decimal("1e9"), places=5, allow_nan=False, allow_infinity=False),
)
def test_currency_round_trip(ek: tuple[str, bytes], tid: int, subclass: int, amount: Decimal) -> None:
    ea, key = ek
    decoded = decode_token(
        credit_token(ea=ea, decoder_key=key, tid=tid, units=amount, subclass=subclass), ea=ea, decoder_key=key
    )
    assert decoded.kind is TokenKind.CURRENCY_CREDIT
    assert (decoded.subclass, decoded.tid) == (subclass, tid)
    assert decoded.units is not None and decoded.units >= amount


@given(ea_and_key, tids, st.sampled_from([0, 1, 2, 5, 6, 7]), st.integers(0, 0xFFFF), st.integers(0, 15))
def test_management_round_trip(ek: tuple[str, bytes], tid: int, subclass: int, value: int, rnd: int) -> None:
    ea, key = ek
    token = management_token(ea=ea, decoder_key=key, subclass=subclass, tid=tid, value=value, rnd=rnd)
    decoded = decode_token(token, ea=ea, decoder_key=key)
    assert (decoded.kind, decoded.token_class, decoded.subclass) == (TokenKind.MANAGEMENT, 2, subclass)
    assert (decoded.tid, decoded.value, decoded.rnd) == (tid, value, rnd)


@given(st.integers(0, 1), st.integers(0, (1 << 36) - 1), st.integers(0, 0xFFFF))
def test_class1_round_trip(subclass: int, control: int, mfr: int) -> None:
    control &= (1 << (36 if subclass == 0 else 28)) - 1
    mfr &= 0xFF if subclass == 0 else 0xFFFF
    decoded = decode_token(meter_test_token(control=control, mfr=mfr, subclass=subclass))
    assert (decoded.kind, decoded.subclass, decoded.control, decoded.mfr) == (TokenKind.TEST, subclass, control, mfr)


@given(
    ea_and_key,
    st.data(),
    st.integers(1, 9),
    st.integers(0, 3),
    st.integers(0, 99),
    st.integers(0, 255),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 999_999)),
)
def test_key_change_round_trip(
    ek: tuple[str, bytes], data: st.DataObject, krn: int, kt: int, ti: int, ken: int, ro: bool, sgc: int | None
) -> None:
    ea, old = ek
    new = data.draw(st.binary(min_size=len(old), max_size=len(old)).filter(lambda k: not (ro and k == old)))
    if ea == "11" and sgc is None:
        sgc = 123457  # EA11 sets always carry the SGC
    new_sgc = None if sgc is None else f"{sgc:06d}"
    tokens = key_change_tokens(
        ea=ea, old_key=old, new_key=new, new_krn=krn, new_kt=kt, new_ti=ti, new_ken=ken, rollover=ro, new_sgc=new_sgc
    )
    assert len(tokens) == (4 if ea == "11" else 2 if sgc is None else 3)
    decoded = [decode_token(t, ea=ea, decoder_key=old) for t in tokens]
    kinds = [d.kind for d in decoded]
    assert kinds == [TokenKind.KCT1, TokenKind.KCT2, TokenKind.KCT3, TokenKind.KCT4][: len(tokens)]
    kct1, kct2 = decoded[0], decoded[1]
    three_token_set = len(tokens) == 3
    assert (kct1.krn, kct1.kt, kct1.ro, kct1.res, kct2.ti) == (krn, kt, int(ro), int(three_token_set), ti)
    assert kct1.kenho << 4 | kct2.kenlo == ken
    key = int.from_bytes(new, "big")
    if ea == "11":
        kct3, kct4 = decoded[2], decoded[3]
        assert kct1.nkho << 96 | kct3.nkmo << 64 | kct4.nkmo << 32 | kct2.nklo == key
        assert kct4.sgc_part << 12 | kct3.sgc_part == sgc
    else:
        assert kct1.nkho << 32 | kct2.nklo == key
        if three_token_set:
            assert (decoded[2].new_sgc, decoded[2].sgc_part, decoded[2].nkmo) == (sgc, None, None)
    # deterministic: re-sending gives the same strings (docs/sts-protocol.md §4.4)
    assert tokens == key_change_tokens(
        ea=ea, old_key=old, new_key=new, new_krn=krn, new_kt=kt, new_ti=ti, new_ken=ken, rollover=ro, new_sgc=new_sgc
    )


@settings(max_examples=50)
@given(u64, u64, st.sampled_from([PRODUCTION, SAMPLE]))
def test_fast_sta_equals_reference(block: int, key: int, tables: object) -> None:
    cipher = StaCipher(key, tables)  # type: ignore[arg-type]
    encrypted = cipher.encrypt(block)
    assert encrypted == reference_encrypt(block, key, tables)  # type: ignore[arg-type]
    assert cipher.decrypt(encrypted) == block
    assert reference_decrypt(encrypted, key, tables) == block  # type: ignore[arg-type]


@settings(max_examples=25)
@given(st.lists(st.tuples(u64, u64), min_size=1, max_size=150), st.sampled_from([PRODUCTION, SAMPLE]))
def test_bitsliced_sta_equals_per_block(pairs: list[tuple[int, int]], tables: object) -> None:
    blocks = [b for b, _ in pairs]
    keys = [k for _, k in pairs]
    expected = [StaCipher(k, tables).encrypt(b) for b, k in pairs]  # type: ignore[arg-type]
    assert encrypt_many(blocks, keys, tables) == expected  # type: ignore[arg-type]


def test_production_sbox_formula_matches_the_tables() -> None:
    generic = _generic_sbox(PRODUCTION)
    for sel in (0, 1):
        for x in range(16):
            bits = [x >> b & 1 for b in range(4)]
            expected = (PRODUCTION.sub2 if sel else PRODUCTION.sub1)[x]
            got = _production_sbox(*bits, sel, 1)
            assert sum(bit << b for b, bit in enumerate(got)) == expected
            assert generic(*bits, sel, 1) == got


def test_build_tokens_equals_single_token_functions() -> None:
    pans = []
    for serial in range(80):
        body = f"47{20_000_000 + serial:08d}"
        drn = body + str(luhn_check_digit(body))
        pans.append("600727" + drn + str(luhn_check_digit("600727" + drn)))
    vk = bytes.fromhex("ABABABABABABABAB")
    requests = [DecoderKeyRequest("02", vk, pan, "123456", 1, krn, 2) for pan in pans for krn in (1, 2)]
    keys = derive_decoder_keys(requests)
    assert keys == [derive_decoder_key(**r._asdict()) for r in requests]
    token_requests: list = []
    for i in range(0, len(keys), 2):
        old, new = keys[i], keys[i + 1]
        token_requests.append(KeyChangeRequest("07", old, new, 2, 2, 1, True))
        token_requests.append(KeyChangeRequest("07", old, new, 2, 2, 1, True, new_sgc="654321"))  # 3 tokens
        token_requests.append(CreditRequest("07", new, 5_800_000 + i, units=Decimal("12.5"), rnd=i % 16))
        token_requests.append(ManagementRequest("07", new, 5, 5_800_001 + i, 0, rnd=3))
    token_requests.append(CreditRequest("11", bytes(range(16)), 5_800_000, amount_field=7, rnd=1))
    built = build_tokens(token_requests)
    for request, tokens in zip(token_requests, built, strict=True):
        if isinstance(request, KeyChangeRequest):
            assert tokens == key_change_tokens(**request._asdict())
        elif isinstance(request, CreditRequest):
            assert tokens == [credit_token(**request._asdict())]
        else:
            assert tokens == [management_token(**request._asdict())]
