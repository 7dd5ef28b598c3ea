from __future__ import annotations

from django.db import models
from django.db.models.functions import Mod
from django.db.models.lookups import Exact

from kplc_sts import clock
from meters.models import BaseDate, KeyGenerationAlgorithm


class VendingKey(models.Model):
    """A supply group's vending key for one key revision, wrapped with AES-256-GCM under the KEK.

    The plaintext never lives in the database, a log, the admin or a repr(): only the key check
    value identifies it. `tokens.custody.vending_key_get` is the one place that unwraps it.
    """

    sgc = models.CharField("supply group code", max_length=6)
    krn = models.PositiveSmallIntegerField("key revision number")
    base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices)
    dkga = models.CharField(max_length=2, choices=KeyGenerationAlgorithm.choices)
    key_bits = models.PositiveSmallIntegerField()
    check_value = models.CharField(max_length=16, help_text="Key check value (KCV): identifies, never reveals")
    nonce = models.BinaryField(max_length=12, editable=False)
    ciphertext = models.BinaryField(max_length=64, editable=False)
    tag = models.BinaryField(max_length=16, editable=False)
    loaded_at = models.DateTimeField(default=clock.now)
    loaded_by = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sgc", "krn"], name="vending_key_sgc_krn_unique")]
        ordering = ["sgc", "krn"]

    def __str__(self) -> str:
        return f"SGC {self.sgc} KRN {self.krn} (KCV {self.check_value})"

    def __repr__(self) -> str:
        # The default repr is harmless today; this one stays harmless if fields are added.
        return f"<VendingKey sgc={self.sgc} krn={self.krn} kcv={self.check_value}>"


# --- Vending (issue 5): vends, issued tokens, key change sets, TID counters, reversals ---------------


class KeyChangeSet(models.Model):
    """The key change tokens (update codes 1 and 2) that move one meter to a campaign's new key.

    Generated once per meter and campaign, then attached to every vend until the meter is
    confirmed on the new key: a key change token has no TID, so the same digits stay valid and
    re-delivery never produces different codes.
    """

    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="key_change_sets")
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.PROTECT, related_name="key_change_sets")
    from_sgc = models.CharField(max_length=6)
    from_krn = models.PositiveSmallIntegerField()
    from_base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices)
    to_sgc = models.CharField(max_length=6)
    to_krn = models.PositiveSmallIntegerField()
    to_base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices)
    to_ken = models.PositiveSmallIntegerField()
    rollover = models.BooleanField()
    # Two 20-digit codes for 64-bit keys (EA07/EA09), four for 128-bit keys; in the order to type them.
    codes = models.JSONField()
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["meter", "campaign"], name="key_change_set_meter_campaign")]

    def __str__(self) -> str:
        return f"{self.meter_id}: SGC {self.from_sgc} KRN {self.from_krn} -> KRN {self.to_krn}"

    def __repr__(self) -> str:
        return f"<KeyChangeSet meter={self.meter_id} campaign={self.campaign_id} krn {self.from_krn}->{self.to_krn}>"


class TidCounter(models.Model):
    """The last TID issued to one meter under one key, locked (SELECT FOR UPDATE) to issue the next."""

    meter = models.ForeignKey("meters.Meter", on_delete=models.CASCADE, related_name="+")
    sgc = models.CharField(max_length=6)
    krn = models.PositiveSmallIntegerField()
    base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices)
    last_tid = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meter", "sgc", "krn"], name="tid_counter_meter_key")]

    def __str__(self) -> str:
        return f"{self.meter_id} SGC {self.sgc} KRN {self.krn}: {self.last_tid}"


