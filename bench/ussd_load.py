"""Load test of the USSD callback POST /ussd/ against gunicorn on loopback (bounded time).

Seeds --meters meters (half enrolled in a due batch with codes issued, half not scheduled) in the
database named by DATABASE_URL (default: a scratch PostgreSQL database kplc_bench_ussd), starts
gunicorn on a free port, then --concurrency threads play whole sessions (dial, menu choices,
meter numbers, help, garbage) for --seconds. Each request is timed end to end; p50/p95/p99/max
are printed. Target: p99 <= 100 ms.

    .venv/bin/python bench/ussd_load.py --seconds 20 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/kplc_bench_ussd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(meters: int) -> list[str]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from meters.models import Meter
    from tests.factories import luhn_complete

    numbers = [luhn_complete(f"77{n:08d}") for n in range(meters)]
    existing = set(Meter.objects.filter(meter_number__in=numbers).values_list("meter_number", flat=True))
    Meter.objects.bulk_create(
        [
            Meter(
                meter_number=number,
                sgc="600675",
                ti=1,
                krn=1,
                kt=2,
                ea="07",
                dkga="02",
                phone=f"+2547{n:08d}",
                customer_name=f"Bench Customer {n}",
                key_state=Meter.KeyState.CONFIRMED if n % 3 == 0 else Meter.KeyState.OLD_KEY,
            )
            for n, number in enumerate(numbers)
            if number not in existing
        ],
        batch_size=2000,
    )
    return numbers


def session_texts(numbers: list[str]) -> list[str]:
    """The `text` of each request of one random session (dial first)."""
    meter = random.choice(numbers)
    path = random.choice(
        [
            ["1", meter],
            ["3", meter],
            ["4", meter],
            ["5", "1", "0"],
            ["2", "12345"],
            ["x", "1", meter[:-1] + "0"],
            ["6", "1"],
        ]
    )
    return ["*".join(path[:i]) for i in range(len(path) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--meters", type=int, default=5000)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kplc_sts.settings.local")
    if os.environ["DATABASE_URL"] == DEFAULT_DB:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE kplc_bench_ussd"],
                       capture_output=True, check=False)  # fmt: skip
    numbers = seed(args.meters)

    port = free_port()
    env = dict(os.environ, DJANGO_DEBUG="0", USSD_RATE_LIMIT_PER_MINUTE="100000")
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "kplc_sts.wsgi:application", "-b", f"127.0.0.1:{port}",
         "-w", str(args.workers), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/ussd/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def worker(index: int) -> None:
            local: list[float] = []
            session = 0
            while time.monotonic() < stop:
                session += 1
                sid = f"bench-{index}-{session}"
                phone = f"+25479{index:03d}{session % 10000:04d}"
                for text in session_texts(numbers):
                    data = urllib.parse.urlencode(
                        {"sessionId": sid, "serviceCode": "*977#", "phoneNumber": phone, "networkCode": "63902",
                         "text": text}
                    ).encode()  # fmt: skip
                    started = time.perf_counter()
                    try:
                        with urllib.request.urlopen(url, data=data, timeout=10) as response:
                            body = response.read().decode()
                        ok = body.startswith(("CON ", "END ")) and len(body) <= 182
                    except Exception:  # noqa: BLE001
                        ok = False
                    local.append(time.perf_counter() - started)
                    if not ok:
                        with lock:
                            errors[0] += 1
            with lock:
                latencies.extend(local)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=10)

    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] * 1000

    print(f"requests={n} errors={errors[0]} rate={n / args.seconds:.0f}/s concurrency={args.concurrency} "
          f"workers={args.workers} meters={len(numbers)}")  # fmt: skip
    print(f"p50={pct(0.50):.1f}ms p95={pct(0.95):.1f}ms p99={pct(0.99):.1f}ms max={latencies[-1] * 1000:.1f}ms "
          f"mean={statistics.mean(latencies) * 1000:.1f}ms")  # fmt: skip
    print("target p99 <= 100 ms:", "MET" if pct(0.99) <= 100 else "NOT MET")


if __name__ == "__main__":
    main()
