"""Every published vector in tests/sts/vectors.json, reproduced by building AND by decoding.

Expected values are read from the JSON file only (never copied into this module).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tokens.sts import (
    credit_token,
    decode_token,
    derive_decoder_key,
    encode_currency_amount,
    key_change_tokens,
    management_token,
    meter_test_token,
)
from tokens.sts._crc import crc16_modbus, sts_crc_field
from tokens.sts._misty1 import Misty1Cipher
from tokens.sts._sta import StaCipher, reference_decrypt, reference_encrypt, tables_by_name
from tokens.sts._tokens import parse_token

DATA = json.loads((Path(__file__).with_name("vectors.json")).read_text())
VECTORS = DATA["vectors"]
HANDLED_KINDS = {"crc_raw", "crc_sts", "misty1", "sta_block", "dk", "credit", "currency", "mgmt", "class1", "kct"}


def of_kind(*kinds: str) -> list:
    return [pytest.param(v, id=v["id"]) for v in VECTORS if v["kind"] in kinds]


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
        assert derived.hex().upper() == spec["dk"]
        return derived
    return bytes.fromhex(spec["dk"])


def test_file_shape_and_every_kind_is_covered() -> None:
    assert DATA["schema"] == "sts-vectors/1"
    assert len(VECTORS) == 126
    assert {v["kind"] for v in VECTORS} <= HANDLED_KINDS
    assert len({v["id"] for v in VECTORS}) == len(VECTORS)


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
    decoded = decode_token(token, ea=ea_of(vector), decoder_key=key, tables=tables_of(vector))
    assert decoded.block == int(vector["block"], 16)
    token_class, transmitted = parse_token(token)
    assert token_class == vector["cls"]
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
    field20 = vector["se"] << 16 | vector["amount_field"]
    token = credit_token(
        ea=ea_of(vector), decoder_key=key, tid=vector["tid"], amount_field=field20, subclass=vector["sub"]
    )
    assert token == vector["token"]
    # encoding the currency amount itself gives the same field (rounded up, reference.md 5.2)
    by_units = credit_token(
        ea=ea_of(vector),
        decoder_key=key,
        tid=vector["tid"],
        units=Decimal(str(vector["amount_currency"])),
        subclass=vector["sub"],
    )
    assert by_units == vector["token"]
    decoded = decode_token(token, ea=ea_of(vector), decoder_key=key)
    # rounded up in the customer's favour: at least the amount asked for, and canonical
    assert decoded.units >= Decimal(str(vector["amount_currency"]))
    assert encode_currency_amount(decoded.units) == field20
    assert (decoded.tid, decoded.se, decoded.amount_field & 0xFFFF) == (
        vector["tid"],
        vector["se"],
        vector["amount_field"],
    )
    check_block_and_ct(vector, token, key)


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
        new_sgc=vector.get("sgc") if ea == "11" else None,
    )
    assert tokens == vector["tokens"]
    decoded = [decode_token(t, ea=ea, decoder_key=old_key) for t in tokens]
    assert [d.block for d in decoded] == [int(b, 16) for b in vector["blocks"]]
    kct1, kct2 = decoded[0], decoded[1]
    assert kct1.kenho << 4 | kct2.kenlo == vector["ken"]
    assert (kct1.krn, kct1.kt, kct1.ro, kct1.res, kct2.ti) == (
        vector["krn"],
        vector["kt"],
        vector["ro"],
        0,
        int(vector["ti"]),
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
