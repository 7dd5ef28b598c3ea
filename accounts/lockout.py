"""django-axes lockouts in the audit log, and the supervisor's unlock."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import audit_record

UNLOCK_PERMISSION = "axes.delete_accessattempt"


def lockout_audit(
    sender: Any, request: Any = None, username: str | None = None, ip_address: str | None = None, **_: Any
) -> None:
    """axes.signals.user_locked_out: who was locked out, from where (the password is never recorded)."""
    audit_record(
        action="auth.locked_out",
        actor_label=f"login:{(username or '')[:80]}",
        object_type="auth.user",
        object_id=(username or "")[:64],
        ip_address=ip_address or "",
        path=getattr(request, "path", ""),
    )


def attempts_unlock(*, attempts: Any, actor: Any) -> int:
    """Delete the given axes AccessAttempt rows (which is what unlocking is) and audit each one."""
    unlocked = 0
    with transaction.atomic():
        for attempt in attempts:
            audit_record(
                action="auth.unlocked",
                actor=actor,
                object_type="auth.user",
                object_id=(attempt.username or "")[:64],
                ip_address=attempt.ip_address or "",
                failures=attempt.failures_since_start,
            )
            attempt.delete()
            unlocked += 1
    return unlocked