class Vend(models.Model):
    """A partner's sale: the financial record, with the exact response it was given.

    On PostgreSQL the table is partitioned by month of `created_at` (docs/partitioning.md): its
    primary key there is (id, created_at) while Django keeps `id` as the pk. The partner's
    reference is unique through `VendReference`, not through this table. The response body is kept
    for the replay window (`VEND_REPLAY_DAYS`), then compacted to ''; partitions past
    `VEND_HISTORY_MONTHS` are archived to files and dropped (`archive_partitions`).
    """

    public_id = models.UUIDField(unique=True, editable=False)
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="vends")
    reference = models.CharField(max_length=64, help_text="The partner's unique reference")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the normalised request")
    # No index of its own: vend_meter_idx (meter, -created_at) leads with it (one random-keyed index
    # entry less per vend).
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="vends", db_index=False)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    units = models.DecimalField(max_digits=10, decimal_places=1)
    customer_phone = models.CharField(max_length=16, blank=True)
    key_change_set = models.ForeignKey(
        KeyChangeSet, null=True, blank=True, on_delete=models.PROTECT, related_name="vends"
    )
    response_status = models.PositiveSmallIntegerField(default=201)
    response_body = models.TextField(
        help_text="The JSON sent to the partner, replayed byte for byte; '' once compacted after the replay window"
    )
    created_at = models.DateTimeField(default=clock.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["meter", "-created_at"], name="vend_meter_idx")]

    def __str__(self) -> str:
        # The admin's title for a sale: what, to which meter, from whom (never internal ids).
        return f"KES {self.amount} to meter {self.meter.meter_number} ({self.partner.name}, ref {self.reference})"


class IssuedToken(models.Model):
    """A TID-bearing token (credit or management) issued to a meter under one of its keys."""

    class Kind(models.TextChoices):
        CREDIT = "credit", "Credit"
        MANAGEMENT = "management", "Management"

    # No index of its own: issued_token_meter_idx (meter, -issued_at) leads with it.
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="issued_tokens", db_index=False)
    # No database foreign key: on PostgreSQL a key to the partitioned vend table would have to carry
    # the vend's created_at too. The vend statement inserts both rows together (tokens._pg).
    vend = models.OneToOneField(
        Vend, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_token", db_constraint=False
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    token_class = models.PositiveSmallIntegerField()
    subclass = models.PositiveSmallIntegerField()
    sgc = models.CharField(max_length=6)
    krn = models.PositiveSmallIntegerField()
    base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices)
    tid = models.PositiveIntegerField()
    units = models.DecimalField(max_digits=10, decimal_places=1, null=True, blank=True)
    value = models.PositiveIntegerField(null=True, blank=True, help_text="Management token value, if any")
    digits = models.CharField(max_length=20)
    issued_at = models.DateTimeField(default=clock.now)
    issued_by = models.CharField(max_length=100, help_text="partner:<id>, user:<name>, ...")

    class Meta:
        ordering = ["-issued_at", "-id"]
        permissions = [
            ("view_token_digits", "Can see token digits"),
            ("issue_management_token", "Can issue management tokens"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["meter", "sgc", "krn", "tid"], name="issued_token_meter_key_tid"),
            # 00:01 of any day is a reserved TID (reference.md section 4).
            models.CheckConstraint(condition=~Exact(Mod("tid", 1440), 1), name="issued_token_tid_not_reserved"),
        ]
        indexes = [models.Index(fields=["meter", "-issued_at"], name="issued_token_meter_idx")]

    def __str__(self) -> str:
        return f"{self.kind} token for {self.meter_id} (KRN {self.krn}, TID {self.tid})"

    def __repr__(self) -> str:
        # Never the digits: they are a bearer credential for electricity.
        return f"<IssuedToken {self.kind} meter={self.meter_id} krn={self.krn} tid={self.tid}>"


