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


def _command(simulation: Any, *argv: str) -> str:
    """Run a management command as the stack's processes run (its broker, gateway and clock), so
    the SMS it writes go through the workers to the gateway; returns its last line."""
    import subprocess
    import sys

    from django.conf import settings

    done = subprocess.run(  # noqa: S603 - our own interpreter, our own command
        [sys.executable, "manage.py", *argv],
        cwd=settings.BASE_DIR,
        env=simulation.stack.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


class Reminders:
    """The campaign's reminder rule on from the first morning (defaults: 3 days after the notice
    with no purchase, 5 after the codes with no sign of update, at most 2 per meter), and each day
    at 10:00 the office runs `send_reminders` (beat's own runs are switched off, so the play ends
    when its last day does: no reminder keeps the outbox busy while it drains)."""

    name = "reminders"

    def env(self) -> dict[str, str]:
        return {"ENDGAME_REMINDERS_BY_BEAT": "off"}

    def on_day(self, simulation: Any) -> None:
        from campaigns.models import DEFAULT_REMINDER_TEMPLATE
        from campaigns.selectors import reminder_rule_for
        from campaigns.services import reminder_rule_save
        from kplc_sts import clock

        if not reminder_rule_for(simulation.campaign).enabled:
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
        # on_day runs at 07:00, still quiet hours: the reminders go out at 10:00.
        simulation.at(clock.timestamp() + 3 * 3600, simulation.office, self.send, simulation)

    def send(self, simulation: Any) -> None:
        simulation.reminder_runs.append(
            _command(simulation, "send_reminders", "--campaign", str(simulation.campaign.pk))
        )


class CodesPush:
    """Each morning the manager sends the codes by SMS to the meters notified 7 days ago or more
    with still no codes (what Kenya Power said it would do "in some cases"), with the command."""

    name = "codes-push"
    notified_days = 7

    def env(self) -> dict[str, str]:
        return {}

    def on_day(self, simulation: Any) -> None:
        simulation.push_runs.append(
            _command(
                simulation, "push_codes", "--campaign", str(simulation.campaign.pk),
                "--notified-days", str(self.notified_days),
            )
        )  # fmt: skip


FEATURES["reminders"] = Reminders
FEATURES["codes-push"] = CodesPush
