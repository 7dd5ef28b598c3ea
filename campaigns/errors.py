"""What the campaign services refuse, with a message a manager or agent can read."""

from __future__ import annotations

import datetime as dt


class CampaignError(ValueError):
    pass


class CapacityExceeded(CampaignError):
    def __init__(self, *, day: dt.date, load: int, adding: int, capacity: int) -> None:
        self.day, self.load, self.adding, self.capacity = day, load, adding, capacity
        super().__init__(
            f"{day}: {load} meters already scheduled + {adding} would exceed the daily capacity of {capacity}"
        )


class EnrollmentStateError(CampaignError):
    pass
