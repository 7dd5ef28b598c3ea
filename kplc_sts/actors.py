"""Who did something, as one label everywhere: "user:<username>", "partner:<id>", "ussd:<phone>",
"system". Audit rows, enrollment events, batches and care cases all use it."""

from __future__ import annotations

from typing import Any


def actor_label(actor: Any = None, explicit: str = "") -> str:
    """`explicit` when given (e.g. "ussd:+2547..."), else the staff user's label, else "system"."""
    if explicit:
        return explicit
    if getattr(actor, "is_authenticated", False):
        return f"user:{actor.get_username()}"
    return "system"
