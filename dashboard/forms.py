from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from campaigns.models import Campaign
from kplc_sts import clock
from kplc_sts.formats import staff_datetime

from .services import meter_regions

# A batch may be scheduled for "now": a minute of slack covers the time spent filling the form.
PAST_GRACE = dt.timedelta(minutes=1)
MAX_BATCH_SIZE = 1_000_000


class ScheduleBatchForm(forms.Form):
    regions = forms.MultipleChoiceField(
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="None selected: every region.",
    )
    sgcs = forms.MultipleChoiceField(
        label="Supply group codes",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 4}),
        help_text="None selected: every supply group of the campaign.",
    )
    limit = forms.IntegerField(
        label="Number of meters",
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        help_text="At most this many meters not yet enrolled, in register order.",
    )
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    time = forms.TimeField(widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    override_capacity = forms.BooleanField(
        label="Override the daily capacity for this batch (recorded in the audit log)",
        required=False,
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        regions, sgcs = self.fields["regions"], self.fields["sgcs"]
        assert isinstance(regions, forms.MultipleChoiceField) and isinstance(sgcs, forms.MultipleChoiceField)
        regions.choices = [(region, region) for region in meter_regions()]
        sgcs.choices = [(sgc, sgc) for sgc in campaign.sgcs]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        day, time = cleaned.get("date"), cleaned.get("time")
        if day is not None and time is not None:
            scheduled_at = timezone.make_aware(dt.datetime.combine(day, time))
            if scheduled_at < clock.now() - PAST_GRACE:
                self.add_error(
                    "date",
                    f"{staff_datetime(scheduled_at)} is in the past: notices cannot be sent back in time. "
                    "Pick today (a later time) or a future date.",
                )
            cleaned["scheduled_at"] = scheduled_at
        return cleaned
