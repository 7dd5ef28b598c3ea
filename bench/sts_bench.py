"""Benchmark of the STS engine (issue 3). Run: .venv/bin/python bench/sts_bench.py [--meters N]

Measures on one core, pure Python:

* EA07/DKGA02 rollover set per meter: derive the old and the new decoder key, build the KCT pair
  (RO = 1) under the old key and one credit token under the new key (base date 2014 TID).
  Every meter has its own PAN, hence its own keys: no key schedule is reused between meters.
* The same set split into its stages (each over fresh meters): ``derive_decoder_key`` (one
  call), ``key_change_tokens``, ``credit_token``.
* EA07 credit tokens per second for one meter (one key; the key schedule is recomputed for every
  token, as ``credit_token`` does).
* The same two figures for EA11/DKGA04 (4-token KCT set).
* The batch path the campaign engine should use: ``derive_decoder_keys`` (one DES call per
  vending key) and ``build_tokens`` (bitsliced STA), for the same sets; the script first asserts
  that both paths give identical tokens.

Target (issue 3): at most 40 us per meter for the EA07/DKGA02 rollover set.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokens.sts import (
    CreditRequest,
    DecoderKeyRequest,
    KeyChangeRequest,
    build_tokens,
    credit_token,
    derive_decoder_key,
    derive_decoder_keys,
    key_change_tokens,
    pan_from_meter_number,
)
from tokens.sts._ident import luhn_check_digit
from tokens.sts._sta import reference_encrypt

TARGET_US = 40.0
# The issue sizes the target against "a straightforward bit-by-bit STA costs about 100 us per block"
# on this machine kind. The host's speed drifts (up to ~1.8x between runs minutes apart on an idle
# VM here), so the script times that same bit-by-bit STA in the same run and reports the set's cost
# scaled to a 100 us/block machine as well.
REFERENCE_STA_US = 100.0
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


def rollover_batch(pans: list[str], dkga: str, ea: str, first_tid: int) -> list[list[str]]:
    """The same sets for many meters at once: derive_decoder_keys + build_tokens."""
    if dkga == "02":
        old_req = [DecoderKeyRequest("02", VK_OLD, pan, "123456", 1, 1, 2) for pan in pans]
        new_req = [DecoderKeyRequest("02", VK_NEW, pan, "123456", 1, 2, 2) for pan in pans]
        sgc = None
    else:
        old_req = [DecoderKeyRequest("04", VK20, pan, "123457", 1, 1, 2, 1993, ea) for pan in pans]
        new_req = [DecoderKeyRequest("04", VK20, pan, "123457", 1, 2, 2, 2014, ea) for pan in pans]
        sgc = "123457"
    keys = derive_decoder_keys(old_req + new_req)
    count = len(pans)
    requests: list = [KeyChangeRequest(ea, keys[i], keys[count + i], 2, 2, 1, True, new_sgc=sgc) for i in range(count)]
    requests += [CreditRequest(ea, keys[count + i], first_tid + 2 * i, amount_field=255, rnd=5) for i in range(count)]
    built = build_tokens(requests)
    return [built[i] + built[count + i] for i in range(count)]


class Sample(NamedTuple):
    wall: float  # per item: microseconds, or items per second for throughput samples
    cpu: float


def timed(run: Callable[[], object], items: int, *, rate: bool = False) -> Sample:
    """Run once; per-item cost in us (or items/s with ``rate``) by wall clock and by CPU time.

    CPU time (``time.process_time``) is what one core spends on this process; on a shared
    machine the wall clock also counts time the scheduler gave to other processes.
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if rate:
        return Sample(items / wall, items / cpu)
    return Sample(wall / items * 1e6, cpu / items * 1e6)


def batch_per_meter_us(pans: list[str], dkga: str, ea: str, repeats: int) -> list[Sample]:
    rollover_batch(pans[:64], dkga, ea, 5_800_000)  # warm up (lazy tables, transpose masks)
    return [timed(lambda: rollover_batch(pans, dkga, ea, 5_800_000), len(pans)) for _ in range(repeats)]


def per_meter_us(fn: Callable[[str, int], list[str]], pans: list[str], repeats: int) -> list[Sample]:
    fn(pans[0], 5_800_000)  # warm up: builds the lazy STA tables

    def run() -> None:
        for index, pan in enumerate(pans):
            fn(pan, 5_800_000 + 2 * index)

    return [timed(run, len(pans)) for _ in range(repeats)]


def stage_us(pans: list[str], repeats: int) -> dict[str, float]:
    """Best CPU us per call of each stage of ``rollover_ea07``, every call on a fresh meter."""

    def derive(pan: str) -> bytes:
        return derive_decoder_key(dkga="02", vending_key=VK_NEW, pan=pan, sgc="123456", ti=1, krn=2, kt=2)

    old_keys = [derive_decoder_key(dkga="02", vending_key=VK_OLD, pan=p, sgc="123456", ti=1, krn=1, kt=2) for p in pans]
    keys = list(zip(old_keys, [derive(pan) for pan in pans], strict=True))
    stages: dict[str, Callable[[], object]] = {
        "derive_decoder_key (DKGA02, one key)": lambda: [derive(pan) for pan in pans],
        "key_change_tokens (EA07 pair)": lambda: [
            key_change_tokens(ea="07", old_key=old, new_key=new, new_krn=2, new_kt=2, new_ti=1, rollover=True)
            for old, new in keys
        ],
        "credit_token (EA07)": lambda: [
            credit_token(ea="07", decoder_key=new, tid=5_800_000 + 2 * i, amount_field=255, rnd=5)
            for i, (_, new) in enumerate(keys)
        ],
    }
    return {label: min(timed(run, len(pans)).cpu for _ in range(repeats)) for label, run in stages.items()}


