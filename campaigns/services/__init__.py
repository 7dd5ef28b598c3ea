"""Campaign state changes: one service per change, counters and segment aggregates bumped in step.

`campaigns` is the only writer of enrollment states, of `Meter.status` and `Meter.key_state`, of
the funnel and daily counters and of the segment aggregates. The rules they follow are data in
`campaigns.rules`; reads are in `campaigns.selectors`.
"""

from __future__ import annotations

from ..errors import CampaignError, CapacityExceeded, EnrollmentStateError
from ..selectors import batch_preview, campaign_day_load, enrollment_for_meter
from .batches import (
    batch_cancel,
    batch_notices_create,
    batch_pause,
    batch_resume,
    batch_schedule,
    batches_open_finished,
    batches_start_due,
)
from .campaigns import campaign_create
from .endgame import (
    enrollment_codes_push_claim,
    enrollment_new_key_purchase,
    meter_report_complaint,
    pushed_codes_delivered,
    reminder_rule_save,
    reminders_send,
    reminders_send_all,
    updates_infer,
)
from .enrollments import (
    enrollment_confirm,
    enrollment_flag_non_compliant,
    enrollment_mark_codes_issued,
    enrollment_mark_failed,
    enrollment_mark_notified,
    meter_mark_codes_issued,
    meter_mark_codes_rejected,
    meter_mark_confirmed,
    meter_mark_non_compliant,
    meter_state_set,
    notices_sent,
)
from .segments import meter_segments_refresh
from .targets import campaign_target_get, campaign_target_refresh, campaign_targets_refresh, register_recount

__all__ = [
    "CampaignError",
    "CapacityExceeded",
    "EnrollmentStateError",
    "batch_cancel",
    "batch_notices_create",
    "batch_pause",
    "batch_preview",
    "batch_resume",
    "batch_schedule",
    "batches_open_finished",
    "batches_start_due",
    "campaign_create",
    "campaign_day_load",
    "campaign_target_get",
    "campaign_target_refresh",
    "campaign_targets_refresh",
    "enrollment_codes_push_claim",
    "enrollment_confirm",
    "enrollment_flag_non_compliant",
    "enrollment_for_meter",
    "enrollment_mark_codes_issued",
    "enrollment_mark_failed",
    "enrollment_mark_notified",
    "enrollment_new_key_purchase",
    "meter_mark_codes_issued",
    "meter_mark_codes_rejected",
    "meter_mark_confirmed",
    "meter_mark_non_compliant",
    "meter_report_complaint",
    "meter_segments_refresh",
    "meter_state_set",
    "notices_sent",
    "pushed_codes_delivered",
    "register_recount",
    "reminder_rule_save",
    "reminders_send",
    "reminders_send_all",
    "updates_infer",
]
