"""The partner sale: the credit token, and the key change codes first when the meter needs them.

The vend is one database transaction: the vend row (whose unique (partner, reference) makes
retries and concurrent duplicates safe), the key change set when the meter needs one, the credit
token with a TID allocated under a row lock, the meter's and enrollment's state (through
campaigns), the partner's daily total and the customer SMS in the outbox. Nothing is half done;
an SMS is sent after commit.

Decoder keys are derived inside these functions and dropped when they return; neither they nor
token digits are ever logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from campaigns import rules
from campaigns import services as campaigns
from campaigns.models import Campaign, Enrollment
from kplc_sts import clock
from meters.models import Meter
from partners.models import Partner
from partners.services import partner_daily_reserve
from sms.services import message_queue

from .. import errors
from ..digests import token_digest_index_issued
from ..keys import MeterKey, meter_decoder_key
from ..models import IssuedToken, KeyChangeSet, TidCounter, Vend
from ..plan import VendFacts, VendPlan, vend_plan
from ..receipts import instruction_for, tokens_list, vend_sms_text
from ..selectors import statements, vend_by_reference, vend_facts_load
from ..stats import vend_minute_record
from ..sts import (
    AmountOutOfRange,
    StsError,
    credit_token,
    decode_amount,
    encode_amount,
    pan_from_meter_number,
    validate_meter_number,
)
from ..tariff import Quote, tariff_quote
from ..tids import tid_counter_lock, tid_next
from .key_change import key_change_set_under_lock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VendOutcome:
    """What to send back: the stored JSON text and status, and whether this was a replay."""

    status: int
    body: str
    replayed: bool
    vend: Vend


class _DuplicateInsert(Exception):
    """The (partner, reference) vend already exists: roll back and replay it."""


def _fingerprint(*, meter_number: str, amount: Decimal, customer_phone: str) -> str:
    canonical = json.dumps(
        {"meter_number": meter_number, "amount": str(amount), "customer_phone": customer_phone},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Vend, fingerprint: str) -> VendOutcome:
    if existing.fingerprint != fingerprint:
        raise errors.DuplicateReference(
            f"Reference {existing.reference!r} was already used for a different vend. "
            "Retry with the identical request to get the original response."
        )
    return VendOutcome(status=existing.response_status, body=vend_response_body(existing), replayed=True, vend=existing)


def vend_response_body(vend: Vend) -> str:
    """The response the vend first gave, byte for byte, while the replay window keeps it."""
    if not vend.response_body:
        raise errors.ResponseExpired(
            f"Reference {vend.reference!r} was sold on {clock.api_timestamp(vend.created_at)}; its response is "
            f"kept {settings.VEND_REPLAY_DAYS} days. Nothing was sold now."
        )
    return vend.response_body


def _stored_vend(partner: Partner, reference: str) -> Vend | None:
    return vend_by_reference(partner_id=partner.pk, reference=reference)


def _record_vend_minute(with_codes: bool) -> None:
    """Count the vend for the dashboard; runs after commit and never fails the vend."""
    try:
        vend_minute_record(with_codes=with_codes)
    except Exception:
        logger.warning("could not count a vend for the dashboard", exc_info=True)


def vend_create(
    *,
    partner: Partner,
    meter_number: str,
    amount: Decimal,
    reference: str,
    customer_phone: str = "",
    now: dt.datetime | None = None,
) -> VendOutcome:
    """Sell `amount` KES of electricity for `meter_number`, or replay the sale `reference` already made.

    The same partner and reference with the same request returns the first response byte for
    byte; with a different request it is DUPLICATE_REFERENCE. Refusals (limits, unknown meter)
    are not stored, so a corrected retry may reuse the reference; a refusal for a reference that
    was already sold replays the sale instead (limits may have changed since).

    Exactly one vend per (partner, reference), by the unique constraint: the vend row is inserted
    with ON CONFLICT DO NOTHING in the transaction's main statement, so a concurrent duplicate waits
    for the first to commit, inserts nothing, rolls back whatever it prepared and replays it. (On
    SQLite the IMMEDIATE transaction's writer lock makes the duplicate wait before it starts.)
    """
    try:
        meter_number = validate_meter_number(meter_number)
    except StsError:
        raise errors.InvalidMeterNumber("The meter number is not valid (11 or 13 digits, Luhn check).") from None
    amount = amount.quantize(Decimal("0.01"))
    fingerprint = _fingerprint(meter_number=meter_number, amount=amount, customer_phone=customer_phone)
    now = now or clock.now()
    facts = vend_facts_load(meter_number=meter_number, now=now)
    if facts is None:
        existing = _stored_vend(partner, reference)
        if existing is not None:
            return _replay(existing, fingerprint)  # a different meter: DUPLICATE_REFERENCE
        raise errors.UnknownMeter(f"No meter {meter_number} in the register.")
    try:
        with transaction.atomic():
            if amount < partner.min_vend_amount:
                raise errors.AmountTooLow(f"The smallest vend is KES {partner.min_vend_amount}.")
            if amount > partner.max_vend_amount:
                raise errors.AmountTooHigh(f"The largest vend is KES {partner.max_vend_amount}.")
            outcome = _vend_issue(
                partner=partner,
                facts=facts,
                amount=amount,
                reference=reference,
                fingerprint=fingerprint,
                customer_phone=customer_phone,
                now=now,
            )
            with_codes = outcome.vend.key_change_set_id is not None
            transaction.on_commit(lambda: _record_vend_minute(with_codes))
            return outcome
    except (errors.VendError, _DuplicateInsert, IntegrityError):
        # A retry of a stored sale replays it even if it would be refused now (limit lowered, meter
        # blocked); a concurrent duplicate replays the sale that won.
        existing = _stored_vend(partner, reference)
        if existing is None:
            raise
        return _replay(existing, fingerprint)


# --- The steps of one sale ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Credit:
    quote: Quote
    amount_field: int
    units: Decimal  # what the meter will credit: >= the units paid for


def _credit_for(amount: Decimal) -> _Credit:
    quote = tariff_quote(amount=amount)
    try:
        amount_field = encode_amount(quote.units)
    except AmountOutOfRange:
        raise errors.AmountTooHigh("The amount buys more units than one token can carry.") from None
    return _Credit(quote=quote, amount_field=amount_field, units=decode_amount(amount_field))


def _codes_for(*, facts: VendFacts, plan: VendPlan, pan: str) -> KeyChangeSet | None:
    """The key change set this vend carries (call with the new key's counter locked), if any."""
    if plan.resend is not None:
        return plan.resend
    if plan.campaign is None:
        return None
    if facts.latest_set is not None and facts.latest_set.campaign_id == plan.campaign.pk:
        return facts.latest_set  # made once, never changed: no need to read it again under the lock
    return key_change_set_under_lock(meter=facts.meter, campaign=plan.campaign, pan=pan)


def _credit_token_make(*, meter: Meter, key: MeterKey, pan: str, tid: int, credit: _Credit) -> str:
    decoder_key = meter_decoder_key(meter=meter, key=key, pan=pan)
    try:
        return credit_token(
            ea=meter.ea, decoder_key=decoder_key, tid=tid, amount_field=credit.amount_field, ken=key.ken
        )
    finally:
        del decoder_key


def _receipt(
    *,
    public_id: uuid.UUID,
    reference: str,
    meter: Meter,
    amount: Decimal,
    credit: _Credit,
    codes: list[str],
    digits: str,
    sms_queued: bool,
    created_at: dt.datetime,
) -> str:
    body = {
        "vend_id": str(public_id),
        "reference": reference,
        "meter_number": meter.meter_number,
        "amount": str(amount),
        "currency": "KES",
        "units": str(credit.units),
        "unit": "kWh",
        "tariff": credit.quote.as_dict(),
        "key_change": bool(codes),
        "tokens": tokens_list(codes=codes, credit_digits=digits),
        "instruction": instruction_for(codes),
        "sms_queued": sms_queued,
        "created_at": clock.api_timestamp(created_at),
    }
    return json.dumps(body, separators=(",", ":"))


def _vend_write(
    *, vend_row: dict[str, Any], counter: TidCounter, token_row: dict[str, Any], partner: Partner, meter: Meter
) -> tuple[Vend, IssuedToken]:
    """The vend, the counter's new TID and the credit token, in one statement on PostgreSQL."""
    # The token's TID is the counter's new value: the one statement writes both (tokens._pg).
    if token_row["tid"] != counter.last_tid:
        raise RuntimeError("the credit token's TID must be the counter's new TID")
    ids = statements.vend_rows_insert(vend=vend_row, counter=counter, token=token_row)
    if ids is None:
        raise _DuplicateInsert()
    vend = Vend(pk=ids[0], **vend_row)
    vend._state.adding = False
    vend.partner, vend.meter = partner, meter
    token = IssuedToken(pk=ids[1], vend=vend, **token_row)
    token._state.adding = False
    return vend, token


def _campaign_of(plan: VendPlan) -> Campaign | None:
    if plan.campaign is not None:
        return plan.campaign
    if plan.resend is not None:
        return Campaign.objects.filter(pk=plan.resend.campaign_id).first()  # rare: codes already out
    return None


def _vend_notify(*, vend: Vend, meter: Meter, plan: VendPlan, codes: list[str], digits: str) -> None:
    recipient = vend.customer_phone or meter.phone
    if not recipient:
        return
    campaign = _campaign_of(plan) if codes else None
    body = vend_sms_text(
        meter=meter, campaign=campaign, codes=codes, token=digits, units=vend.units, amount=vend.amount
    )
    message_queue(
        recipient=recipient,
        body=body,
        purpose="codes" if codes else "token",
        meter=meter,
        batch_id=plan.enrollment.batch_id if plan.enrollment is not None else None,
        vend_id=vend.pk,
    )


def _vend_settle(*, partner: Partner, facts: VendFacts, plan: VendPlan, amount: Decimal, now: dt.datetime) -> None:
    """Last, the updates of shared counter rows (campaign and batch funnel counters, the partner's
    daily total), so those hot rows stay locked only for the very end of the transaction."""
    enrollment: Enrollment | None = plan.enrollment
    if plan.campaign is not None and rules.codes_issue_changes(
        key_state=facts.meter.key_state, enrollment_state=enrollment.state if enrollment is not None else None
    ):
        campaigns.meter_mark_codes_issued(
            meter=facts.meter,
            campaign=plan.campaign,
            enrollment=enrollment,
            origin=Enrollment.Origin.TILL,
            actor_label=f"partner:{partner.pk}",
            at=now,
        )
    elif enrollment is not None and plan.campaign is not None:
        # A purchase under the new key after the codes: evidence of update once its grace period
        # passes with no complaint (campaigns decides; one statement, only when it can change).
        campaigns.enrollment_new_key_purchase(enrollment=enrollment, at=now)
    if not partner_daily_reserve(partner=partner, amount=amount, day=clock.localdate(now)):
        raise errors.DailyLimitExceeded(
            f"This vend would take the partner past its daily limit of KES {partner.daily_limit}."
        )


def _vend_issue(
    *,
    partner: Partner,
    facts: VendFacts,
    amount: Decimal,
    reference: str,
    fingerprint: str,
    customer_phone: str,
    now: dt.datetime,
) -> VendOutcome:
    meter = facts.meter
    plan = vend_plan(facts, now=now)
    credit = _credit_for(amount)
    pan = pan_from_meter_number(meter.meter_number)
    counter = tid_counter_lock(meter=meter, key=plan.key)
    key_change_set = _codes_for(facts=facts, plan=plan, pan=pan)
    codes = list(key_change_set.codes) if key_change_set is not None else []
    tid = tid_next(counter=counter, key=plan.key, now=now)
    digits = _credit_token_make(meter=meter, key=plan.key, pan=pan, tid=tid, credit=credit)

    public_id, created_at = uuid.uuid4(), clock.now()
    response_body = _receipt(
        public_id=public_id, reference=reference, meter=meter, amount=amount, credit=credit, codes=codes,
        digits=digits, sms_queued=bool(customer_phone or meter.phone), created_at=created_at,
    )  # fmt: skip
    counter.last_tid, counter.updated_at = tid, created_at
    vend, token = _vend_write(
        vend_row={
            "public_id": public_id,
            "partner_id": partner.pk,
            "reference": reference,
            "fingerprint": fingerprint,
            "meter_id": meter.pk,
            "amount": amount,
            "units": credit.units,
            "customer_phone": customer_phone,
            "key_change_set_id": key_change_set.pk if key_change_set is not None else None,
            "response_status": 201,
            "response_body": response_body,
            "created_at": created_at,
        },
        counter=counter,
        token_row={
            "meter_id": meter.pk,
            "kind": IssuedToken.Kind.CREDIT,
            "token_class": 0,
            "subclass": 0,
            "sgc": plan.key.sgc,
            "krn": plan.key.krn,
            "base_date": plan.key.base_date,
            "tid": tid,
            "units": credit.units,
            "value": None,
            "digits": digits,
            "issued_at": created_at,
            "issued_by": f"partner:{partner.pk}",
        },
        partner=partner,
        meter=meter,
    )
    token_digest_index_issued(token=token)
    _vend_notify(vend=vend, meter=meter, plan=plan, codes=codes, digits=digits)
    _vend_settle(partner=partner, facts=facts, plan=plan, amount=amount, now=now)
    return VendOutcome(status=201, body=response_body, replayed=False, vend=vend)
