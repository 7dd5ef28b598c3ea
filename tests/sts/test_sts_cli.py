"""``python -m tokens.sts`` (the command-line contract of issue 3), run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = {v["id"]: v for v in json.loads(Path(__file__).with_name("vectors.json").read_text())["vectors"]}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokens.sts", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def ok(*args: str) -> str:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_importing_the_engine_loads_no_django() -> None:
    code = (
        "import sys, tokens.sts, tokens.sts.meter, tokens.sts._cli; "
        "loaded = sorted(m for m in sys.modules if m.startswith('django')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "vector_id",
    ["DKGA02-CTSA01", "DKGA04-derived-2014-krn4-ea07-ti01", "DKGA04-derived-1993-krn1-ea11-ti01"],
)
def test_dk(vector_id: str) -> None:
    v = VECTORS[vector_id]
    args = ["dk", "--dkga", f"{v['dkga']:02d}", "--vk", v["vk"], "--pan", v["pan"], "--sgc", v["sgc"]]
    args += ["--ti", v["ti"], "--krn", str(v["krn"]), "--kt", str(v["kt"])]
    if "bd" in v:
        args += ["--bd", str(v["bd"]), "--ea", f"{v['ea']:02d}"]
    assert ok(*args).strip() == v["dk"]


@pytest.mark.parametrize("vector_id", ["CTSA01-s1", "04-CTSA01-sub1", "STA-prod-IEC-example"])
def test_credit(vector_id: str) -> None:
    v = VECTORS[vector_id]
    out = ok(
        "credit", "--ea", f"{v['ea']:02d}", "--dk", v["dk"], "--subclass", str(v["sub"]), "--tid", str(v["tid"]),
        "--rnd", str(v["rnd"]), "--amount-field", str(v["amount_field"]),
    )  # fmt: skip
    assert out == v["token"] + "\n"


def test_credit_with_sample_tables_and_units() -> None:
    v = VECTORS["STA-sample-IEC-example"]  # 25.6 kWh, RND 0xB, TID 0x19EB23
    out = ok(
        "credit", "--ea", "07", "--dk", v["dk"], "--subclass", "0", "--tid", str(0x19EB23), "--rnd", "11",
        "--units", "25.6", "--tables", "sample",
    )  # fmt: skip
    assert out.strip() == v["token"]


@pytest.mark.parametrize("vector_id", ["CTSA03-MPL1000", "04-MPL1000", "CTSA24-s1"])
def test_mgmt(vector_id: str) -> None:
    v = VECTORS[vector_id]
    out = ok(
        "mgmt", "--ea", f"{v['ea']:02d}", "--dk", v["dk"], "--subclass", str(v["sub"]), "--tid", str(v["tid"]),
        "--rnd", str(v["rnd"]), "--value", str(v["value"]),
    )  # fmt: skip
    assert out.strip() == v["token"]


@pytest.mark.parametrize("vector_id", ["CTSA26-s1", "CTSA05-s1", "04-CTSA05-s1"])
def test_kct(vector_id: str) -> None:
    v = VECTORS[vector_id]
    args = ["kct", "--ea", f"{v['ea']:02d}", "--old-dk", v["old"]["dk"], "--new-dk", v["new"]["dk"]]
    args += [
        "--ken",
        str(v["ken"]),
        "--krn",
        str(v["krn"]),
        "--kt",
        str(v["kt"]),
        "--ti",
        v["ti"],
        "--ro",
        str(v["ro"]),
    ]
    if v["ea"] == 11:
        args += ["--sgc", v["sgc"]]
    assert ok(*args).splitlines() == v["tokens"]


def test_decode_credit() -> None:
    v = VECTORS["CTSA01-s1"]
    text = ok("decode", v["token"], "--ea", "07", "--dk", v["dk"])
    out = json.loads(text, parse_float=Decimal)
    assert (out["class"], out["subclass"], out["rnd"], out["tid"], out["amount_field"]) == (0, 0, 5, 5871715, 1)
    assert out["units"] == Decimal("0.1")
    assert '"units": 0.1' in text  # an exact JSON number, not a string


def test_decode_management() -> None:
    v = VECTORS["CTSA03-MPL1000"]
    out = json.loads(ok("decode", v["token"], "--ea", "07", "--dk", v["dk"]))
    assert (out["class"], out["subclass"], out["tid"], out["value"], out["rnd"]) == (2, 0, v["tid"], 1000, 5)


def test_decode_kcts() -> None:
    v = VECTORS["CTSA26-s1"]
    kct1 = json.loads(ok("decode", v["tokens"][0], "--ea", "07", "--dk", v["old"]["dk"]))
    kct2 = json.loads(ok("decode", v["tokens"][1], "--ea", "07", "--dk", v["old"]["dk"]))
    assert (kct1["class"], kct1["subclass"], kct1["kenho"], kct1["krn"], kct1["ro"], kct1["kt"]) == (2, 3, 15, 5, 1, 2)
    assert (kct2["subclass"], kct2["kenlo"], kct2["ti"]) == (4, 15, 1)
    assert kct1["nkho"] + kct2["nklo"] == v["new"]["dk"]


def test_decode_class1_needs_no_key() -> None:
    out = json.loads(ok("decode", "1844 6744 0738 4377 2416"))
    assert (out["class"], out["subclass"], int(out["control"], 16), out["mfr"]) == (1, 0, 8, 0)


@pytest.mark.parametrize(
    "args",
    [
        ("decode", "2371610050118319419", "--ea", "07", "--dk", "E653341F9D5BF36F"),  # 19 digits
        ("decode", "23716100501183194197", "--ea", "07", "--dk", "E653341F9D5BF36E"),  # wrong key
        ("decode", "23716100501183194197"),  # class 0 without a key
        ("credit", "--ea", "07", "--dk", "E653341F9D5BF3", "--tid", "5", "--amount-field", "1"),  # 7-byte key
        ("credit", "--ea", "08", "--dk", "E653341F9D5BF36F", "--tid", "5", "--amount-field", "1"),  # unknown EA
        ("credit", "--ea", "07", "--dk", "E653341F9D5BF36F", "--tid", "5", "--amount-field", "65536"),
        ("credit", "--ea", "07", "--dk", "XYZ", "--tid", "5", "--amount-field", "1"),  # not hex
        ("dk", "--dkga", "02", "--vk", "ABABABABABABABAB", "--pan", "600727000000000008", "--sgc", "123456",
         "--ti", "01", "--krn", "1", "--kt", "2"),  # bad PAN Luhn
        ("kct", "--ea", "11", "--old-dk", "00" * 16, "--new-dk", "11" * 16, "--krn", "1", "--kt", "2", "--ti", "01",
         "--ro", "0"),  # EA11 without --sgc
        ("credit", "--ea", "07"),  # argparse usage error
    ],
)  # fmt: skip
def test_errors_go_to_stderr_with_status_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip()


# --- issue 13: the 3-token set, negative currency, extended tokens, same-key rollover -------------

VECTORS_2025 = {
    v["id"]: v for v in json.loads(Path(__file__).with_name("vectors-sts531-2025.json").read_text())["vectors"]
}


def dk_of(spec: dict) -> str:
    args = ["dk", "--dkga", f"{spec['dkga']:02d}", "--vk", spec["vk"], "--pan", spec["pan"], "--sgc", spec["sgc"]]
    args += ["--ti", spec["ti"], "--krn", str(spec["krn"]), "--kt", str(spec["kt"]), "--bd", str(spec["bd"])]
    return ok(*args, "--ea", f"{spec['ea']:02d}").strip()


def kct_args(v: dict) -> list[str]:
    return [
        "kct", "--ea", "07", "--old-dk", dk_of(v["old"]), "--new-dk", dk_of(v["new"]), "--ken", str(v["ken"]),
        "--krn", str(v["krn"]), "--kt", str(v["kt"]), "--ti", v["ti"], "--ro", str(v["ro"]),
    ]  # fmt: skip


def test_kct_ea07_with_sgc_prints_the_three_tokens_in_typing_order() -> None:
    v = VECTORS_2025["2025-CTSA05-s4"]
    assert ok(*kct_args(v), "--sgc", v["sgc"]).splitlines() == v["tokens"]


def test_kct_ea07_without_sgc_prints_the_pair() -> None:
    v = VECTORS_2025["2025-CTSA05-s1"]
    assert ok(*kct_args(v)).splitlines() == v["tokens"]


def test_decode_the_third_token_shows_the_new_sgc() -> None:
    v = VECTORS_2025["2025-CTSA05-s4"]
    out = json.loads(ok("decode", v["tokens"][2], "--ea", "07", "--dk", dk_of(v["old"])))
    assert (out["class"], out["subclass"], out["kind"], out["new_sgc"]) == (2, 8, "kct3", v["sgc"])
    kct1 = json.loads(ok("decode", v["tokens"][0], "--ea", "07", "--dk", dk_of(v["old"])))
    assert kct1["res"] == 1


def test_credit_subclass_4_with_negative_units_prints_a_token() -> None:
    v = VECTORS_2025["2025-CTSA20-s13"]  # "Amount = -1"
    key = dk_of(v)
    out = ok("credit", "--ea", "07", "--dk", key, "--subclass", "4", "--units", "-1", "--tid", str(v["tid"]))
    assert out == v["token"] + "\n"
    decoded = json.loads(ok("decode", v["token"], "--ea", "07", "--dk", key), parse_float=Decimal)
    assert decoded["units"] == Decimal("-0.99994")


@pytest.mark.parametrize("vector_id", ["2025-CTSA24-s4", "2025-CTSA24-s6"])
def test_decode_extended_token_set_tokens(vector_id: str) -> None:
    v = VECTORS_2025[vector_id]
    args = ["decode", v["token"]]
    if v["cls"] == 2:
        args += ["--ea", "07", "--dk", dk_of(v), "--bd", str(v["bd"])]
    out = json.loads(ok(*args))
    assert (out["class"], out["subclass"], out["kind"]) == (v["cls"], v["sub"], "extended")
    assert len(out["data"]) == 11 and int(out["data"], 16) == int(out["block"], 16) >> 16 & (1 << 44) - 1
    if v["cls"] == 2:
        assert (out["tid"], out["tid_datetime"]) == (v["tid"], v["issued"].replace(" ", "T"))
    else:
        assert "tid" not in out


def test_same_key_rollover_is_refused_on_the_command_line() -> None:
    key = "E653341F9D5BF36F"
    args = ["kct", "--ea", "07", "--old-dk", key, "--new-dk", key, "--krn", "2", "--kt", "2", "--ti", "01"]
    result = run(*args, "--ro", "1")
    assert (result.returncode, result.stdout) == (2, "")
    assert "SameKeyRollover" in result.stderr
    assert len(ok(*args, "--ro", "0").splitlines()) == 2  # no RO: nothing to replay, allowed
