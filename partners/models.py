from __future__ import annotations

from decimal import Decimal

from django.db import models

from kplc_sts.fields import ClockDateTimeField


class Partner(models.Model):
    """A bank, mobile-money aggregator or agent network that sells tokens through the REST API."""

    name = models.CharField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    min_vend_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("10.00"))
    max_vend_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("35000.00"))
    daily_limit = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Total KES this partner may vend per calendar day (Nairobi time); empty for no limit",
    )
    allowed_ips = models.TextField(
        blank=True,
        help_text="One IP address or CIDR network per line; empty allows any source address",
    )
    throttle_rate = models.CharField(
        max_length=20,
        blank=True,
        help_text='Request rate like "6000/min" (DRF syntax); empty for the default in settings',
    )
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_vend_amount__gt=0) & models.Q(max_vend_amount__gte=models.F("min_vend_amount")),
                name="partner_vend_amount_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PartnerApiKey(models.Model):
    """A partner's API key: only its prefix is kept in clear, the whole key as a SHA-256 digest.

    Keys are 256-bit random strings, so a fast hash is as strong as a slow one here (there is
    nothing to brute-force), and a vend cannot afford a password hasher's 100 ms.
    """

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, help_text="What the key is for, e.g. 'production'")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = ClockDateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=100, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "partner API key"

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.partner} {self.prefix}… ({state})"

    def __repr__(self) -> str:
        return f"<PartnerApiKey partner={self.partner_id} prefix={self.prefix}>"


class PartnerDailyTotal(models.Model):
    """Running total of one partner's vends on one day, updated in the vend's transaction."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="daily_totals")
    day = models.DateField()
    amount = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    vend_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["partner", "day"], name="partner_daily_total_unique")]

    def __str__(self) -> str:
        return f"{self.partner} {self.day}: KES {self.amount}"
