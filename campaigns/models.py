"""Campaigns, their batches and each meter's enrollment, with counters the dashboard reads.

Counters are maintained by `campaigns.services` with F() expressions in the same transaction as
the state change, so the dashboard never has to COUNT(*) millions of enrollments. Their meaning:

- ``enrolled``: enrollments scheduled in a batch (a cancelled batch gives back its unsent ones).
- ``notified``, ``codes_issued``, ``confirmed``: enrollments that have *reached* that milestone
  (each counted once, the first time its timestamp is set), however the meter got there: at the
  till before its batch opened, outside any batch, by USSD or by the care desk.
- ``done``: enrollments whose meter got its codes, was confirmed or left for a field visit (each
  counted once): what "still to update" subtracts from the target.
- ``failed``, ``non_compliant``: enrollments *currently* in that state (they need care).
- ``inferred``: enrollments *currently* counted as updated because a later purchase under the new
  key drew no complaint within the grace period (`ENDGAME_INFERENCE_GRACE_DAYS`); a complaint or
  the customer's own confirmation takes them out again (the funnel shows "confirmed by customer"
  and "inferred from purchase" apart).
- ``outside_batch`` (campaign only): enrollments recorded for a meter updated outside any batch.

The SMS tallies (sent, delivered, failed) are the outbox's: `sms.models.MessageTally`.
`campaigns.selectors.campaign_counters_recount` recounts all of them from the rows.
"""

from __future__ import annotations

from django.db import models

from kplc_sts import clock
from meters.models import BaseDate

DEFAULT_NOTICE_TEMPLATE = (
    "KPLC: {name} your meter {meter} updates on {date}. Load ALL unused tokens now. "
    "Next purchase brings update codes 1 and 2: type them first."
)
DEFAULT_CODES_TEMPLATE = "KPLC {meter} type in order: 1) {code1} 2) {code2} 3) {token} ({units}). Lost? *977#"
DEFAULT_REMINDER_TEMPLATE = (
    "KPLC: {name} meter {meter} must be updated by {deadline}. Buy a token to get update codes 1 and 2 "
    "and type them first. No codes? Dial *977#"
)


class FunnelCounters(models.Model):
    COUNTER_FIELDS = (
        "enrolled",
        "notified",
        "codes_issued",
        "confirmed",
        "done",
        "failed",
        "non_compliant",
        "inferred",
    )

    enrolled = models.PositiveIntegerField(default=0)
    notified = models.PositiveIntegerField(default=0)
    codes_issued = models.PositiveIntegerField(default=0)
    confirmed = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.IntegerField(default=0)
    non_compliant = models.IntegerField(default=0)
    inferred = models.IntegerField(default=0)

    class Meta:
        abstract = True


class Campaign(FunnelCounters):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200)
    # A JSON list of 6-digit strings: portable across SQLite and PostgreSQL (no ArrayField).
    sgcs = models.JSONField("supply group codes", default=list)
    from_krn = models.PositiveSmallIntegerField("old key revision number")
    to_krn = models.PositiveSmallIntegerField("new key revision number")
    new_base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices, default=BaseDate.BD2014)
    rollover = models.BooleanField("set the rollover bit", default=True)
    new_ken = models.PositiveSmallIntegerField("new key expiry number", default=255)
    deadline = models.DateField()
    daily_capacity = models.PositiveIntegerField(help_text="Meters that may be scheduled per day")
    notice_template = models.TextField(default=DEFAULT_NOTICE_TEMPLATE)
    codes_template = models.TextField(default=DEFAULT_CODES_TEMPLATE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    outside_batch = models.PositiveIntegerField(default=0, help_text="Meters updated outside any batch")
    created_at = models.DateTimeField(default=clock.now)
    created_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(from_krn__gte=1, from_krn__lte=9), name="campaign_from_krn"),
            models.CheckConstraint(condition=models.Q(to_krn__gte=1, to_krn__lte=9), name="campaign_to_krn"),
            models.CheckConstraint(condition=models.Q(new_ken__lte=255), name="campaign_new_ken"),
        ]
        permissions = [("push_codes", "Can send update codes by SMS without a purchase")]

    def __str__(self) -> str:
        return self.name


