"""Model fields shared by the apps."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models

from kplc_sts import clock


class ClockDateTimeField(models.DateTimeField):
    """A DateTimeField whose `auto_now` / `auto_now_add` read `kplc_sts.clock`, not the wall clock,
    so a rehearsal's rows carry the accelerated clock's instants like every other timestamp."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        if self.auto_now or (self.auto_now_add and add):
            value: dt.datetime = clock.now()
            setattr(model_instance, self.attname, value)
            return value
        return super().pre_save(model_instance, add)