class ReversalRequest(models.Model):
    """A partner's request to reverse a vend, queued for customer care.

    It never un-issues anything: an STS token cannot be revoked once issued.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved (refund outside the token system)"
        REJECTED = "rejected", "Rejected"

    # No database foreign key (the vend table is partitioned on PostgreSQL); the reversal service
    # creates one only for a vend it has just read.
    vend = models.OneToOneField(Vend, on_delete=models.PROTECT, related_name="reversal_request", db_constraint=False)
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    requested_by = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=clock.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=100, blank=True)
    resolution_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"], name="reversal_status_idx")]

    def __str__(self) -> str:
        return f"Reversal of {self.vend}: {self.get_status_display().lower()}"


class TokenDigest(models.Model):
    """HMAC-SHA-256 of a token's 20 digits (keyed from SECRET_KEY), so care can find a token a
    customer reads out without an unindexed scan of token digits, and without storing digits again.
    Written by the vend and key change services as they issue (`tokens.digests`)."""

    # Indexed by the explicit Index below: `db_index=True` on a CharField also makes a
    # varchar_pattern_ops `_like` twin on PostgreSQL, and no LIKE ever runs on a digest.
    digest = models.CharField(max_length=64)
    meter = models.ForeignKey("meters.Meter", on_delete=models.CASCADE, related_name="+")
    issued_token_id = models.BigIntegerField(null=True, blank=True)
    key_change_set_id = models.BigIntegerField(null=True, blank=True)
    position = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Key change code number (1, 2...)")
    # The partition key on PostgreSQL: the issued token's issued_at (or the set's created_at), so a
    # digest lives, and is archived, with the token it finds.
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        db_table = "care_tokendigest"  # moved from the care app with its rows
        verbose_name = "token digest"
        indexes = [
            # Finding a token from the digits a customer reads out (tokens.digests: digest = %s).
            models.Index(fields=["digest"], name="token_digest_digest_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["issued_token_id"], name="token_digest_issued_token"),
            models.UniqueConstraint(fields=["key_change_set_id", "position"], name="token_digest_kcs_position"),
        ]

    def __str__(self) -> str:
        return f"digest for meter {self.meter_id}"


class VendReference(models.Model):
    """One row per (partner, reference) ever sold and still in the database: what makes a partner's
    reference unique across the monthly vend partitions, and finds the vend (its id and created_at,
    so the read touches one partition) for a replay.

    Not partitioned: uniqueness needs one index over all time. A row leaves only when its vend's
    partition is archived (`archive_partitions`), after `VEND_HISTORY_MONTHS`."""

    pk = models.CompositePrimaryKey("partner_id", "reference")
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+", db_index=False)
    reference = models.CharField(max_length=64)
    vend_id = models.BigIntegerField()
    created_at = models.DateTimeField(help_text="The vend's created_at (its partition)")

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.reference} -> vend {self.vend_id}"


class ArchiveRecord(models.Model):
    """A history partition (vend history, or the SMS log: `table` says which) exported to a gzip CSV
    file before it was detached and dropped: the file, its row count (checked against the partition
    and against a re-read of the file) and its SHA-256, so the file can be proven complete and
    untouched for the retention years."""

    table = models.CharField(max_length=63, help_text="The partitioned table (tokens_vend, ...)")
    partition = models.CharField(max_length=63, unique=True)
    range_start = models.DateTimeField()
    range_end = models.DateTimeField()
    rows = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField()
    archived_at = models.DateTimeField(default=clock.now)
    dropped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-range_start", "table"]

    def __str__(self) -> str:
        return f"{self.partition}: {self.rows} rows -> {self.path}"


# --- Vending health: small aggregates the vend and the partner API bump --------------------------------
#
# Vends and partner-API errors arrive at hundreds per second at peak; the dashboard must not count the
# vend table for "per minute" figures. The writers bump these (one upsert, after commit); the
# dashboard reads at most a day of minute rows.

# Concurrent vends in the same minute spread their upserts over this many rows, so they do not
# queue on one row lock; readers sum the shards.
VEND_STAT_SHARDS = 8


class VendMinuteStat(models.Model):
    minute = models.DateTimeField(help_text="Start of the minute (UTC)")
    shard = models.PositiveSmallIntegerField(default=0)
    vends = models.PositiveIntegerField(default=0)
    vends_with_codes = models.PositiveIntegerField(default=0, help_text="Vends that carried the key change codes")

    class Meta:
        db_table = "dashboard_vendminutestat"  # moved from the dashboard app with its rows
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
        db_table = "dashboard_apierrorstat"  # moved from the dashboard app with its rows
        ordering = ["-minute", "code"]
        constraints = [models.UniqueConstraint(fields=["minute", "code"], name="api_error_stat_unique")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.code}: {self.count}"
