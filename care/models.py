"""Customer care: cases, and the USSD language each phone chose."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from kplc_sts import clock
from kplc_sts.fields import ClockDateTimeField
from meters.models import Meter


class UssdLanguage(models.Model):
    """The language a phone number chose on *977#, remembered for its next session."""

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        SWAHILI = "sw", "Kiswahili"

    phone = models.CharField(max_length=16, unique=True)
    language = models.CharField(max_length=2, choices=Language.choices)
    updated_at = ClockDateTimeField(auto_now=True)

    class Meta:
        verbose_name = "USSD language choice"

    def __str__(self) -> str:
        return f"{self.phone}: {self.language}"


class CareCase(models.Model):
    """A customer's problem, opened from USSD or by an agent, worked and closed by care."""

    class Kind(models.TextChoices):
        CODE1_REJECTED = "code1_rejected", "Meter rejected update code 1"
        CODE2_REJECTED = "code2_rejected", "Meter rejected update code 2"
        TOKEN_REJECTED = "token_rejected", "Meter rejected the token"
        NO_CODES = "no_codes", "No codes or token received"
        SMS_FAILING = "sms_failing", "SMS keep failing"
        OTHER = "other", "Other"

    class Source(models.TextChoices):
        USSD = "ussd", "USSD *977#"
        AGENT = "agent", "Care agent"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    meter = models.ForeignKey(Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="care_cases")
    phone = models.CharField(max_length=16, blank=True, help_text="Who to call back")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source = models.CharField(max_length=8, choices=Source.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    summary = models.CharField(max_length=300, blank=True)
    opened_at = models.DateTimeField(default=clock.now)
    opened_by = models.CharField(max_length=100, help_text="user:<name> or ussd:<phone>")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="care_cases"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=100, blank=True)
    resolution = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        verbose_name = "care case"
        indexes = [
            models.Index(fields=["status", "-opened_at"], name="care_case_queue_idx"),
            models.Index(fields=["meter", "-opened_at"], name="care_case_meter_idx"),
        ]

    def __str__(self) -> str:
        return f"Case {self.reference} ({self.get_kind_display()}, {self.status})"

    @property
    def reference(self) -> str:
        return f"C{self.pk}"


class CaseComment(models.Model):
    """A note on a case: what the agent did, what the customer said."""

    case = models.ForeignKey(CareCase, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    author_label = models.CharField(max_length=100, blank=True)
    body = models.TextField()
    at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["case", "at", "id"]
        verbose_name = "case comment"

    def __str__(self) -> str:
        return f"{self.author_label} on case {self.case_id}"


class FieldVisitMeter(Meter):
    """Meters flagged non-compliant: they need a technician, not codes (the field-visit queue)."""

    class Meta:
        proxy = True
        verbose_name = "field-visit meter"


class FailingSmsMeter(Meter):
    """Meters whose SMS keep failing (blacklisted, invalid number...): care must reach them another way."""

    class Meta:
        proxy = True
        verbose_name = "meter with failing SMS"
        verbose_name_plural = "meters with failing SMS"
