"""Every vector of every tests/sts/vectors*.json file, reproduced by building AND by decoding.

* vectors.json: the published vectors collected for issue 3 (STS 531-1 editions carried by
  NectarAPI, STSSimulator tokens, RFC 2994, the IEC worked example);
* vectors-nectar.json: 128 more from NectarAPI's test suite (issue 13);
* vectors-sts531-2025.json: STS 531-1-07 Ed. 2.2 (2025) steps for the 3-token key change set,
  negative currency amounts and the extended token set (issue 13).

Expected values are read from the JSON files only (never copied into this module). A file added
beside them is picked up, and must use only the kinds handled here.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tokens.sts import (
    TokenKind,
    VirtualMeter,
    credit_token,
    decode_token,
    derive_decoder_key,
    encode_currency_amount,
    key_change_tokens,
    management_token,
    meter_test_token,
)
from tokens.sts._crc import crc16_modbus, sts_crc_field
from tokens.sts._ident import tid_from_datetime
from tokens.sts._misty1 import Misty1Cipher
from tokens.sts._sta import StaCipher, reference_decrypt, reference_encrypt, tables_by_name
from tokens.sts._tokens import parse_token

FILES = {path.name: json.loads(path.read_text()) for path in sorted(Path(__file__).parent.glob("vectors*.json"))}
# how many vectors each file holds: a truncated or half-merged file fails here, not silently
EXPECTED_COUNTS = {"vectors.json": 126, "vectors-nectar.json": 128, "vectors-sts531-2025.json": 19}
HANDLED_KINDS = {
    "crc_raw", "crc_sts", "misty1", "sta_block", "dk", "credit", "currency", "mgmt", "class1", "kct", "extended",
}  # fmt: skip
VECTORS = [(name, v) for name, data in FILES.items() for v in data["vectors"]]


def of_kind(*kinds: str) -> list:
    return [pytest.param(v, id=f"{name.removesuffix('.json')}:{v['id']}") for name, v in VECTORS if v["kind"] in kinds]


def ea_of(vector: dict) -> str:
    return f"{vector['ea']:02d}"


def tables_of(vector: dict) -> str:
    return vector.get("tables") or "production"


def key_of(spec: dict) -> bytes:
    """The vector's decoder key: derived from its DKGA inputs when it has them, else the given dk."""
    if "dkga" in spec:
        derived = derive_decoder_key(
            dkga=f"{spec['dkga']:02d}",
            vending_key=bytes.fromhex(spec["vk"]),
            pan=spec["pan"],
            sgc=spec["sgc"],
            ti=int(spec["ti"]),
            krn=spec["krn"],
            kt=spec["kt"],
            base_date=spec.get("bd", 1993),
            ea=f"{spec.get('ea', 7):02d}",
        )
        if "dk" in spec:  # the source also printed the key
            assert derived.hex().upper() == spec["dk"]
        return derived
    return bytes.fromhex(spec["dk"])


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_shape_and_every_kind_is_covered(name: str) -> None:
    data = FILES[name]
    assert data["schema"] == "sts-vectors/1"
    vectors = data["vectors"]
    assert len(vectors) == EXPECTED_COUNTS[name]
    assert {v["kind"] for v in vectors} <= HANDLED_KINDS
    # the NectarAPI file names a KCT set and its credit token after the same test method
    assert len({(v["kind"], v["id"]) for v in vectors}) == len(vectors)


def test_every_vector_file_is_known() -> None:
    assert set(FILES) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("vector", of_kind("crc_raw"))
def test_crc_raw(vector: dict) -> None:
    assert crc16_modbus(vector["data_ascii"].encode()) == int(vector["expected_crc16_modbus"], 16)


@pytest.mark.parametrize("vector", of_kind("crc_sts"))
def test_crc_sts(vector: dict) -> None:
    assert sts_crc_field(int(vector["first50"], 16)) == int(vector["expected_block_crc"], 16)


@pytest.mark.parametrize("vector", of_kind("misty1"))
def test_misty1_rfc2994(vector: dict) -> None:
    cipher = Misty1Cipher(bytes.fromhex(vector["key"]))
    pt, ct = int(vector["pt"], 16), int(vector["ct"], 16)
    assert cipher.encrypt(pt) == ct
    assert cipher.decrypt(ct) == pt


