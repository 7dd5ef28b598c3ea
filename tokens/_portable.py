"""The vend's statements for any database (SQLite: the demo and `make test`).

Same functions, same signatures and the same effects as `tokens._pg`, through the services and
selectors the PostgreSQL statements stand in for: a few statements where PostgreSQL runs one.
tests/vending/test_portable.py runs both on PostgreSQL and compares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.db import connection

from campaigns.selectors import campaign_covering, enrollment_for_meter
from kplc_sts.db import db_values
from meters.models import Meter

from .keys import MeterKey
from .models import IssuedToken, KeyChangeSet, TidCounter, Vend, VendReference
from .plan import VendFacts


def vend_facts_load(*, meter_number: str, now: dt.datetime) -> VendFacts | None:
    meter = Meter.objects.filter(meter_number=meter_number).first()
    if meter is None:
        return None
    enrollment = enrollment_for_meter(meter, now=now)
    if enrollment is not None:
        enrollment.meter = meter
    latest_set = (
        KeyChangeSet.objects.filter(meter=meter, from_sgc=meter.sgc, from_krn=meter.krn)
        .order_by("-created_at", "-id")
        .first()
    )
    return VendFacts(meter=meter, enrollment=enrollment, latest_set=latest_set, covering=campaign_covering(meter))


def vend_rows_insert(
    *, vend: Mapping[str, Any], counter: TidCounter, token: Mapping[str, Any]
) -> tuple[int, int] | None:
    # SQLite has INSERT ... ON CONFLICT DO NOTHING RETURNING (3.35+), not data-modifying CTEs. The
    # vend goes in first (for its id); a reference already taken returns None and the caller's
    # transaction rolls the vend back.
    columns = ", ".join(vend)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Vend._meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(vend))}) RETURNING id",  # noqa: S608
            db_values(Vend, vend),
        )
        (vend_id,) = cursor.fetchone()
        reference = {"partner_id": vend["partner_id"], "reference": vend["reference"], "vend_id": vend_id}
        reference["created_at"] = vend["created_at"]
        cursor.execute(
            f"INSERT INTO {VendReference._meta.db_table} ({', '.join(reference)}) VALUES (%s, %s, %s, %s) "  # noqa: S608
            "ON CONFLICT (partner_id, reference) DO NOTHING RETURNING vend_id",
            db_values(VendReference, reference),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    TidCounter.objects.filter(pk=counter.pk).update(last_tid=counter.last_tid, updated_at=counter.updated_at)
    issued = IssuedToken(vend_id=row[0], **token)
    issued.save(force_insert=True)
    return row[0], issued.pk


def tid_counter_lock(*, meter_id: int, key: MeterKey, now: dt.datetime) -> TidCounter:
    # SQLite has no row locks: its transactions begin IMMEDIATE (settings), so the writer lock taken
    # at BEGIN already serialises every vend; select_for_update is the row lock elsewhere.
    lookup = {"meter_id": meter_id, "sgc": key.sgc, "krn": key.krn}
    counter = TidCounter.objects.select_for_update().filter(**lookup).only("pk", "last_tid").first()
    if counter is None:
        TidCounter.objects.bulk_create(
            [TidCounter(**lookup, base_date=key.base_date, last_tid=None, updated_at=now)], ignore_conflicts=True
        )
        counter = TidCounter.objects.select_for_update().filter(**lookup).only("pk", "last_tid").get()
    return TidCounter(pk=counter.pk, meter_id=meter_id, sgc=key.sgc, krn=key.krn, last_tid=counter.last_tid)
