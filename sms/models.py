"""The SMS outbox: one row per message, written in the business transaction, sent by Celery.

The outbox knows batches only by id (`batch_id`): campaigns writes a batch's notices through
`sms.services.notices_insert_from` and holds, releases or cancels them; sms counts what became of
them in `MessageTally` and reports sent notices with the `sms.events.notices_sent` signal.
"""

from __future__ import annotations

from django.db import models

from kplc_sts import clock


class MessageFields(models.Model):
    """What a message is, in the outbox (`Message`) and, once settled, in the log (`MessageLog`)."""

    class Purpose(models.TextChoices):
        NOTICE = "notice", "Campaign notice"
        CODES = "codes", "Update codes"
        TOKEN = "token", "Token"
        CARE = "care", "Customer care"
        REMINDER = "reminder", "Campaign reminder"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent (accepted by the gateway)"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        HELD = "held", "Held (batch paused)"
        CANCELLED = "cancelled", "Cancelled (batch cancelled)"

    FINAL_STATUSES = (Status.DELIVERED, Status.FAILED, Status.REJECTED, Status.CANCELLED)
    # Bulk messages ride the notices queue (a million of them never delay a customer's codes).
    BULK_PURPOSES = (Purpose.NOTICE, Purpose.REMINDER)
    # Never sent in quiet hours (Africa/Nairobi): held and sent in the morning (sms.quiet).
    QUIET_PURPOSES = (Purpose.REMINDER,)

    recipient = models.CharField(max_length=16, help_text="E.164, +254...")
    body = models.TextField()
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # NULL until the gateway accepts it. Unique in the outbox by a constraint (no `_like` twin: no
    # LIKE ever runs on it), indexed in the log: see each Meta.
    provider_message_id = models.CharField(max_length=64, null=True, blank=True)
    cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it (sweep: stuck sends)")
    last_error = models.CharField(max_length=500, blank=True)
    failure_reason = models.CharField(max_length=64, blank=True)
    # The campaign batch a notice (or a batch meter's codes SMS) belongs to; an id, not a foreign
    # key: the outbox sits below campaigns and never joins to it.
    batch_id = models.BigIntegerField(null=True, blank=True)
    # Kept for care and audits (which vend sent this); no query looks a message up by it.
    vend_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="When the final report arrived")
    # Counters and enrollment states are updated for a few sent messages at a time; a worker lost
    # in between leaves this False and the sweep counts them.
    sent_counted = models.BooleanField(default=False)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.purpose} to {self.recipient}: {self.status}"


class Message(MessageFields):
    """The outbox: only what is still to send or to settle. Settled messages move to `MessageLog`
    (`sms.services.log`), so this table stays as small as the work in flight.

    Index diet (docs/indexes.md): no index covers a column a send updates (status, attempts,
    claimed_at, sent_at, sent_counted, delivered_at...), so the claim, the count and the delivery
    report update are HOT (the table has fillfactor 50, set in migration 0007). The sweep, the
    mover and the queue gauges scan the small outbox instead of riding partial indexes on status.
    """

    # The (meter, -created_at) index below serves the care timeline; the FK's own index would
    # be its duplicate prefix.
    meter = models.ForeignKey(
        "meters.Meter",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sms_messages",
        db_index=False,
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The care desk's meter page: a meter's newest messages (sms.selectors.messages_of_meter).
            models.Index(fields=["meter", "-created_at"], name="sms_message_meter_idx"),
        ]
        constraints = [
            # Delivery reports find their message by the gateway's id (sms._pg.report_receive,
            # reports_apply, the sweep's reconciliation); the UPDATE that stores it is the one
            # non-HOT update of a send.
            models.UniqueConstraint(fields=["provider_message_id"], name="sms_message_provider_id_uniq"),
            # One notice per meter per batch, whatever re-runs of the batch start job do; its
            # (batch_id, meter_id) WHERE purpose='notice' index also serves every per-batch query
            # of the outbox (notices_dispatch / hold / release / cancel, batches_with_notices_pending).
            models.UniqueConstraint(
                fields=["batch_id", "meter"],
                condition=models.Q(purpose="notice"),
                name="sms_message_one_notice_per_batch_meter",
            ),
        ]


