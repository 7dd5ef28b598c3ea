"""Benchmark of the STS engine (issue 3). Run: .venv/bin/python bench/sts_bench.py [--meters N]

Measures on one core, pure Python:

* EA07/DKGA02 rollover set per meter: derive the old and the new decoder key, build the KCT pair
  (RO = 1) under the old key and one credit token under the new key (base date 2014 TID).
  Every meter has its own PAN, hence its own keys: no key schedule is reused between meters.
* EA07 credit tokens per second for one meter (one key; a new cipher object per token, as
  ``credit_token`` does).
* The same two figures for EA11/DKGA04 (4-token KCT set).

Target (issue 3): at most 40 us per meter for the EA07/DKGA02 rollover set.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokens.sts import (  # noqa: E402 - after the sys.path tweak so the script runs from anywhere
    credit_token,
    derive_decoder_key,
    key_change_tokens,
    pan_from_meter_number,
)
from tokens.sts._ident import luhn_check_digit  # noqa: E402

TARGET_US = 40.0
VK_OLD = bytes.fromhex("ABABABABABABABAB")
VK_NEW = bytes.fromhex("9494949494949494")
VK20 = bytes.fromhex("ABABABABABABABAB949494949494949401234567")


def meter_pans(count: int) -> list[str]:
    pans = []
    for serial in range(count):
        body = f"47{10_000_000 + serial:08d}"
        pans.append(pan_from_meter_number(body + str(luhn_check_digit(body))))
    return pans


def rollover_ea07(pan: str, tid: int) -> list[str]:
    old = derive_decoder_key(dkga="02", vending_key=VK_OLD, pan=pan, sgc="123456", ti=1, krn=1, kt=2)
    new = derive_decoder_key(dkga="02", vending_key=VK_NEW, pan=pan, sgc="123456", ti=1, krn=2, kt=2)
    tokens = key_change_tokens(ea="07", old_key=old, new_key=new, new_krn=2, new_kt=2, new_ti=1, rollover=True)
    tokens.append(credit_token(ea="07", decoder_key=new, tid=tid, amount_field=255, rnd=5))
    return tokens


def rollover_ea11(pan: str, tid: int) -> list[str]:
    common = {"dkga": "04", "vending_key": VK20, "pan": pan, "sgc": "123457", "ti": 1, "kt": 2, "ea": "11"}
    old = derive_decoder_key(krn=1, base_date=1993, **common)
    new = derive_decoder_key(krn=2, base_date=2014, **common)
    tokens = key_change_tokens(
        ea="11", old_key=old, new_key=new, new_krn=2, new_kt=2, new_ti=1, rollover=True, new_sgc="123457"
    )
    tokens.append(credit_token(ea="11", decoder_key=new, tid=tid, amount_field=255, rnd=5))
    return tokens


def per_meter_us(fn: object, pans: list[str], repeats: int) -> list[float]:
    results = []
    fn(pans[0], 5_800_000)  # type: ignore[operator]  # warm up: builds the lazy STA tables
    for _ in range(repeats):
        start = time.perf_counter()
        for index, pan in enumerate(pans):
            fn(pan, 5_800_000 + 2 * index)  # type: ignore[operator]
        results.append((time.perf_counter() - start) / len(pans) * 1e6)
    return results


def credit_per_second(ea: str, key: bytes, count: int, repeats: int) -> list[float]:
    results = []
    credit_token(ea=ea, decoder_key=key, tid=5_800_000, units=Decimal("1"))
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(count):
            credit_token(ea=ea, decoder_key=key, tid=5_800_000 + 2 * index, amount_field=index & 0xFFFF, rnd=5)
        results.append(count / (time.perf_counter() - start))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pans = meter_pans(args.meters)
    print(f"python {platform.python_version()} on {platform.machine()}, {args.meters} meters x {args.repeats} runs")
    ea07 = per_meter_us(rollover_ea07, pans, args.repeats)
    ea11 = per_meter_us(rollover_ea11, pans, args.repeats)
    key07 = bytes.fromhex("E653341F9D5BF36F")
    key11 = bytes.fromhex("F94B6ED353C3BFDB113E2D3A7EA3C41D")
    c07 = credit_per_second("07", key07, args.meters, args.repeats)
    c11 = credit_per_second("11", key11, args.meters, args.repeats)
    best07 = min(ea07)
    print(f"EA07/DKGA02 rollover set (2 DKs + KCT pair + credit): best {best07:.1f} us/meter, "
          f"median {statistics.median(ea07):.1f} us/meter  [target <= {TARGET_US:.0f} us: "
          f"{'MET' if best07 <= TARGET_US else 'MISSED'}]")  # fmt: skip
    print(f"EA11/DKGA04 rollover set (2 DKs + 4 KCTs + credit): best {min(ea11):.1f} us/meter, "
          f"median {statistics.median(ea11):.1f} us/meter")  # fmt: skip
    print(f"EA07 credit tokens: best {max(c07):,.0f}/s, median {statistics.median(c07):,.0f}/s")
    print(f"EA11 credit tokens: best {max(c11):,.0f}/s, median {statistics.median(c11):,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
