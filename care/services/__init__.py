"""Customer care: cases, the desk's actions on a meter, and the plain-words token decoder.

Every action that sends, reveals or changes something is recorded with `audit_record`. Token
digits never go into the audit log, a log line or an exception message. A meter's campaign state
is changed through `campaigns.services`, never here.
"""

from __future__ import annotations

from tokens.digests import TokenMatch, token_digest, token_digits_clean, token_find

from ..explain import Explanation, Verdict, token_explain
from .cases import CareError, care_case_assign, care_case_close, care_case_comment, care_case_open
from .meters import (
    meter_codes_send,
    meter_confirm,
    meter_flag_non_compliant,
    meter_last_token_send,
    token_digits_reveal,
)

__all__ = [
    "CareError",
    "Explanation",
    "TokenMatch",
    "Verdict",
    "care_case_assign",
    "care_case_close",
    "care_case_comment",
    "care_case_open",
    "meter_codes_send",
    "meter_confirm",
    "meter_flag_non_compliant",
    "meter_last_token_send",
    "token_digest",
    "token_digits_clean",
    "token_digits_reveal",
    "token_explain",
    "token_find",
]