def credit_per_second(ea: str, key: bytes, count: int, repeats: int) -> list[Sample]:
    credit_token(ea=ea, decoder_key=key, tid=5_800_000, units=Decimal("1"))

    def run() -> None:
        for index in range(count):
            credit_token(ea=ea, decoder_key=key, tid=5_800_000 + 2 * index, amount_field=index & 0xFFFF, rnd=5)

    return [timed(run, count, rate=True) for _ in range(repeats)]


def batch_credit_per_second(count: int, repeats: int) -> list[Sample]:
    key = bytes.fromhex("E653341F9D5BF36F")
    requests = [CreditRequest("07", key, 5_800_000 + 2 * i, amount_field=i & 0xFFFF, rnd=5) for i in range(count)]
    build_tokens(requests[:64])
    return [timed(lambda: build_tokens(requests), count, rate=True) for _ in range(repeats)]


def reference_sta_us(repeats: int) -> float:
    """Best CPU time of the literal bit-by-bit STA (tokens.sts._sta.reference_encrypt) per block."""
    key, blocks = 0xE653341F9D5BF36F, [(0x0123456789ABCDEF * n) & (1 << 64) - 1 for n in range(1, 201)]

    def run() -> None:
        for block in blocks:
            reference_encrypt(block, key)

    return min(timed(run, len(blocks)).cpu for _ in range(repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    pans = meter_pans(args.meters)
    # the batch path must give exactly the per-token path's tokens
    assert rollover_batch(pans[:100], "02", "07", 5_800_000) == [
        rollover_ea07(pan, 5_800_000 + 2 * i) for i, pan in enumerate(pans[:100])
    ]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.meters} meters x {args.repeats} runs")
    reference_before = reference_sta_us(args.repeats)
    single07 = per_meter_us(rollover_ea07, pans, args.repeats)
    reference_after = reference_sta_us(args.repeats)
    batch07 = batch_per_meter_us(pans, "02", "07", args.repeats)
    single11 = per_meter_us(rollover_ea11, pans, args.repeats)
    batch11 = batch_per_meter_us(pans, "04", "11", args.repeats)
    c07 = credit_per_second("07", bytes.fromhex("E653341F9D5BF36F"), args.meters, args.repeats)
    c11 = credit_per_second("11", bytes.fromhex("F94B6ED353C3BFDB113E2D3A7EA3C41D"), args.meters, args.repeats)
    batch_credit = batch_credit_per_second(args.meters, args.repeats)
    stages = stage_us(pans, args.repeats)

    def line(label: str, samples: list[Sample], target: bool = False) -> None:
        cpu = min(x.cpu for x in samples)
        wall = min(x.wall for x in samples)
        verdict = f"  [target <= {TARGET_US:.0f} us: {'MET' if cpu <= TARGET_US else 'MISSED'}]" if target else ""
        print(
            f"{label}: best {cpu:.1f} us/meter CPU, {wall:.1f} us/meter wall "
            f"(median {statistics.median(x.cpu for x in samples):.1f} CPU){verdict}"
        )

    def rate(label: str, samples: list[Sample]) -> None:
        print(f"{label}: best {max(x.cpu for x in samples):,.0f}/s CPU, {max(x.wall for x in samples):,.0f}/s wall")

    print(f"load average at start: {load:.2f} (this machine has {os.cpu_count()} cores)")
    line("EA07/DKGA02 rollover set, one meter at a time (2 DKs + KCT pair + credit)", single07, target=True)
    reference = (reference_before + reference_after) / 2
    scaled = min(x.cpu for x in single07) * REFERENCE_STA_US / reference
    print(
        f"  machine speed: bit-by-bit STA {reference_before:.0f} / {reference_after:.0f} us/block before/after "
        f"(the issue assumes ~{REFERENCE_STA_US:.0f}); the set scaled to that speed: {scaled:.1f} us/meter "
        f"[target <= {TARGET_US:.0f} us: {'MET' if scaled <= TARGET_US else 'MISSED'}]"
    )
    for label, cpu in stages.items():
        print(f"  stage {label}: best {cpu:.1f} us/call CPU")
    line(f"EA07/DKGA02 rollover set, batch of {args.meters} (derive_decoder_keys + build_tokens)", batch07, True)
    line("EA11/DKGA04 rollover set, one meter at a time (2 DKs + 4 KCTs + credit)", single11)
    line(f"EA11/DKGA04 rollover set, batch of {args.meters}", batch11)
    rate("EA07 credit_token()", c07)
    rate("EA07 credit tokens via build_tokens", batch_credit)
    rate("EA11 credit_token()", c11)
    return 0


if __name__ == "__main__":
    sys.exit(main())
