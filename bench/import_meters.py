"""Benchmark `manage.py import_meters` against PostgreSQL for several register sizes.

    .venv/bin/python bench/import_meters.py                 # 100k and 1M rows
    .venv/bin/python bench/import_meters.py --sizes 10000   # quick check while developing

For each N it writes bench/data/meters-N.csv (valid Luhn numbers, ~2 % bad rows: bad check
digits, unknown EAs, malformed phones, duplicates), creates a scratch database (default
kplc_bench_imp, dropped at the end), migrates it, and runs the command twice in a child process:
a first load (all inserts) and a re-run of the same file with 1 % of the phones changed (updates).
Reported: wall time, rows/s and the child's peak RSS (memory must stay flat as N grows).
Target: 1,000,000 rows in at most 60 s.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tokens.sts import luhn_check_digit  # noqa: E402 - pure engine, after the path tweak

DATA = ROOT / "bench" / "data"
PYTHON = ROOT / ".venv" / "bin" / "python"
HEADER = "meter_number,sgc,ti,krn,kt,ea,dkga,base_date,ken,account_number,customer_name,phone,region\n"
REGIONS = ["Nairobi", "Mombasa", "Kisumu", "Nakuru", "Eldoret", "Nyeri", "Machakos", "Kakamega"]
NAMES = ["Wanjiru Kamau", "Otieno Odhiambo", "Akinyi Achieng", "Kiprop Kibet", "Mutua Musyoka", "Njeri Wambui"]


def luhn_complete(partial: str) -> str:
    return partial + str(luhn_check_digit(partial))


def generate(n: int, path: Path, *, phone_variant: int = 0) -> None:
    """Write n data rows, ~2 % of them bad. phone_variant changes 1 % of the phones."""
    rng = random.Random(n)  # the same N always gives the same file
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        lines = []
        for i in range(n):
            number = luhn_complete(f"{14 + i // 100_000_000:02d}{i % 100_000_000:08d}")
            phone_tail = (i * 7919 + (phone_variant if i % 100 == 0 else 0)) % 100_000_000
            phone = f"07{phone_tail:08d}"
            phone = f"{phone[:4]} {phone[4:7]} {phone[7:]}" if i % 3 == 0 else phone
            ea = "07"
            kind = rng.random()
            if kind < 0.005:
                number = number[:-1] + str((int(number[-1]) + 1) % 10)  # bad Luhn digit
            elif kind < 0.010:
                ea = "08"  # unknown EA
            elif kind < 0.015:
                phone = "12345"  # malformed phone
            elif kind < 0.020 and i > 0:
                number = luhn_complete(f"{14 + (i - 1) // 100_000_000:02d}{(i - 1) % 100_000_000:08d}")  # duplicate
            lines.append(
                f"{number},600675,{1 + i % 3},1,2,{ea},02,1993,255,ACC{i:09d},{NAMES[i % len(NAMES)]},"
                f"{phone},{REGIONS[i % len(REGIONS)]}\n"
            )
            if len(lines) >= 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


def psql(sql: str, admin_url: str) -> None:
    subprocess.run(["psql", admin_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True)


def run_import(path: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, peak RSS in MiB, summary line) of one import_meters run."""
    output = path.with_suffix(".out")
    started = time.perf_counter()
    with open(output, "w") as out:
        child = subprocess.Popen(
            [str(PYTHON), "manage.py", "import_meters", str(path), "--rejects", str(path.with_suffix(".rej.csv"))],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in migrate and psql).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    text = output.read_text()
    if child.returncode != 0:
        sys.exit(f"import_meters failed:\n{text}")
    return seconds, usage.ru_maxrss // 1024, text.strip().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument("--database", default="kplc_bench_imp")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--keep", action="store_true", help="keep the database and CSV files")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    DATA.mkdir(parents=True, exist_ok=True)
    admin_url = f"{args.server}/postgres"
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.server}/{args.database}",
        "DJANGO_SETTINGS_MODULE": "kplc_sts.settings.local",
    }
    print(f"{'rows':>10} {'run':>8} {'seconds':>8} {'rows/s':>9} {'peak RSS':>9}  summary")
    for n in sizes:
        path = DATA / f"meters-{n}.csv"
        changed = DATA / f"meters-{n}-changed.csv"
        generate(n, path)
        generate(n, changed, phone_variant=1)
        psql(f'DROP DATABASE IF EXISTS "{args.database}"', admin_url)
        psql(f'CREATE DATABASE "{args.database}"', admin_url)
        try:
            subprocess.run([str(PYTHON), "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            for label, csv_path in (("load", path), ("re-run", changed)):
                seconds, rss, summary = run_import(csv_path, env)
                print(f"{n:>10} {label:>8} {seconds:>8.1f} {n / seconds:>9.0f} {rss:>7} MiB  {summary}", flush=True)
        finally:
            if not args.keep:
                psql(f'DROP DATABASE IF EXISTS "{args.database}"', admin_url)
                for leftover in DATA.glob(f"meters-{n}*"):
                    leftover.unlink()


if __name__ == "__main__":
    main()