@pytest.mark.parametrize("vector", of_kind("sta_block"))
def test_sta_block(vector: dict) -> None:
    tables = tables_by_name(vector["tables"])
    key, pt, ct = int(vector["dk"], 16), int(vector["pt"], 16), int(vector["ct"], 16)
    assert StaCipher(key, tables).encrypt(pt) == ct
    assert StaCipher(key, tables).decrypt(ct) == pt
    assert reference_encrypt(pt, key, tables) == ct
    assert reference_decrypt(ct, key, tables) == pt
    if "token" in vector:  # the IEC worked example: a full class 0 token
        assert int(vector["token"]) == int(vector["token66_hex"], 16)
        decoded = decode_token(
            vector["token"], ea="07", decoder_key=bytes.fromhex(vector["dk"]), tables=vector["tables"]
        )
        assert decoded.block == pt


@pytest.mark.parametrize("vector", of_kind("dk"))
def test_decoder_key(vector: dict) -> None:
    assert key_of(vector).hex().upper() == vector["dk"]


def check_block_and_ct(vector: dict, token: str, key: bytes) -> None:
    """Plaintext block and ciphertext, where the vector publishes them (not every source does)."""
    token_class, transmitted = parse_token(token)
    assert token_class == vector["cls"]
    if "block" in vector:
        decoded = decode_token(token, ea=ea_of(vector), decoder_key=key, tables=tables_of(vector))
        assert decoded.block == int(vector["block"], 16)
    if "ct" in vector:
        assert transmitted == int(vector["ct"], 16)


@pytest.mark.parametrize("vector", of_kind("credit"))
def test_credit(vector: dict) -> None:
    key = key_of(vector)
    token = credit_token(
        ea=ea_of(vector),
        decoder_key=key,
        tid=vector["tid"],
        amount_field=vector["amount_field"],
        subclass=vector["sub"],
        rnd=vector["rnd"],
        tables=tables_of(vector),
    )
    assert token == vector["token"]
    decoded = decode_token(vector["token"], ea=ea_of(vector), decoder_key=key, tables=tables_of(vector))
    assert (decoded.token_class, decoded.subclass, decoded.rnd, decoded.tid, decoded.amount_field) == (
        vector["cls"],
        vector["sub"],
        vector["rnd"],
        vector["tid"],
        vector["amount_field"],
    )
    check_block_and_ct(vector, token, key)


@pytest.mark.parametrize("vector", of_kind("currency"))
def test_currency_credit_with_crc_c(vector: dict) -> None:
    key = key_of(vector)
    amount = Decimal(str(vector["amount_currency"]))
    # encoding the currency amount itself gives the published token (docs/sts-protocol.md §6.2)
    by_units = credit_token(ea=ea_of(vector), decoder_key=key, tid=vector["tid"], units=amount, subclass=vector["sub"])
    assert by_units == vector["token"]
    decoded = decode_token(vector["token"], ea=ea_of(vector), decoder_key=key)
    assert (decoded.kind, decoded.subclass, decoded.tid) == (TokenKind.CURRENCY_CREDIT, vector["sub"], vector["tid"])
    # rounded toward +infinity, in the customer's favour: never less credit, never a bigger debit
    # than asked for; the sign bit says which it is; and the field is canonical
    assert decoded.units >= amount
    assert (decoded.units < 0) == (amount < 0) == bool(decoded.se & 0x8)
    field20 = decoded.amount_field
    assert encode_currency_amount(decoded.units) == field20
    if "se" in vector:  # the source published the raw fields too
        assert (decoded.se, field20 & 0xFFFF) == (vector["se"], vector["amount_field"])
    assert (
        credit_token(ea=ea_of(vector), decoder_key=key, tid=vector["tid"], amount_field=field20, subclass=vector["sub"])
        == vector["token"]
    )
    check_block_and_ct(vector, vector["token"], key)


@pytest.mark.parametrize("vector", of_kind("mgmt"))
def test_management(vector: dict) -> None:
    key = key_of(vector)
    token = management_token(
        ea=ea_of(vector),
        decoder_key=key,
        subclass=vector["sub"],
        tid=vector["tid"],
        value=vector["value"],
        rnd=vector["rnd"],
        tables=tables_of(vector),
    )
    assert token == vector["token"]
    decoded = decode_token(token, ea=ea_of(vector), decoder_key=key, tables=tables_of(vector))
    assert (decoded.token_class, decoded.subclass, decoded.tid, decoded.value, decoded.rnd) == (
        vector["cls"],
        vector["sub"],
        vector["tid"],
        vector["value"],
        vector["rnd"],
    )
    check_block_and_ct(vector, token, key)


