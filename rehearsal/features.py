"""Features a rehearsal can switch on with `--feature NAME`, to compare runs with and without them.

A feature gives the stack's processes its settings (`env`) and acts once each simulated morning in
the office lane (`on_day`), through the services the product uses. Register one in FEATURES; for
example issue 15's reminders would set its reminder settings in `env` and let beat send them, or
call its reminder service from `on_day`. The report names the features a run had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Feature(Protocol):
    name: str

    def env(self) -> dict[str, str]:
        """Environment for every process of the stack (settings the feature needs)."""
        ...

    def on_day(self, simulation: Any) -> None:
        """Called by the office each simulated morning at 07:00."""
        ...


FEATURES: dict[str, Callable[[], Feature]] = {}
