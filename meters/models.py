from __future__ import annotations

from django.db import models

from kplc_sts.fields import ClockDateTimeField


class EncryptionAlgorithm(models.TextChoices):
    STA = "07", "EA07 STA"
    DEA = "09", "EA09 DEA"
    MISTY1 = "11", "EA11 MISTY1"


class KeyGenerationAlgorithm(models.TextChoices):
    DKGA02 = "02", "DKGA02 (DES)"
    DKGA04 = "04", "DKGA04 (HMAC-SHA-256)"


class BaseDate(models.IntegerChoices):
    BD1993 = 1993, "1993-01-01"
    BD2014 = 2014, "2014-01-01"
    BD2035 = 2035, "2035-01-01"


class KeyType(models.IntegerChoices):
    DITK = 0, "0 DITK (initialisation)"
    DDTK = 1, "1 DDTK (default)"
    DUTK = 2, "2 DUTK (unique)"
    DCTK = 3, "3 DCTK (common)"


class Meter(models.Model):
    """A prepaid STS meter as the utility's register knows it, plus its key-change state."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"
        NON_COMPLIANT = "non_compliant", "Non-compliant (field visit)"
        RETIRED = "retired", "Retired"

    class KeyState(models.TextChoices):
        OLD_KEY = "old_key", "On the old key"
        CODES_ISSUED = "codes_issued", "Codes issued"
        CONFIRMED = "confirmed", "Confirmed on the new key"
        NON_COMPLIANT = "non_compliant", "Cannot take the codes"

    meter_number = models.CharField(max_length=13, unique=True, help_text="DRN: 11 digits, or 13 with IIN 0000")
    iin = models.CharField("IIN", max_length=6, default="600727")
    sgc = models.CharField("supply group code", max_length=6)
    ti = models.PositiveSmallIntegerField("tariff index")
    krn = models.PositiveSmallIntegerField("key revision number")
    kt = models.PositiveSmallIntegerField("key type", choices=KeyType.choices, default=KeyType.DDTK)
    ea = models.CharField("encryption algorithm", max_length=2, choices=EncryptionAlgorithm.choices)
    dkga = models.CharField("decoder key generation algorithm", max_length=2, choices=KeyGenerationAlgorithm.choices)
    base_date = models.PositiveSmallIntegerField(choices=BaseDate.choices, default=BaseDate.BD1993)
    ken = models.PositiveSmallIntegerField("key expiry number", default=255)
    account_number = models.CharField(max_length=32, blank=True)
    customer_name = models.CharField(max_length=120, blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, +254...")
    region = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    key_state = models.CharField(max_length=16, choices=KeyState.choices, default=KeyState.OLD_KEY)
    created_at = ClockDateTimeField(auto_now_add=True)
    updated_at = ClockDateTimeField(auto_now=True)

    class Meta:
        ordering = ["meter_number"]
        permissions = [("resend_codes", "Can resend update codes and tokens by SMS")]
        indexes = [
            models.Index(fields=["phone"], name="meter_phone_idx"),
            models.Index(fields=["account_number"], name="meter_account_idx"),
            models.Index(fields=["region", "sgc"], name="meter_region_sgc_idx"),
            models.Index(fields=["sgc", "krn"], name="meter_sgc_krn_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(meter_number__regex=r"^([0-9]{11}|[0-9]{13})$"), name="meter_number_digits"
            ),
            models.CheckConstraint(condition=models.Q(krn__gte=1, krn__lte=9), name="meter_krn_range"),
            models.CheckConstraint(condition=models.Q(ti__lte=99), name="meter_ti_range"),
            models.CheckConstraint(condition=models.Q(ken__lte=255), name="meter_ken_range"),
        ]

    def __str__(self) -> str:
        return self.meter_number
