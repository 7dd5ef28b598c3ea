"""Small maintained aggregates for the vending-health page.

Vends and partner-API errors arrive at hundreds per second at peak; the page must not count the
vend table for "per minute" figures. The vend service bumps these counters (one upsert per vend,
after commit) and the page reads at most a day of minute rows.
"""

from __future__ import annotations

from django.db import models

# Concurrent vends in the same minute spread their upserts over this many rows, so they do not
# queue on one row lock; readers sum the shards.
VEND_STAT_SHARDS = 8


class VendMinuteStat(models.Model):
    minute = models.DateTimeField(help_text="Start of the minute (UTC)")
    shard = models.PositiveSmallIntegerField(default=0)
    vends = models.PositiveIntegerField(default=0)
    vends_with_codes = models.PositiveIntegerField(default=0, help_text="Vends that carried the key change codes")

    class Meta:
        ordering = ["-minute", "shard"]
        constraints = [models.UniqueConstraint(fields=["minute", "shard"], name="vend_minute_stat_unique")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} #{self.shard}: {self.vends}"


class ApiErrorStat(models.Model):
    """Partner-API error responses by error code and minute (UNKNOWN_METER, AMOUNT_TOO_LOW...)."""

    minute = models.DateTimeField(help_text="Start of the minute (UTC)")
    code = models.CharField(max_length=40)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-minute", "code"]
        constraints = [models.UniqueConstraint(fields=["minute", "code"], name="api_error_stat_unique")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.code}: {self.count}"


class CampaignTarget(models.Model):
    """How many meters a campaign must update: a snapshot, because counting 7.4 million meter rows
    takes seconds. Recounted by the meter import (the register changes only when the utility's export
    is re-imported) and hourly: beat task dashboard.refresh_targets, or `manage.py campaign_tick`."""

    campaign = models.OneToOneField("campaigns.Campaign", on_delete=models.CASCADE, related_name="target_snapshot")
    meters = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.meters} meters at {self.computed_at:%Y-%m-%d %H:%M}"
