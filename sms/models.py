"""The SMS outbox: one row per message, written in the business transaction, sent by Celery.

The outbox knows batches only by id (`batch_id`): campaigns writes a batch's notices through
`sms.services.notices_insert_from` and holds, releases or cancels them; sms counts what became of
them in `MessageTally` and reports sent notices with the `sms.events.notices_sent` signal.
"""

from __future__ import annotations

from django.db import models

from kplc_sts import clock


class Message(models.Model):
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
    # NULL until the gateway accepts it; NULLs never collide in a unique index.
    provider_message_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it (sweep: stuck sends)")
    last_error = models.CharField(max_length=500, blank=True)
    failure_reason = models.CharField(max_length=64, blank=True)
    meter = models.ForeignKey(
        "meters.Meter", null=True, blank=True, on_delete=models.SET_NULL, related_name="sms_messages"
    )
    # The campaign batch a notice (or a batch meter's codes SMS) belongs to; an id, not a foreign
    # key: the outbox sits below campaigns and never joins to it. Indexed by (batch_id, status).
    batch_id = models.BigIntegerField(null=True, blank=True)
    vend_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=clock.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="When the final report arrived")
    # Counters and enrollment states are updated for a few sent messages at a time; a worker lost
    # in between leaves this False and the sweep counts them.
    sent_counted = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Claiming and the sweep only ever look at these few rows among millions.
            models.Index(fields=["id"], condition=models.Q(status="queued"), name="sms_message_queued_idx"),
            models.Index(fields=["claimed_at"], condition=models.Q(status="sending"), name="sms_message_sending_idx"),
            models.Index(
                fields=["id"],
                condition=models.Q(sent_counted=False, sent_at__isnull=False),
                name="sms_message_uncounted_idx",
            ),
            models.Index(fields=["batch_id", "status"], name="sms_message_batch_status_idx"),
            models.Index(fields=["meter", "-created_at"], name="sms_message_meter_idx"),
            models.Index(fields=["recipient", "-created_at"], name="sms_message_recipient_idx"),
        ]
        constraints = [
            # One notice per meter per batch, whatever re-runs of the batch start job do.
            models.UniqueConstraint(
                fields=["batch_id", "meter"],
                condition=models.Q(purpose="notice"),
                name="sms_message_one_notice_per_batch_meter",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} to {self.recipient}: {self.status}"


class DeliveryReport(models.Model):
    """Each delivery report as received, once per provider id (the endpoint is idempotent on it).

    A report can arrive before the worker has stored the provider id; it then waits here,
    unapplied, until the sweep matches it.
    """

    provider_message_id = models.CharField(max_length=64, unique=True)
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
            models.Index(fields=["id"], condition=models.Q(applied_at__isnull=True), name="sms_report_unapplied_idx")
        ]

    def __str__(self) -> str:
        return f"{self.provider_message_id}: {self.status}"


class MessageTally(models.Model):
    """A batch's SMS (notices, and the codes SMS of its meters) accepted by the gateway, reported
    delivered, and finally failed or rejected: counted by the outbox as it settles them."""

    batch_id = models.BigIntegerField(unique=True)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"batch {self.batch_id}: {self.sent} sent, {self.delivered} delivered, {self.failed} failed"
