from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from campaigns.models import Batch, Campaign
from campaigns.texts import TemplateError, validate_reminder_template
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


class ReminderRuleForm(forms.Form):
    enabled = forms.BooleanField(label="Send reminders (beat sends every half hour, never 20:00-08:00)", required=False)
    notified_days = forms.IntegerField(
        label="Days after the notice with no purchase", min_value=1, max_value=60, initial=3
    )
    codes_days = forms.IntegerField(
        label="Days after the codes with no sign of update", min_value=1, max_value=60, initial=5
    )
    max_per_meter = forms.IntegerField(label="At most, reminders per meter", min_value=1, max_value=10, initial=2)
    template = forms.CharField(
        label="Reminder text",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="GSM-7, one SMS (160 characters at worst). Placeholders: {meter}, {name}, {deadline}. "
        "Must name the meter and give the *977# hint. No links.",
    )

    def clean_template(self) -> str:
        template = str(self.cleaned_data["template"]).strip()
        try:
            validate_reminder_template(template)
        except TemplateError as exc:
            raise forms.ValidationError(str(exc)) from None
        return template


class CodesPushForm(forms.Form):
    batch = forms.TypedChoiceField(label="Batch", required=False, coerce=int, empty_value=None)
    notified_days = forms.IntegerField(
        label="Notified at least this many days ago, still no codes",
        required=False,
        min_value=0,
        max_value=365,
    )

    def __init__(self, *args: Any, campaign: Campaign, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        batch = self.fields["batch"]
        assert isinstance(batch, forms.TypedChoiceField)
        batch.choices = [("", "Any batch")] + [
            (b.pk, f"Batch {b.number} ({b.get_status_display().lower()})")
            for b in campaign.batches.exclude(status=Batch.Status.CANCELLED).order_by("number")
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("batch") is None and cleaned.get("notified_days") is None and not self.errors:
            raise forms.ValidationError("Choose a batch, or the days since the notice (or both).")
        return cleaned

    def selected_batch(self) -> Batch | None:
        batch_id = self.cleaned_data.get("batch")
        return self.campaign.batches.filter(pk=batch_id).first() if batch_id else None