@pytest.mark.parametrize("vector", of_kind("class1"))
def test_class1(vector: dict) -> None:
    control = int(vector["control"], 16)
    token = meter_test_token(control=control, mfr=vector["mfr"], subclass=vector["sub"])
    assert token == vector["token"]
    decoded = decode_token(vector["token"])  # class 1 needs no key
    assert (decoded.token_class, decoded.subclass, decoded.control, decoded.mfr) == (
        1,
        vector["sub"],
        control,
        vector["mfr"],
    )
    if "block" in vector:
        assert decoded.block == int(vector["block"], 16)


@pytest.mark.parametrize("vector", of_kind("kct"))
def test_key_change_set(vector: dict) -> None:
    old_key, new_key = key_of(vector["old"]), key_of(vector["new"])
    ea = ea_of(vector)
    tokens = key_change_tokens(
        ea=ea,
        old_key=old_key,
        new_key=new_key,
        new_krn=vector["krn"],
        new_kt=vector["kt"],
        new_ti=int(vector["ti"]),
        new_ken=vector["ken"],
        rollover=bool(vector["ro"]),
        new_sgc=vector.get("sgc"),  # EA11 sets always carry it; an EA07 set with it has 3 tokens
    )
    assert tokens == vector["tokens"]
    decoded = [decode_token(t, ea=ea, decoder_key=old_key) for t in tokens]
    if "blocks" in vector:
        assert [d.block for d in decoded] == [int(b, 16) for b in vector["blocks"]]
    kct1, kct2 = decoded[0], decoded[1]
    assert kct1.kenho << 4 | kct2.kenlo == vector["ken"]
    three_token_set = ea != "11" and len(tokens) == 3
    assert (kct1.krn, kct1.kt, kct1.ro, kct1.res, kct2.ti) == (
        vector["krn"],
        vector["kt"],
        vector["ro"],
        int(three_token_set),
        int(vector["ti"]),
    )
    if three_token_set:
        assert decoded[2].kind is TokenKind.KCT3 and decoded[2].new_sgc == int(vector["sgc"])
    # a meter on the old key installs the new key (and the SGC the set carries) once all are in
    meter = VirtualMeter(decoder_key=old_key, ea=ea, krn=vector["old"]["krn"], sgc=vector["old"]["sgc"])
    results = [meter.enter(token) for token in tokens]
    assert [r.key_changed for r in results] == [False] * (len(tokens) - 1) + [True]
    assert (meter.decoder_key, meter.krn, meter.sgc) == (
        new_key,
        vector["krn"],
        vector.get("sgc", vector["old"]["sgc"]),
    )
    after = vector.get("credit_after_under_new_key")
    if after:
        credit = credit_token(
            ea=ea,
            decoder_key=new_key,
            tid=after["tid"],
            amount_field=after["amount_field"],
            subclass=after["sub"],
            rnd=after["rnd"],
        )
        assert credit == after["token"]


@pytest.mark.parametrize("vector", of_kind("extended"))
def test_extended_token_set_tokens_are_recognised(vector: dict) -> None:
    if vector["cls"] == 1:  # not encrypted
        decoded = decode_token(vector["token"])
    else:
        decoded = decode_token(vector["token"], ea=ea_of(vector), decoder_key=key_of(vector))
    assert (decoded.kind, decoded.token_class, decoded.subclass) == (TokenKind.EXTENDED, vector["cls"], vector["sub"])
    assert decoded.data == decoded.block >> 16 & (1 << 44) - 1
    if "issued" in vector:  # class 2 subclass 10 carries the TID of its issue minute
        assert decoded.tid == vector["tid"]
        assert decoded.tid_datetime(vector["bd"]).strftime("%Y-%m-%d %H:%M") == vector["issued"]
    else:
        assert decoded.tid is None


@pytest.mark.parametrize("vector", [p for p in of_kind("currency", "extended") if "issued" in p.values[0]])
def test_stated_issue_minute_is_the_tid(vector: dict) -> None:
    from datetime import datetime

    issued = datetime.strptime(vector["issued"], "%Y-%m-%d %H:%M")
    assert tid_from_datetime(issued, vector["bd"]) == vector["tid"]