# Africa's Talking's final delivery report statuses and what they make of the message.
REPORT_FINAL_STATUS = {
    "Success": MessageFields.Status.DELIVERED,
    "Failed": MessageFields.Status.FAILED,
    "Rejected": MessageFields.Status.REJECTED,
}


class MessageLog(MessageFields):
    """Settled messages (delivered, failed, rejected, cancelled; sent ones whose report never came
    after SMS_LOG_UNREPORTED_SECONDS), moved from the outbox row for row with the same id.

    On PostgreSQL a table partitioned by month of `created_at` (primary key (id, created_at)),
    partitions made ahead by `sms.services.log_partitions_ensure` (beat and `manage.py
    sms_log_partitions`); elsewhere a plain table. Written once; a late delivery report may update
    a `sent` row to its final status. Read through `sms.selectors` together with the outbox. Months
    past SMS_LOG_MONTHS are archived to files and dropped (`sms.services.log_partitions_archive`).
    """

    # Copied from the outbox row: not an auto id.
    id = models.BigIntegerField(primary_key=True)
    # No FK constraint: a partitioned log row must never block or cascade on a meter, and the
    # outbox already checked it when the message was written.
    meter = models.ForeignKey(
        "meters.Meter",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="sms_log",
        db_index=False,
        db_constraint=False,
    )
    logged_at = models.DateTimeField(default=clock.now, help_text="When it left the outbox")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "SMS log entry"
        verbose_name_plural = "SMS log"
        indexes = [
            # The care timeline (messages_of_meter) and the failing-SMS queue (per meter).
            models.Index(fields=["meter", "-created_at"], name="sms_log_meter_idx"),
            # Late delivery reports (sms.services.log.log_reports_apply) and the admin search.
            models.Index(fields=["provider_message_id"], name="sms_log_provider_id_idx"),
            # The dashboard's per-batch delivery series and failure reasons.
            models.Index(fields=["batch_id", "status"], name="sms_log_batch_status_idx"),
            # The admin's search by phone.
            models.Index(fields=["recipient", "-created_at"], name="sms_log_recipient_idx"),
        ]


class DeliveryReport(models.Model):
    """Each delivery report as received, once per provider id (the endpoint is idempotent on it).

    A report can arrive before the worker has stored the provider id; it then waits here,
    unapplied, until the sweep matches it.
    """

    provider_message_id = models.CharField(max_length=64)
    status = models.CharField(max_length=16)
    failure_reason = models.CharField(max_length=64, blank=True)
    phone_number = models.CharField(max_length=16, blank=True)
    network_code = models.CharField(max_length=8, blank=True)
    retry_count = models.PositiveSmallIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(default=clock.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The sweeps' unapplied reports of the last SMS_REPORT_MATCH_SECONDS (reports_apply,
            # log_reports_apply, messages_reconcile): a few among millions. On PostgreSQL a BRIN
            # index on received_at (migration 0012, outside the models) serves the retention delete.
            models.Index(
                fields=["received_at"], condition=models.Q(applied_at__isnull=True), name="sms_report_pending_idx"
            )
        ]
        constraints = [
            # Idempotent receipt (INSERT ... ON CONFLICT (provider_message_id)); no `_like` twin.
            models.UniqueConstraint(fields=["provider_message_id"], name="sms_report_provider_id_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_message_id}: {self.status}"


class MessageTally(models.Model):
    """A batch's SMS (notices, and the codes SMS of its meters) accepted by the gateway, reported
    delivered, and finally failed or rejected: counted by the outbox as it settles them.

    A batch's tally is a few rows (`shard`, one per group of database connections, `sms.tallies`)
    summed on read: every delivery report of a batch adds to its tally, and with one row per batch
    the reports queued on that row's lock, each waiting out the previous one's commit."""

    batch_id = models.BigIntegerField()
    shard = models.PositiveSmallIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch_id", "shard"], name="sms_tally_batch_shard_uniq")]

    def __str__(self) -> str:
        return f"batch {self.batch_id}: {self.sent} sent, {self.delivered} delivered, {self.failed} failed"
