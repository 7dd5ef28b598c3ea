"""What a partner's receipt shows: the tokens to type, in order, with their labels."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from campaigns.models import Campaign
from campaigns.texts import vend_sms_render
from meters.models import Meter

from .sts import format_token

# One name for the key change codes on every channel a customer or an agent reads (receipt, API,
# SMS, USSD, the care desk's decoder): "Update code 1", "Update code 2", then the "Token". The kinds
# are the API's machine names, kept as partners parse them.
CODE_KINDS = {1: "reset_code"}


def code_label(position: int) -> tuple[str, str]:
    """(kind, label) of the key change code at `position`: a 128-bit key takes four codes, and a
    64-bit key changing supply group three."""
    return CODE_KINDS.get(position, "update_code"), f"Update code {position}"


TOKEN_LABEL = "Token"  # noqa: S105 - the receipt label, not a secret


def tokens_list(*, codes: list[str], credit_digits: str) -> list[dict[str, Any]]:
    """The ordered list of what to type: the key change codes, then the credit token."""
    items: list[dict[str, Any]] = []
    for position, digits in enumerate(codes, start=1):
        kind, label = code_label(position)
        items.append({"position": position, "kind": kind, "label": label, "digits": digits})
    items.append({"position": len(codes) + 1, "kind": "credit", "label": TOKEN_LABEL, "digits": credit_digits})
    for item in items:
        item["display"] = format_token(item["digits"])
    return items


def vend_sms_text(
    *, meter: Meter, campaign: Campaign | None, codes: list[str], token: str, units: Decimal, amount: Decimal
) -> str:
    """The customer SMS of a sale (first sent or resent): the campaign's codes template when the
    sale carried its codes, else the token alone."""
    return vend_sms_render(
        template=campaign.codes_template if campaign is not None and codes else None,
        meter_number=meter.meter_number,
        name=meter.customer_name,
        codes=codes,
        token=token,
        units=f"{units} kWh",
        amount=str(amount),
    )


def instruction_for(codes: list[str]) -> str:
    if not codes:
        return "Type the token into the meter and press Enter."
    steps = ", then ".join(code_label(n)[1] for n in range(1, len(codes) + 1))
    return (
        f"Load any unused old tokens first. Then type, in this order and waiting for each to be accepted: "
        f"{steps}, then the Token."
    )
