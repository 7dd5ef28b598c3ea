from __future__ import annotations

from django.db import models

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
    loaded_at = models.DateTimeField(auto_now_add=True)
    loaded_by = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sgc", "krn"], name="vending_key_sgc_krn_unique")]
        ordering = ["sgc", "krn"]

    def __str__(self) -> str:
        return f"SGC {self.sgc} KRN {self.krn} (KCV {self.check_value})"

    def __repr__(self) -> str:
        # The default repr is harmless today; this one stays harmless if fields are added.
        return f"<VendingKey sgc={self.sgc} krn={self.krn} kcv={self.check_value}>"
