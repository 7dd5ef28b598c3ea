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


# --- Issue 15: the endgame -----------------------------------------------------------------------------

# The simulated customer tells a reminder from a notice by these words of the default template.
REMINDER_MARK = "must be updated by"


class Reminders:
    """The campaign's reminder rule on from the first morning (defaults: 3 days after the notice
    with no purchase, 5 after the codes with no sign of update, at most 2 per meter); beat sends."""

    name = "reminders"

    def env(self) -> dict[str, str]:
        return {}

    def on_day(self, simulation: Any) -> None:
        from campaigns.models import DEFAULT_REMINDER_TEMPLATE
        from campaigns.selectors import reminder_rule_for
        from campaigns.services import reminder_rule_save

        if reminder_rule_for(simulation.campaign).enabled:
            return
        assert REMINDER_MARK in DEFAULT_REMINDER_TEMPLATE
        reminder_rule_save(
            campaign=simulation.campaign,
            enabled=True,
            notified_days=3,
            codes_days=5,
            max_per_meter=2,
            template=DEFAULT_REMINDER_TEMPLATE,
            actor=simulation.manager,
        )


class CodesPush:
    """Each morning the manager sends the codes by SMS to the meters notified 7 days ago or more
    with still no codes (what Kenya Power said it would do "in some cases")."""

    name = "codes-push"
    notified_days = 7

    def env(self) -> dict[str, str]:
        return {}

    def on_day(self, simulation: Any) -> None:
        from tokens.services import codes_push

        codes_push(campaign=simulation.campaign, notified_days=self.notified_days, actor=simulation.manager)


FEATURES["reminders"] = Reminders
FEATURES["codes-push"] = CodesPush
