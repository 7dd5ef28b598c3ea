"""Vending: the partner sale that carries the key change codes, and the token services care and
USSD use. `vend` is the sale, `key_change` the codes, `reversals` what happens after a sale,
`management` the supervisors' management tokens. The pure vend rules are in `tokens.plan`, the
reads in `tokens.selectors`, the PostgreSQL statements in `tokens._pg`.
"""

from __future__ import annotations

from ..plan import VendFacts, VendPlan, meter_current_key, vend_plan
from ..selectors import mask_name, meter_last_tokens, meter_summary, meter_update_codes, vend_facts_load
from .codes_push import PushPreview, codes_push, codes_push_preview, sms_cost
from .key_change import key_change_set_issue, key_change_set_under_lock
from .management import management_token_issue
from .reversals import reversal_request_create, reversal_request_resolve, vend_get, vend_reprint, vend_sms_resend
from .vend import VendOutcome, vend_create, vend_response_body

__all__ = [
    "VendFacts",
    "VendOutcome",
    "VendPlan",
    "PushPreview",
    "codes_push",
    "codes_push_preview",
    "sms_cost",
    "key_change_set_issue",
    "key_change_set_under_lock",
    "management_token_issue",
    "mask_name",
    "meter_current_key",
    "meter_last_tokens",
    "meter_summary",
    "meter_update_codes",
    "reversal_request_create",
    "reversal_request_resolve",
    "vend_create",
    "vend_facts_load",
    "vend_get",
    "vend_plan",
    "vend_reprint",
    "vend_response_body",
    "vend_sms_resend",
]
