"""The dashboard's statements for any database; same functions as `dashboard._pg`."""

from __future__ import annotations

from meters.models import Meter


def meter_regions() -> list[str]:
    return list(Meter.objects.order_by("region").values_list("region", flat=True).distinct())
