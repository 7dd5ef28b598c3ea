"""CPU per vend in-process, through the full WSGI stack (Django test client), on bench data.

    .venv/bin/python bench/vend_profile.py --fresh -v      # create kplc_vperf_bench, list each statement
    N=600 .venv/bin/python bench/vend_profile.py           # CPU ms per vend, steady state
    .venv/bin/python bench/vend_profile.py --prof          # plus cProfile (cumulative and own time)

Uses production settings with Redis db 5 (cache and broker, no worker) like bench/vend_load.py.
"""

# ruff: noqa: E402 - the environment is set before Django is imported
from __future__ import annotations

import cProfile
import json
import os
import pstats
import secrets
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
DB = "kplc_vperf_bench"
os.environ.update(
    DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB}",
    DJANGO_SETTINGS_MODULE="kplc_sts.settings.production",
    DJANGO_SECRET_KEY="x" * 50,
    STS_KEK="11" * 32,
    CACHE_URL="redis://127.0.0.1:6379/5",
    CELERY_BROKER_URL="redis://127.0.0.1:6379/5",
    PYTHONPATH=ROOT,
    LOG_LEVEL="WARNING",
    DJANGO_ALLOWED_HOSTS="127.0.0.1,testserver",
    DJANGO_SECURE_SSL_REDIRECT="0",
    # Production refuses to start without these (issue 11); no worker runs, so nothing is sent.
    AT_API_URL="https://127.0.0.1:9/",
    AT_API_KEY="bench-at-key-" + "y" * 40,
    SMS_DELIVERY_REPORT_SECRET="bench-dlr-" + "z" * 40,
    USSD_CALLBACK_SECRET="bench-ussd-" + "w" * 40,
)
SEED = os.path.join(ROOT, "var", "vend_profile_seed.json")
os.makedirs(os.path.dirname(SEED), exist_ok=True)
import vend_load

fresh = "--fresh" in sys.argv
if fresh:
    vend_load.admin_sql(f'DROP DATABASE IF EXISTS "{DB}"')
    vend_load.admin_sql(f'CREATE DATABASE "{DB}"')
    subprocess.run([sys.executable, os.path.join(ROOT, "manage.py"), "migrate", "-v", "0"], check=True, cwd=ROOT)
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "vend_load.py"), "--meters", "1000", "_seed"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    open(SEED, "w").write(out.stdout.strip().splitlines()[-1])
data = json.load(open(SEED))
import django

django.setup()
import random

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

c = Client(HTTP_AUTHORIZATION=f"Api-Key {data['key']}")
rng = random.Random(1)
n = [0]


def one(kind):
    n[0] += 1
    body = {
        "meter_number": rng.choice(data[kind]),
        "amount": f"{rng.randint(50, 3000)}.00",
        "reference": f"P{n[0]}-{secrets.token_hex(4)}",
    }
    r = c.post("/api/v1/vends/", json.dumps(body), content_type="application/json")
    assert r.status_code == 201, r.content
    return r


for i in range(200):
    one("codes" if i % 2 else "plain")  # warm: first vend per meter makes the codes
N = int(os.environ.get("N", "400"))
for kind in ("plain", "codes"):
    with CaptureQueriesContext(connection) as q:
        one(kind)
    print(kind, len(q.captured_queries), "queries")
    if "-v" in sys.argv:
        for x in q.captured_queries:
            print("  ", x["time"], x["sql"][:230])
t0, c0 = time.perf_counter(), time.process_time()
for i in range(N):
    one("codes" if i % 2 else "plain")
t1, c1 = time.perf_counter(), time.process_time()
print(f"{N} vends: wall {1000 * (t1 - t0) / N:.2f} ms/vend, cpu {1000 * (c1 - c0) / N:.2f} ms/vend")
if "--prof" in sys.argv:
    pr = cProfile.Profile()
    pr.enable()
    for i in range(N):
        one("codes" if i % 2 else "plain")
    pr.disable()
    st = pstats.Stats(pr)
    st.sort_stats("cumulative").print_stats(60)
    st.sort_stats("tottime").print_stats(30)
