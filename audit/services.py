"""The one way to write to the audit log."""

from __future__ import annotations

from typing import Any

from django.db import models

from kplc_sts.actors import actor_label as label_for

from .models import AuditEvent


def audit_record(
    *,
    action: str,
    actor: Any = None,
    actor_label: str = "",
    target: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    **details: Any,
) -> AuditEvent:
    """Record a sensitive action. `details` must never contain key bytes or token digits."""
    if target is not None:
        object_type = object_type or target._meta.label_lower
        object_id = object_id or target.pk
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_label=label_for(actor, actor_label),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details,
    )
