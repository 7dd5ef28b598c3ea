from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from kplc_sts.fields import ClockDateTimeField
from kplc_sts.formats import staff_datetime


class AuditLogImmutable(Exception):
    """Raised on any attempt to change or delete an audit event through the ORM."""


_IMMUTABLE = "The audit log is append-only: audit events cannot be changed or deleted."


class AuditEventQuerySet(models.QuerySet):
    # update() and delete() would bypass save()/delete(); bulk_update() goes through update().
    def update(self, **kwargs: object) -> int:
        raise AuditLogImmutable(_IMMUTABLE)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogImmutable(_IMMUTABLE)

    def _raw_delete(self, using: object) -> int:
        raise AuditLogImmutable(_IMMUTABLE)


class AuditEvent(models.Model):
    """One sensitive action: who did what to which object, when. Append-only: the model refuses to
    change or delete a row, and so does the database (a trigger, migration audit 0002)."""

    at = ClockDateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Non-user actors: "system", "partner:<id>", "ussd:+2547...", "command:load_vending_key".
    actor_label = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        base_manager_name = "objects"  # related-object and internal lookups get the guarded queryset too
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id", "-at"], name="audit_object_idx")]

    def __str__(self) -> str:
        who = self.actor_label or (str(self.actor) if self.actor_id else "system")
        return f"{staff_datetime(self.at)} {who} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditLogImmutable(_IMMUTABLE)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AuditLogImmutable(_IMMUTABLE)