class Batch(FunnelCounters):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        NOTIFYING = "notifying", "Sending notices"
        OPEN = "open", "Open (notices sent)"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"
        CANCELLED = "cancelled", "Cancelled"

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="batches")
    number = models.PositiveIntegerField()
    selection_regions = models.JSONField(default=list, blank=True)
    selection_sgcs = models.JSONField(default=list, blank=True)
    selection_limit = models.PositiveIntegerField()
    scheduled_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    capacity_overridden = models.BooleanField(default=False)
    # Set when the batch's notice messages have been written (set-based, once).
    notices_created_at = models.DateTimeField(null=True, blank=True)
    notices_created = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    created_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["campaign", "number"]
        verbose_name_plural = "batches"
        permissions = [("schedule_batch", "Can schedule, pause, resume and cancel batches")]
        constraints = [models.UniqueConstraint(fields=["campaign", "number"], name="batch_campaign_number_unique")]
        indexes = [models.Index(fields=["status", "scheduled_at"], name="batch_status_due_idx")]

    def __str__(self) -> str:
        return f"{self.campaign} batch {self.number}"


class Enrollment(models.Model):
    class State(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        NOTIFIED = "notified", "Notified"
        CODES_ISSUED = "codes_issued", "Codes issued"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed"
        NON_COMPLIANT = "non_compliant", "Non-compliant"

    class Origin(models.TextChoices):
        BATCH = "batch", "Scheduled in a batch"
        TILL = "till", "Codes with a purchase outside any batch"
        USSD = "ussd", "USSD *977# outside any batch"
        CARE = "care", "Care desk outside any batch"

    # No index of its own for campaign or batch: each is the leading column of an index below (the
    # unique (campaign, meter), (campaign, state), (batch, state)), which serves the same lookups;
    # the meter's FK index is the one index on meter (docs/indexes.md, campaigns_enrollment).
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="enrollments", db_index=False)
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="enrollments")
    # NULL for a meter updated outside any batch: the update is still the campaign's (see origin).
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.PROTECT, related_name="enrollments", db_index=False
    )
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.BATCH)
    state = models.CharField(max_length=16, choices=State.choices, default=State.SCHEDULED)
    enrolled_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    codes_issued_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    non_compliant_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True)
    # The endgame (campaigns.services.endgame): evidence of update, reminders, codes sent unasked.
    # The first purchase under the new key after the codes, since the last complaint (None again
    # after a complaint): what "inferred from purchase" waits on for the grace period.
    new_key_purchase_at = models.DateTimeField(null=True, blank=True)
    inferred_at = models.DateTimeField(null=True, blank=True, help_text="Counted as updated from a purchase")
    complained_at = models.DateTimeField(null=True, blank=True, help_text="Last complaint or rejected-code report")
    reminders_sent = models.PositiveSmallIntegerField(default=0, db_default=0)  # batches insert set-based
    last_reminder_at = models.DateTimeField(null=True, blank=True)
    codes_pushed_at = models.DateTimeField(null=True, blank=True, help_text="Codes sent by SMS without a purchase")

    class Meta:
        ordering = ["batch", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "meter"], name="enrollment_campaign_meter_unique")]
        indexes = [
            models.Index(fields=["batch", "state"], name="enrollment_batch_state_idx"),
            models.Index(fields=["campaign", "state"], name="enrollment_campaign_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} in {self.campaign_id}: {self.state}"

    @property
    def reached_done(self) -> bool:
        """Whether the meter got its codes, was confirmed or left for a field visit (ever)."""
        return bool(self.codes_issued_at or self.confirmed_at or self.non_compliant_at)


class ReminderRule(models.Model):
    """A campaign's reminder rule: who gets a reminder SMS, how often, in what words.

    A meter notified `notified_days` ago with no purchase since, or whose codes went out
    `codes_days` ago with no sign of update (not confirmed, no inference, no purchase under the new
    key), gets a reminder; the next one waits as long again after the last, up to
    `max_per_meter`. Never to an updated meter, never in quiet hours (Africa/Nairobi)."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="reminder_rule")
    enabled = models.BooleanField(default=False)
    notified_days = models.PositiveSmallIntegerField(default=3, help_text="Days after the notice with no purchase")
    codes_days = models.PositiveSmallIntegerField(default=5, help_text="Days after the codes with no sign of update")
    max_per_meter = models.PositiveSmallIntegerField(default=2)
    template = models.TextField(default=DEFAULT_REMINDER_TEMPLATE)
    updated_at = models.DateTimeField(default=clock.now)
    updated_by = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(notified_days__gte=1), name="reminder_notified_days"),
            models.CheckConstraint(condition=models.Q(codes_days__gte=1), name="reminder_codes_days"),
            models.CheckConstraint(
                condition=models.Q(max_per_meter__gte=1, max_per_meter__lte=10), name="reminder_max_per_meter"
            ),
        ]

    def __str__(self) -> str:
        return f"reminders of {self.campaign_id}"


class EnrollmentEvent(models.Model):
    """The audit trail of an enrollment: one row per state change."""

    enrollment = models.ForeignKey(Enrollment, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    at = models.DateTimeField()
    # "system", "user:<username>", "ussd:+2547...", "partner:<id>", "command:schedule_batch"...
    actor_label = models.CharField(max_length=100)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["enrollment", "at", "id"]
        indexes = [models.Index(fields=["enrollment", "at"], name="enrollment_event_idx")]

    def __str__(self) -> str:
        return f"{self.enrollment_id}: {self.from_state or '-'} -> {self.to_state}"


class CampaignDailyStat(models.Model):
    """Per-campaign, per-day totals for the throughput chart and the daily capacity check.

    ``scheduled`` counts meters whose batch is scheduled for that day (the capacity check);
    the other columns count events that happened on that day (Africa/Nairobi dates).
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()
    scheduled = models.IntegerField(default=0)
    notices_sent = models.IntegerField(default=0)
    codes_issued = models.IntegerField(default=0)
    confirmed = models.IntegerField(default=0)
    done = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)

    DAILY_FIELDS = ("scheduled", "notices_sent", "codes_issued", "confirmed", "done", "failed")

    class Meta:
        ordering = ["campaign", "day"]
        constraints = [models.UniqueConstraint(fields=["campaign", "day"], name="campaign_daily_stat_unique")]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.day}"


