"""The register and the campaigns' enrollments counted per segment: what a new batch can still take.

The schedule preview must not walk millions of meters: it reads MeterSegment (meters per region,
SGC, KRN and status) minus CampaignSegment (a campaign's enrollments of active meters per region
and SGC). Both are recounted in the meter import's transaction and kept exact in between by the
services here, which every enrollment and every meter status change goes through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction

from kplc_sts.db import upsert_increment
from meters.models import Meter

from ..models import Campaign, CampaignSegment, Enrollment, MeterSegment
from ..selectors import segments_live


def meter_segments_refresh() -> int:
    """Recount both aggregates from the rows (seconds at 7.4 M meters); returns the segments.

    Called by the meter import inside its transaction, so the counts change with the register.
    """
    meter, enrollment, campaign = Meter._meta.db_table, Enrollment._meta.db_table, Campaign._meta.db_table
    with transaction.atomic():
        # The campaign rows are what batch_schedule locks: no batch is enrolled while we recount.
        list(Campaign.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        MeterSegment.objects.all().delete()
        CampaignSegment.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {MeterSegment._meta.db_table} (region, sgc, krn, status, meters) "  # noqa: S608
                f"SELECT region, sgc, krn, status, COUNT(*) FROM {meter} GROUP BY region, sgc, krn, status"
            )
            segments = cursor.rowcount
            cursor.execute(
                f"INSERT INTO {CampaignSegment._meta.db_table} (campaign_id, region, sgc, enrolled_active) "  # noqa: S608
                f"SELECT e.campaign_id, m.region, m.sgc, COUNT(*) FROM {enrollment} e "
                f"JOIN {meter} m ON m.id = e.meter_id JOIN {campaign} c ON c.id = e.campaign_id "
                "WHERE m.krn = c.from_krn AND m.status = %s GROUP BY e.campaign_id, m.region, m.sgc",
                [Meter.Status.ACTIVE],
            )
    return segments


def segments_enrolled_add(*, campaign: Campaign, meter_ids_sql: str, params: Sequence[Any], sign: int) -> None:
    """Add (sign=1) or take away (sign=-1) the active meters among `meter_ids_sql`'s, by segment."""
    if not segments_live():
        return
    table = CampaignSegment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, region, sgc, enrolled_active) "  # noqa: S608
            f"SELECT %s, m.region, m.sgc, %s * COUNT(*) FROM {Meter._meta.db_table} m "
            f"WHERE m.id IN ({meter_ids_sql}) AND m.krn = %s AND m.status = %s GROUP BY m.region, m.sgc "
            f"ON CONFLICT (campaign_id, region, sgc) DO UPDATE SET enrolled_active = "
            f"{table}.enrolled_active + EXCLUDED.enrolled_active",
            [campaign.pk, sign, *params, campaign.from_krn, Meter.Status.ACTIVE],
        )


def segment_enrollment_added(*, campaign: Campaign, meter: Meter) -> None:
    """One enrollment recorded for `meter` (outside a batch): count it if its meter is active."""
    if meter.status == Meter.Status.ACTIVE and meter.krn == campaign.from_krn and segments_live():
        upsert_increment(
            CampaignSegment,
            {"campaign_id": campaign.pk, "region": meter.region, "sgc": meter.sgc},
            enrolled_active=1,
        )


def segment_meter_status_moved(*, meter: Meter, old: str, new: str) -> None:
    """The meter's status went from `old` to `new`: move it between segments (same transaction)."""
    if old == new or not segments_live():
        return
    keys = {"region": meter.region, "sgc": meter.sgc, "krn": meter.krn}
    upsert_increment(MeterSegment, {**keys, "status": old}, meters=-1)
    upsert_increment(MeterSegment, {**keys, "status": new}, meters=1)
    delta = 1 if new == Meter.Status.ACTIVE else -1 if old == Meter.Status.ACTIVE else 0
    if not delta:
        return
    campaigns = Enrollment.objects.filter(meter_id=meter.pk, campaign__from_krn=meter.krn).values_list(
        "campaign_id", flat=True
    )
    for campaign_id in sorted(campaigns):
        upsert_increment(
            CampaignSegment,
            {"campaign_id": campaign_id, "region": meter.region, "sgc": meter.sgc},
            enrolled_active=delta,
        )