class MeterSegment(models.Model):
    """The register counted per (region, SGC, KRN, status): what the schedule preview reads instead
    of counting millions of meters. Recounted in the meter import's transaction
    (`campaigns.services.meter_segments_refresh`) and kept exact in between by the services that
    change a meter's status (non-compliant, confirmed)."""

    region = models.CharField(max_length=64, blank=True)
    sgc = models.CharField(max_length=6)
    krn = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16)
    meters = models.IntegerField(default=0)

    class Meta:
        ordering = ["region", "sgc", "krn", "status"]
        constraints = [
            models.UniqueConstraint(fields=["region", "sgc", "krn", "status"], name="meter_segment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.region}/{self.sgc}/{self.krn}/{self.status}: {self.meters}"


class CampaignSegment(models.Model):
    """A campaign's enrollments per (region, SGC) whose meter is active: subtracted from the active
    meters of the segment, it is what a new batch can still take. Bumped by batch_schedule and
    batch_cancel in their transaction, by status changes, and recounted with MeterSegment."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="segments")
    region = models.CharField(max_length=64, blank=True)
    sgc = models.CharField(max_length=6)
    enrolled_active = models.IntegerField(default=0)

    class Meta:
        ordering = ["campaign", "region", "sgc"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "region", "sgc"], name="campaign_segment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.region}/{self.sgc}: {self.enrolled_active}"


class CampaignTarget(models.Model):
    """How many meters a campaign must update: a snapshot, because counting 7.4 million meter rows
    takes seconds. Recounted by the meter import (the register changes only when the utility's
    export is re-imported) and hourly (beat task campaigns.refresh_targets, or `campaign_tick`)."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="target_snapshot")
    meters = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "dashboard_campaigntarget"  # moved from the dashboard app with its rows

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.meters} meters at {self.computed_at:%Y-%m-%d %H:%M}"


class CampaignRegionDay(models.Model):
    """Meters a campaign updated per region and day (Africa/Nairobi): the dashboard's progress by
    region (total, and the pace over the last days) without a walk over the enrollments.

    Bumped in the transaction that first makes an enrollment count as updated (codes issued,
    confirmed or flagged for a field visit), under the meter's region at that moment;
    `campaigns.selectors.campaign_region_recount` counts the same from the rows.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="region_days")
    region = models.CharField(max_length=64, blank=True)
    day = models.DateField()
    done = models.IntegerField(default=0)

    class Meta:
        ordering = ["campaign", "region", "day"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "region", "day"], name="campaign_region_day_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.region or '(no region)'} {self.day}: {self.done}"
