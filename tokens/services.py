"""Vending: the partner sale that carries the key change codes, and the token services care and USSD use.

The vend is one database transaction: the vend row (whose unique (partner, reference) makes
retries and concurrent duplicates safe), the key change set when the meter needs one, the credit
token with a TID allocated under a row lock, the meter's and enrollment's state, the partner's
daily total and the customer SMS in the outbox. Nothing is half done; an SMS is sent after commit.

Decoder keys are derived inside these functions and dropped when they return; neither they nor
token digits are ever logged.

The hot path's statements are written for PostgreSQL (production, CI); on other databases (SQLite:
the embedded demo and `make test`) the same steps run as portable statements, chosen by
`_postgres()`. Only the statements differ: the rules, codes, TIDs and responses are one code path,
and tests/vending/test_portable.py runs one scenario through both and compares the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from audit.services import audit_record
from meters.models import Meter
from partners.models import Partner
from partners.services import partner_daily_reserve

from . import errors
from .custody import VendingKeyError, VendingKeyNotFound, vending_key_get
from .models import IssuedToken, KeyChangeSet, ReversalRequest, TidCounter, Vend, VendingKey
from .sts import (
    AmountOutOfRange,
    KeyExpired,
    StsError,
    TidOutOfRange,
    credit_token,
    decode_amount,
    derive_decoder_key,
    encode_amount,
    key_change_tokens,
    management_token,
    next_tid,
    pan_from_meter_number,
    tid_from_datetime,
    validate_meter_number,
)
from .tariff import tariff_quote

logger = logging.getLogger(__name__)

BLOCKED_STATUSES = (Meter.Status.BLOCKED, Meter.Status.RETIRED)
CODE_LABELS = {1: ("reset_code", "Reset code"), 2: ("update_code", "Update code")}
TOKEN_LABEL = "Token"  # noqa: S105 - the receipt label, not a secret


# --- Keys and plans ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterKey:
    """One decoder key of a meter, as the parameters it is derived from (never the key itself)."""

    sgc: str
    krn: int
    base_date: int
    ken: int


@dataclass(frozen=True)
class VendPlan:
    """What a vend for this meter must carry: the key the credit token is made under, and the
    campaign whose key change codes go first (None when the meter needs no codes)."""

    key: MeterKey
    campaign: Any = None
    enrollment: Any = None


def _wall_clock(now: datetime) -> datetime:
    """TIDs count wall-clock minutes; the vending system's wall clock is Nairobi time."""
    return timezone.localtime(now).replace(tzinfo=None)


def _key_usable(key: MeterKey, now: datetime) -> bool:
    """Whether a credit token made now under `key` has a TID that fits and is not past the KEN."""
    try:
        tid = tid_from_datetime(_wall_clock(now), key.base_date)
    except TidOutOfRange:
        return False
    return (tid >> 16) <= key.ken


# Sentinel for "not preloaded: query it": the vend's fast path loads the meter, its open enrollment and
# its latest key change set in one statement (see _meter_for_vend) and passes them down.
_QUERY: Any = object()


def _latest_key_change_set(meter: Meter) -> KeyChangeSet | None:
    """The newest key change set from the meter's register key (what moved it, or is moving it, off that key)."""
    return (
        KeyChangeSet.objects.filter(meter=meter, from_sgc=meter.sgc, from_krn=meter.krn)
        .order_by("-created_at", "-id")
        .first()
    )


def meter_current_key(meter: Meter, *, latest_set: Any = _QUERY) -> MeterKey:
    """The key the meter holds.

    A meter confirmed on a campaign's new key whose register row still shows the old key (the
    campaign service leaves the register as loaded) holds the key its last key change set moved
    it to. A register row that already shows the new key has no key change set from that key,
    so it is taken as it is.
    """
    key = MeterKey(sgc=meter.sgc, krn=meter.krn, base_date=meter.base_date, ken=meter.ken)
    if meter.key_state == Meter.KeyState.CONFIRMED:
        moved = _latest_key_change_set(meter) if latest_set is _QUERY else latest_set
        if moved is not None:
            key = MeterKey(sgc=moved.to_sgc, krn=moved.to_krn, base_date=moved.to_base_date, ken=moved.to_ken)
    return key


def _campaign_key(meter: Meter, campaign: Any) -> MeterKey:
    return MeterKey(sgc=meter.sgc, krn=campaign.to_krn, base_date=campaign.new_base_date, ken=campaign.new_ken)


# Enrollment states in which a vend still carries the codes. A "failed" enrollment (the customer
# reported the codes rejected) still gets the same codes again.
CODES_DUE_STATES = ("scheduled", "notified", "codes_issued", "failed")


def _open_enrollment(meter: Meter, enrollment: Any = _QUERY) -> Any:
    """The meter's enrollment in an open batch that is not yet confirmed, via the campaign service."""
    if enrollment is _QUERY:
        from campaigns.services import enrollment_for_meter

        enrollment = enrollment_for_meter(meter)
    if enrollment is None or enrollment.state not in CODES_DUE_STATES:
        return None
    return enrollment


def _campaign_covering(meter: Meter) -> Any:
    """An active campaign that moves this meter's supply group off its current key revision."""
    from campaigns.models import Campaign

    # sgcs is a JSON list; there are a handful of campaigns, so filter them here (portable to SQLite).
    for campaign in Campaign.objects.filter(status=Campaign.Status.ACTIVE, from_krn=meter.krn).order_by("-id"):
        if meter.sgc in campaign.sgcs:
            return campaign
    return None


def vend_plan(meter: Meter, *, now: datetime, enrollment: Any = _QUERY, latest_set: Any = _QUERY) -> VendPlan:
    """Decide what a vend for `meter` carries at `now`, or raise the VendError a partner should see.

    `enrollment` (campaigns.services.enrollment_for_meter's answer) and `latest_set` (the newest key
    change set from the register key) may be passed in when already loaded.
    """
    if meter.status in BLOCKED_STATUSES:
        raise errors.MeterBlocked(f"Meter {meter.meter_number} is {meter.get_status_display().lower()}.")
    current = meter_current_key(meter, latest_set=latest_set)
    if meter.key_state == Meter.KeyState.CONFIRMED:
        if _key_usable(current, now):
            return VendPlan(key=current)
        register = MeterKey(sgc=meter.sgc, krn=meter.krn, base_date=meter.base_date, ken=meter.ken)
        campaign = _campaign_covering(meter) if current == register else None
        if campaign is None:
            raise errors.KeyChangeRequired(
                f"Meter {meter.meter_number}'s key can no longer carry tokens and no key change is set up."
            )
        # Confirmed although no codes ever moved it off the register's (dead) key: care or the
        # customer confirmed an enrollment whose codes we never issued. The meter can only be on
        # that key, so it gets the codes; were it somehow on the new key, it would reject them
        # and still take the credit token.
        return VendPlan(key=_campaign_key(meter, campaign), campaign=campaign)
    if meter.key_state == Meter.KeyState.NON_COMPLIANT:
        if _key_usable(current, now):
            return VendPlan(key=current)
        raise errors.MeterNonCompliant(
            f"Meter {meter.meter_number} cannot take the update codes and is waiting for a field visit."
        )

    enrollment = _open_enrollment(meter, enrollment)
    campaign = enrollment.campaign if enrollment is not None else None
    if campaign is None and meter.key_state == Meter.KeyState.CODES_ISSUED:
        # Codes already went out (e.g. after the rollover, outside any batch): keep sending the same ones.
        issued = _latest_key_change_set(meter) if latest_set is _QUERY else latest_set
        campaign = issued.campaign if issued is not None else None
    if campaign is None and not _key_usable(current, now):
        # Past the rollover the old key cannot carry a credit token: only the codes can save this sale.
        campaign = _campaign_covering(meter)
        if campaign is None:
            raise errors.KeyChangeRequired(
                f"Meter {meter.meter_number} is on a key that can no longer carry tokens "
                f"and no update campaign covers supply group {meter.sgc}."
            )
    if campaign is None:
        return VendPlan(key=current)
    return VendPlan(key=_campaign_key(meter, campaign), campaign=campaign, enrollment=enrollment)


# Unwrapped vending keys, kept in this process for a short while: unwrapping costs a query and an
# AES-GCM setup per token otherwise (research B.7: unwrap once per process or batch). A replaced
# key is dropped at once in this process (signal) and within VENDING_KEY_TTL in the others.
VENDING_KEY_TTL = 60.0
_vending_keys: dict[tuple[str, int], tuple[float, bytes]] = {}


def _vending_key(sgc: str, krn: int) -> bytes:
    cached = _vending_keys.get((sgc, krn))
    if cached is not None and time.monotonic() - cached[0] < VENDING_KEY_TTL:
        return cached[1]
    key = vending_key_get(sgc=sgc, krn=krn)
    _vending_keys[(sgc, krn)] = (time.monotonic(), key)
    return key


def vending_key_cache_clear(**_kwargs: Any) -> None:
    _vending_keys.clear()


post_save.connect(vending_key_cache_clear, sender=VendingKey, dispatch_uid="tokens.vending_key_cache_clear")
post_delete.connect(vending_key_cache_clear, sender=VendingKey, dispatch_uid="tokens.vending_key_cache_clear_del")


def meter_decoder_key(*, meter: Meter, key: MeterKey, pan: str | None = None) -> bytes:
    """The meter's decoder key under `key` (derived now, never stored: drop it after use).

    Raises errors.VendingUnavailable when the vending key for the key's supply group and revision
    is not loaded or cannot be unwrapped. `pan` may be passed when the caller already has it.
    """
    try:
        vending_key = _vending_key(key.sgc, key.krn)
    except VendingKeyNotFound:
        raise errors.VendingUnavailable(f"Vending is not set up for supply group {key.sgc} key {key.krn}.") from None
    except VendingKeyError:
        logger.error("vending key SGC %s KRN %s failed to unwrap", key.sgc, key.krn)
        raise errors.VendingUnavailable("Vending is temporarily unavailable.") from None
    return derive_decoder_key(
        dkga=meter.dkga,
        vending_key=vending_key,
        pan=pan or pan_from_meter_number(meter.meter_number),
        sgc=key.sgc,
        ti=meter.ti,
        krn=key.krn,
        kt=meter.kt,
        base_date=key.base_date,
        ea=meter.ea,
    )


def _postgres() -> bool:
    """Whether the vend's PostgreSQL statements apply (LATERAL joins, data-modifying CTEs, FOR UPDATE).

    Other databases (SQLite for the demo and `make test`) run portable statements with the same
    effect; the business rules around them are the same code either way."""
    return connection.vendor == "postgresql"


_COUNTER_TABLE = TidCounter._meta.db_table
_COUNTER_SQL = f"SELECT id, last_tid FROM {_COUNTER_TABLE} WHERE meter_id = %s AND sgc = %s AND krn = %s"  # noqa: S608
_LOCK_COUNTER_SQL = f"{_COUNTER_SQL} FOR UPDATE"


def _lock_counter(meter: Meter, key: MeterKey) -> TidCounter:
    """Lock (creating if needed) the meter's TID counter for `key`: every token to this meter and key
    and every key change set to it is made while holding this row lock.

    Returns an instance carrying only id and last_tid (a row lock, not a record to save)."""
    params = [meter.pk, key.sgc, key.krn]
    # SQLite has no row locks: its transactions begin IMMEDIATE (settings), so the writer lock taken
    # at BEGIN already serialises every vend; a plain SELECT is the same guarantee there.
    select = _LOCK_COUNTER_SQL if connection.features.has_select_for_update else _COUNTER_SQL
    with connection.cursor() as cursor:
        cursor.execute(select, params)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                f"INSERT INTO {_COUNTER_TABLE} (meter_id, sgc, krn, base_date, last_tid, updated_at) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, NULL, %s) ON CONFLICT (meter_id, sgc, krn) DO NOTHING",
                [*params, key.base_date, connection.ops.adapt_datetimefield_value(timezone.now())],
            )
            cursor.execute(select, params)
            row = cursor.fetchone()
    return TidCounter(pk=row[0], meter_id=meter.pk, sgc=key.sgc, krn=key.krn, last_tid=row[1])


def _next_tid(counter: TidCounter, key: MeterKey, now: datetime) -> int:
    """The next TID for the locked `counter` (not yet written back)."""
    try:
        return next_tid(counter.last_tid, _wall_clock(now), key.base_date, key.ken)
    except (TidOutOfRange, KeyExpired):
        raise errors.KeyChangeRequired("The meter's key can no longer carry tokens.") from None


def _allocate_tid(counter: TidCounter, key: MeterKey, now: datetime) -> int:
    tid = _next_tid(counter, key, now)
    TidCounter.objects.filter(pk=counter.pk).update(last_tid=tid, updated_at=timezone.now())
    counter.last_tid = tid
    return tid


def _key_change_set_under_lock(meter: Meter, campaign: Any, pan: str) -> KeyChangeSet:
    """The meter's codes for `campaign`, made once. Call with the new key's counter locked."""
    existing = KeyChangeSet.objects.filter(meter=meter, campaign=campaign).first()
    if existing is not None:
        return existing
    old = MeterKey(sgc=meter.sgc, krn=meter.krn, base_date=meter.base_date, ken=meter.ken)
    new = _campaign_key(meter, campaign)
    codes = key_change_tokens(
        ea=meter.ea,
        old_key=meter_decoder_key(meter=meter, key=old, pan=pan),
        new_key=meter_decoder_key(meter=meter, key=new, pan=pan),
        new_krn=new.krn,
        new_kt=meter.kt,
        new_ti=meter.ti,
        new_ken=new.ken,
        rollover=campaign.rollover,
        new_sgc=new.sgc if meter.ea == "11" else None,  # only 128-bit key sets carry the SGC
    )
    return KeyChangeSet.objects.create(
        meter=meter,
        campaign=campaign,
        from_sgc=old.sgc,
        from_krn=old.krn,
        from_base_date=old.base_date,
        to_sgc=new.sgc,
        to_krn=new.krn,
        to_base_date=new.base_date,
        to_ken=new.ken,
        rollover=campaign.rollover,
        codes=list(codes),
    )


def _codes_issued(meter: Meter, enrollment: Any, actor_label: str) -> None:
    """Move the enrollment (through the campaign service) and the meter to "codes issued", once."""
    if enrollment is not None and enrollment.state in ("scheduled", "notified"):
        from campaigns.services import enrollment_mark_codes_issued

        enrollment_mark_codes_issued(enrollment=enrollment, actor_label=actor_label)
    if meter.key_state == Meter.KeyState.OLD_KEY:
        # Also for meters outside any batch (codes sent after the rollover); a no-op if done above.
        Meter.objects.filter(pk=meter.pk, key_state=Meter.KeyState.OLD_KEY).update(
            key_state=Meter.KeyState.CODES_ISSUED, updated_at=timezone.now()
        )


# --- Presentation shared by the API, SMS, USSD and care -----------------------------------------------


def token_display(digits: str) -> str:
    """20 digits grouped 4-4-4-4-4 with dashes, as printed on receipts."""
    return "-".join(digits[i : i + 4] for i in range(0, 20, 4))


def tokens_list(*, codes: list[str], credit_digits: str) -> list[dict[str, Any]]:
    """The ordered list of what to type: the key change codes, then the credit token."""
    items = []
    for position, digits in enumerate(codes, start=1):
        kind, label = CODE_LABELS.get(position, ("update_code", f"Update code {position}"))
        items.append({"position": position, "kind": kind, "label": label, "digits": digits})
    items.append({"position": len(codes) + 1, "kind": "credit", "label": TOKEN_LABEL, "digits": credit_digits})
    for item in items:
        item["display"] = token_display(item["digits"])
    return items


def instruction_for(codes: list[str]) -> str:
    if not codes:
        return "Type the token into the meter and press Enter."
    steps = ", then ".join(f"{label} ({n})" for n, label in ((1, "Reset code"), (2, "Update code")))
    return (
        f"Load any unused old tokens first. Then type, in this order and waiting for each to be accepted: "
        f"{steps}, then the Token ({len(codes) + 1})."
    )


def _sms_body(*, meter: Meter, campaign: Any, codes: list[str], credit: str, units: Decimal, amount: Decimal) -> str:
    if codes and campaign is not None and len(codes) == 2:
        try:
            return campaign.codes_template.format(
                meter=meter.meter_number,
                code1=token_display(codes[0]),
                code2=token_display(codes[1]),
                token=token_display(credit),
                units=f"{units} kWh",
            )
        except (KeyError, IndexError, ValueError):
            logger.warning("campaign %s has an unusable codes template; using the default", campaign.pk)
    if codes:
        numbered = " ".join(f"{n}) {token_display(c)}" for n, c in enumerate([*codes, credit], start=1))
        return f"KPLC {meter.meter_number} type in order: {numbered} ({units} kWh). Lost? *977#"
    return f"KPLC {meter.meter_number} token: {token_display(credit)} {units} kWh KES {amount}. Lost? *977#"


def _queue_sms(*, vend: Vend, meter: Meter, body: str, with_codes: bool, batch: Any = None) -> bool:
    recipient = vend.customer_phone or meter.phone
    if not recipient:
        return False
    from sms.services import message_queue

    message_queue(
        recipient=recipient,
        body=body,
        purpose="codes" if with_codes else "token",
        meter=meter,
        batch=batch,
        vend_id=vend.pk,
    )
    return True


# --- The vend -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VendOutcome:
    """What to send back: the stored JSON text and status, and whether this was a replay."""

    status: int
    body: str
    replayed: bool
    vend: Vend


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
    return VendOutcome(status=existing.response_status, body=existing.response_body, replayed=True, vend=existing)


def _stored_vend(partner: Partner, reference: str) -> Vend | None:
    return Vend.objects.filter(partner=partner, reference=reference).first()


# --- The vend's statements ---------------------------------------------------------------------------
# The vend is the hot path (hundreds per second): its statements are written out once here rather
# than compiled by the ORM per request. Column lists come from the models, so a new field is picked up.


def _attnames(model: Any) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


def _select_list(alias: str, names: list[str]) -> str:
    return ", ".join(f'{alias}."{name}"' for name in names)


class _VendSql:
    """SQL text built on first use (after the app registry is ready)."""

    _built = False

    @classmethod
    def build(cls) -> None:
        from campaigns.models import Batch, Campaign, Enrollment

        cls.meter_fields = _attnames(Meter)
        cls.enrollment_fields = _attnames(Enrollment)
        cls.campaign_fields = _attnames(Campaign)
        cls.set_fields = _attnames(KeyChangeSet)
        # The open enrollment is campaigns.services.enrollment_for_meter's query, written out (a test
        # checks both pick the same enrollment in every batch and campaign state).
        cls.meter = (
            f"SELECT {_select_list('m', cls.meter_fields)}, {_select_list('e', cls.enrollment_fields)}, "  # noqa: S608
            f"{_select_list('c', cls.campaign_fields)}, {_select_list('k', cls.set_fields)} "
            f"FROM {Meter._meta.db_table} m "
            f"LEFT JOIN LATERAL (SELECT e.* FROM {Enrollment._meta.db_table} e "
            f"JOIN {Campaign._meta.db_table} ec ON ec.id = e.campaign_id "
            f"JOIN {Batch._meta.db_table} eb ON eb.id = e.batch_id "
            "WHERE e.meter_id = m.id AND ec.status = %s AND eb.scheduled_at <= %s AND eb.status <> %s "
            "AND NOT (eb.status = %s AND e.state = %s) "
            "ORDER BY e.enrolled_at DESC, e.id DESC LIMIT 1) e ON true "
            f"LEFT JOIN {Campaign._meta.db_table} c ON c.id = e.campaign_id "
            f"LEFT JOIN LATERAL (SELECT * FROM {KeyChangeSet._meta.db_table} k "
            "WHERE k.meter_id = m.id AND k.from_sgc = m.sgc AND k.from_krn = m.krn "
            "ORDER BY k.created_at DESC, k.id DESC LIMIT 1) k ON true "
            "WHERE m.meter_number = %s"
        )
        cls.meter_params = [
            Campaign.Status.ACTIVE,
            Batch.Status.DRAFT,
            Batch.Status.CANCELLED,
            Enrollment.State.SCHEDULED,
        ]
        # The vend, its counter's new TID and its credit token in one round trip. The token is
        # inserted only if the vend was (a duplicate reference inserts nothing and is replayed).
        vend_columns = [
            "public_id",
            "partner_id",
            "reference",
            "fingerprint",
            "meter_id",
            "amount",
            "units",
            "customer_phone",
            "key_change_set_id",
            "response_status",
            "response_body",
            "created_at",
        ]
        token_columns = [
            "meter_id",
            "kind",
            "token_class",
            "subclass",
            "sgc",
            "krn",
            "base_date",
            "tid",
            "units",
            "value",
            "digits",
            "issued_at",
            "issued_by",
        ]
        holders = ", ".join(["%s"] * len(vend_columns))
        token_holders = ", ".join(["%s"] * len(token_columns))
        # The three parts, each a statement of its own for databases without data-modifying CTEs
        # (SQLite has INSERT ... ON CONFLICT DO NOTHING RETURNING since 3.35); PostgreSQL runs them as one.
        cls.vend_insert = (
            f"INSERT INTO {Vend._meta.db_table} ({', '.join(vend_columns)}) VALUES ({holders}) "  # noqa: S608
            "ON CONFLICT (partner_id, reference) DO NOTHING RETURNING id"
        )
        cls.counter_update = f"UPDATE {_COUNTER_TABLE} SET last_tid = %s, updated_at = %s WHERE id = %s"  # noqa: S608
        token_into = f"INSERT INTO {IssuedToken._meta.db_table} ({', '.join(token_columns)}, vend_id)"
        cls.token_insert = f"{token_into} VALUES ({token_holders}, %s) RETURNING id"
        cls.issue_split = (len(vend_columns), len(vend_columns) + 3)  # where the counter's and token's params start
        cls.issue = (
            f"WITH v AS ({cls.vend_insert}), "  # noqa: S608 - our tables
            f"c AS ({cls.counter_update} AND EXISTS (SELECT 1 FROM v)), "
            f"t AS ({token_into} SELECT {token_holders}, v.id FROM v RETURNING id) "
            "SELECT (SELECT id FROM v), (SELECT id FROM t)"
        )
        cls._built = True


def _vend_rows_insert(params: list[Any]) -> tuple[int | None, int | None]:
    """Insert the vend, write the counter's new TID and insert the credit token (params in that order,
    as _VendSql.issue takes them). Returns (vend id, token id), or (None, None) when a vend with this
    partner and reference exists: then nothing is written."""
    sql = _VendSql
    with connection.cursor() as cursor:
        if _postgres():
            cursor.execute(sql.issue, params)
            return cursor.fetchone()
        counter_at, token_at = sql.issue_split
        cursor.execute(sql.vend_insert, params[:counter_at])
        row = cursor.fetchone()
        if row is None:
            return None, None
        cursor.execute(sql.counter_update, params[counter_at:token_at])
        cursor.execute(sql.token_insert, [*params[token_at:], row[0]])
        return row[0], cursor.fetchone()[0]


def _from_row(model: Any, names: list[str], row: tuple, start: int) -> Any:
    """A model instance from a slice of a raw row, with the fields' database converters applied
    (JSONField text -> Python) as the ORM's compiler would."""
    values = list(row[start : start + len(names)])
    for index, field in _converters(model):
        if values[index] is not None:
            values[index] = field.from_db_value(values[index], None, connection)
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


_converter_cache: dict[Any, list[tuple[int, Any]]] = {}


def _converters(model: Any) -> list[tuple[int, Any]]:
    found = _converter_cache.get(model)
    if found is None:
        found = [
            (index, field) for index, field in enumerate(model._meta.concrete_fields) if hasattr(field, "from_db_value")
        ]
        _converter_cache[model] = found
    return found


def _meter_for_vend(meter_number: str) -> tuple[Meter, Any, KeyChangeSet | None] | None:
    """The meter, its enrollment (enrollment_for_meter's answer, with .campaign loaded) and its newest
    key change set from the register key, in one statement; None if there is no such meter."""
    if not _VendSql._built:
        _VendSql.build()
    if not _postgres():
        return _meter_for_vend_orm(meter_number)
    from campaigns.models import Campaign, Enrollment

    sql = _VendSql
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [sql.meter_params[0], now, sql.meter_params[1], sql.meter_params[2], sql.meter_params[3], meter_number]
    with connection.cursor() as cursor:
        cursor.execute(sql.meter, params)
        row = cursor.fetchone()
    if row is None:
        return None
    at = 0
    meter = _from_row(Meter, sql.meter_fields, row, at)
    at += len(sql.meter_fields)
    enrollment = None
    if row[at] is not None:
        enrollment = _from_row(Enrollment, sql.enrollment_fields, row, at)
        campaign = _from_row(Campaign, sql.campaign_fields, row, at + len(sql.enrollment_fields))
        enrollment.campaign = campaign
        enrollment.meter = meter
    at += len(sql.enrollment_fields) + len(sql.campaign_fields)
    latest_set = _from_row(KeyChangeSet, sql.set_fields, row, at) if row[at] is not None else None
    return meter, enrollment, latest_set


def _meter_for_vend_orm(meter_number: str) -> tuple[Meter, Any, KeyChangeSet | None] | None:
    """_meter_for_vend through the services its statement stands in for (three queries, any database)."""
    from campaigns.services import enrollment_for_meter

    meter = Meter.objects.filter(meter_number=meter_number).first()
    if meter is None:
        return None
    enrollment = enrollment_for_meter(meter)
    if enrollment is not None:
        enrollment.meter = meter
    return meter, enrollment, _latest_key_change_set(meter)


_PUBLIC_ID_FIELD = Vend._meta.get_field("public_id")


class _DuplicateInsert(Exception):
    """The (partner, reference) vend already exists: roll back and replay it."""


def _record_vend_minute(with_codes: bool) -> None:
    """Count the vend for the dashboard; runs after commit and never fails the vend."""
    try:
        from dashboard.services import vend_minute_record

        vend_minute_record(with_codes=with_codes)
    except Exception:  # noqa: BLE001 - a statistics counter must never break a sale
        logger.warning("could not count a vend for the dashboard", exc_info=True)


def vend_create(
    *,
    partner: Partner,
    meter_number: str,
    amount: Decimal,
    reference: str,
    customer_phone: str = "",
    now: datetime | None = None,
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
    loaded = _meter_for_vend(meter_number)
    if loaded is None:
        existing = _stored_vend(partner, reference)
        if existing is not None:
            return _replay(existing, fingerprint)  # a different meter: DUPLICATE_REFERENCE
        raise errors.UnknownMeter(f"No meter {meter_number} in the register.")
    meter, enrollment, latest_set = loaded
    now = now or timezone.now()
    try:
        with transaction.atomic():
            if amount < partner.min_vend_amount:
                raise errors.AmountTooLow(f"The smallest vend is KES {partner.min_vend_amount}.")
            if amount > partner.max_vend_amount:
                raise errors.AmountTooHigh(f"The largest vend is KES {partner.max_vend_amount}.")
            outcome = _vend_issue(
                partner=partner,
                meter=meter,
                enrollment=enrollment,
                latest_set=latest_set,
                amount=amount,
                reference=reference,
                fingerprint=fingerprint,
                customer_phone=customer_phone,
                now=now,
            )
            with_codes = outcome.vend.key_change_set_id is not None
            transaction.on_commit(lambda: _record_vend_minute(with_codes))
            return outcome
    except errors.VendError:
        # A retry of a stored sale replays it even if it would be refused now (limit lowered, meter blocked).
        existing = _stored_vend(partner, reference)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    except (_DuplicateInsert, IntegrityError):
        existing = _stored_vend(partner, reference)
        if existing is None:
            raise
        return _replay(existing, fingerprint)


def _vend_issue(
    *,
    partner: Partner,
    meter: Meter,
    enrollment: Any,
    latest_set: KeyChangeSet | None,
    amount: Decimal,
    reference: str,
    fingerprint: str,
    customer_phone: str,
    now: datetime,
) -> VendOutcome:
    actor_label = f"partner:{partner.pk}"
    plan = vend_plan(meter, now=now, enrollment=enrollment, latest_set=latest_set)
    quote = tariff_quote(amount=amount)
    try:
        amount_field = encode_amount(quote.units)
    except AmountOutOfRange:
        raise errors.AmountTooHigh("The amount buys more units than one token can carry.") from None
    units = decode_amount(amount_field)  # what the meter will credit: >= the units paid for
    pan = pan_from_meter_number(meter.meter_number)

    counter = _lock_counter(meter, plan.key)
    key_change_set = None
    codes: list[str] = []
    if plan.campaign is not None:
        if latest_set is not None and latest_set.campaign_id == plan.campaign.pk:
            key_change_set = latest_set  # made once, never changed: no need to read it again under the lock
        else:
            key_change_set = _key_change_set_under_lock(meter, plan.campaign, pan)
        codes = list(key_change_set.codes)
    tid = _next_tid(counter, plan.key, now)
    decoder_key = meter_decoder_key(meter=meter, key=plan.key, pan=pan)
    digits = credit_token(ea=meter.ea, decoder_key=decoder_key, tid=tid, amount_field=amount_field, ken=plan.key.ken)
    del decoder_key

    public_id = uuid.uuid4()
    created_at = timezone.now()
    recipient = customer_phone or meter.phone
    body = {
        "vend_id": str(public_id),
        "reference": reference,
        "meter_number": meter.meter_number,
        "amount": str(amount),
        "currency": "KES",
        "units": str(units),
        "unit": "kWh",
        "tariff": quote.as_dict(),
        "key_change": bool(codes),
        "tokens": tokens_list(codes=codes, credit_digits=digits),
        "instruction": instruction_for(codes),
        "sms_queued": bool(recipient),
        "created_at": created_at.isoformat(),
    }
    response_body = json.dumps(body, separators=(",", ":"))
    adapt = connection.ops.adapt_datetimefield_value
    vend_id, token_id = _vend_rows_insert(
        [
            # the vend
            _PUBLIC_ID_FIELD.get_db_prep_value(public_id, connection),  # a UUID, or its hex text on SQLite
            partner.pk,
            reference,
            fingerprint,
            meter.pk,
            amount,
            units,
            customer_phone,
            key_change_set.pk if key_change_set is not None else None,
            201,
            response_body,
            adapt(created_at),
            # the counter
            tid,
            adapt(created_at),
            counter.pk,
            # the credit token
            meter.pk,
            IssuedToken.Kind.CREDIT,
            0,
            0,
            plan.key.sgc,
            plan.key.krn,
            plan.key.base_date,
            tid,
            units,
            None,
            digits,
            adapt(created_at),
            actor_label,
        ]
    )
    if vend_id is None:
        raise _DuplicateInsert()
    vend = Vend(
        pk=vend_id,
        public_id=public_id,
        partner=partner,
        reference=reference,
        fingerprint=fingerprint,
        meter=meter,
        amount=amount,
        units=units,
        customer_phone=customer_phone,
        key_change_set=key_change_set,
        response_status=201,
        response_body=response_body,
        created_at=created_at,
    )
    vend._state.adding = False
    token = IssuedToken(
        pk=token_id,
        meter=meter,
        vend=vend,
        kind=IssuedToken.Kind.CREDIT,
        token_class=0,
        subclass=0,
        sgc=plan.key.sgc,
        krn=plan.key.krn,
        base_date=plan.key.base_date,
        tid=tid,
        units=units,
        digits=digits,
        issued_at=created_at,
        issued_by=actor_label,
    )
    token._state.adding = False
    # Written with SQL above; receivers (care's token digest index) still hear of the new token.
    post_save.send(
        sender=IssuedToken, instance=token, created=True, update_fields=None, raw=False, using=DEFAULT_DB_ALIAS
    )
    del token

    if recipient:
        batch_id = plan.enrollment.batch_id if plan.enrollment is not None else None
        sms = _sms_body(meter=meter, campaign=plan.campaign, codes=codes, credit=digits, units=units, amount=amount)
        _queue_sms(vend=vend, meter=meter, body=sms, with_codes=bool(codes), batch=batch_id)

    # Last, the updates of shared counter rows (campaign and batch funnel counters, the partner's
    # daily total), so those hot rows stay locked only for the very end of the transaction.
    if key_change_set is not None:
        _codes_issued(meter, plan.enrollment, actor_label)
    if not partner_daily_reserve(partner=partner, amount=amount, day=timezone.localdate(now)):
        raise errors.DailyLimitExceeded(
            f"This vend would take the partner past its daily limit of KES {partner.daily_limit}."
        )
    return VendOutcome(status=201, body=response_body, replayed=False, vend=vend)


# --- Retrieval, reprint, reversal -----------------------------------------------------------------------


def vend_get(*, partner: Partner, reference: str) -> Vend:
    vend = Vend.objects.filter(partner=partner, reference=reference).first()
    if vend is None:
        raise errors.VendNotFound(f"No vend with reference {reference!r} for this partner.")
    return vend


def vend_reprint(*, partner: Partner, reference: str, now: datetime | None = None) -> dict[str, Any]:
    """The original receipt marked as a reprint (same tokens); each reprint is audited."""
    vend = vend_get(partner=partner, reference=reference)
    body = json.loads(vend.response_body)
    body["reprint"] = True
    body["reprinted_at"] = (now or timezone.now()).isoformat()
    audit_record(action="vend.reprinted", actor_label=f"partner:{partner.pk}", target=vend, reference=reference)
    return body


def reversal_request_create(*, partner: Partner, reference: str, reason: str) -> tuple[ReversalRequest, bool]:
    """Record a reversal request for care. Returns (request, created); a repeat returns the first one."""
    vend = vend_get(partner=partner, reference=reference)
    with transaction.atomic():
        request, created = ReversalRequest.objects.get_or_create(
            vend=vend, defaults={"reason": reason, "requested_by": f"partner:{partner.pk}"}
        )
        if created:
            audit_record(
                action="vend.reversal_requested",
                actor_label=f"partner:{partner.pk}",
                target=vend,
                reference=reference,
                reason=reason,
            )
    return request, created


def reversal_request_resolve(
    *, reversal: ReversalRequest, approve: bool, note: str, actor: Any = None, actor_label: str = ""
) -> bool:
    """Care closes a reversal request. Tokens stay issued either way; a refund happens outside STS."""
    status = ReversalRequest.Status.APPROVED if approve else ReversalRequest.Status.REJECTED
    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    with transaction.atomic():
        updated = ReversalRequest.objects.filter(pk=reversal.pk, status=ReversalRequest.Status.OPEN).update(
            status=status, resolved_at=timezone.now(), resolved_by=label, resolution_note=note
        )
        if updated:
            audit_record(action=f"vend.reversal_{status}", actor=actor, actor_label=label, target=reversal.vend)
    return bool(updated)


# --- For USSD and customer care -------------------------------------------------------------------------


def meter_summary(*, meter: Meter, now: datetime | None = None) -> dict[str, Any]:
    """What a partner may see before selling: masked name, region, can-vend, pending update."""
    now = now or timezone.now()
    reason = None
    try:
        plan = vend_plan(meter, now=now)
        pending = plan.campaign is not None
    except errors.VendError as exc:
        reason, pending = exc.code, False
    return {
        "meter_number": meter.meter_number,
        "customer_name": mask_name(meter.customer_name),
        "region": meter.region,
        "can_vend": reason is None,
        "reason": reason,
        "pending_update": pending,
        "key_state": meter.key_state,
    }


def mask_name(name: str) -> str:
    """'Jane Wanjiru' -> 'J*** W******': enough for a cashier to confirm, not to harvest."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split())


def meter_update_codes(*, meter: Meter) -> KeyChangeSet | None:
    """The key change set the meter should type (latest one from its current register key), or None.

    Read-only: USSD and care show and resend these; they are made by a vend or `key_change_set_issue`.
    """
    return (
        KeyChangeSet.objects.filter(meter=meter, from_sgc=meter.sgc, from_krn=meter.krn)
        .order_by("-created_at", "-id")
        .first()
    )


def key_change_set_issue(*, meter: Meter, campaign: Any, actor_label: str) -> KeyChangeSet:
    """Make (once) and return the meter's codes for `campaign` without a sale, e.g. for USSD *977#.

    Moves the meter and its enrollment to "codes issued". Same lock as a vend, so a vend racing it
    gets the same codes.
    """
    pan = pan_from_meter_number(meter.meter_number)
    with transaction.atomic():
        _lock_counter(meter, _campaign_key(meter, campaign))
        key_change_set = _key_change_set_under_lock(meter, campaign, pan)
        enrollment = _open_enrollment(meter)
        _codes_issued(
            meter, enrollment if enrollment is not None and enrollment.campaign_id == campaign.pk else None, actor_label
        )
    return key_change_set


def meter_last_tokens(*, meter: Meter, limit: int = 3) -> list[IssuedToken]:
    """The meter's most recent credit tokens, newest first (with .vend loaded)."""
    return list(
        IssuedToken.objects.filter(meter=meter, kind=IssuedToken.Kind.CREDIT)
        .select_related("vend")
        .order_by("-issued_at", "-id")[:limit]
    )


def vend_tokens(*, vend: Vend) -> list[dict[str, Any]]:
    """The vend's ordered tokens (codes then credit), exactly as first delivered."""
    return json.loads(vend.response_body)["tokens"]


def vend_sms_resend(*, vend: Vend, actor: Any = None, actor_label: str = "", recipient: str = "") -> bool:
    """Queue the vend's SMS again (same digits). Audited; returns False when there is no phone."""
    meter = vend.meter
    body = json.loads(vend.response_body)
    items = body["tokens"]
    codes = [t["digits"] for t in items if t["kind"] != "credit"]
    credit = next(t["digits"] for t in items if t["kind"] == "credit")
    campaign = vend.key_change_set.campaign if vend.key_change_set_id else None
    text = _sms_body(meter=meter, campaign=campaign, codes=codes, credit=credit, units=vend.units, amount=vend.amount)
    phone = recipient or vend.customer_phone or meter.phone
    if not phone:
        return False
    from sms.services import message_queue

    with transaction.atomic():
        message_queue(recipient=phone, body=text, purpose="codes" if codes else "token", meter=meter, vend_id=vend.pk)
        audit_record(action="vend.sms_resent", actor=actor, actor_label=actor_label, target=vend)
    return True


def management_token_issue(
    *,
    meter: Meter,
    subclass: int,
    value: int = 0,
    actor: Any = None,
    actor_label: str = "",
    now: datetime | None = None,
) -> IssuedToken:
    """Issue a class 2 management token under the meter's current key, with a fresh TID. Audited.

    Subclasses (tokens.sts.management_token): 0 set maximum power limit (value: watts field),
    1 clear credit (0xFFFF all registers), 5 clear tamper (value 0), 6 set phase unbalance limit.

    The caller checks the `tokens.issue_management_token` permission.
    """
    now = now or timezone.now()
    key = meter_current_key(meter)
    pan = pan_from_meter_number(meter.meter_number)
    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    with transaction.atomic():
        counter = _lock_counter(meter, key)
        tid = _allocate_tid(counter, key, now)
        digits = management_token(
            ea=meter.ea,
            decoder_key=meter_decoder_key(meter=meter, key=key, pan=pan),
            subclass=subclass,
            tid=tid,
            value=value,
            ken=key.ken,
        )
        token = IssuedToken.objects.create(
            meter=meter,
            kind=IssuedToken.Kind.MANAGEMENT,
            token_class=2,
            subclass=subclass,
            sgc=key.sgc,
            krn=key.krn,
            base_date=key.base_date,
            tid=tid,
            value=value,
            digits=digits,
            issued_by=label,
        )
        audit_record(
            action="token.management_issued",
            actor=actor,
            actor_label=label,
            target=token,
            subclass=subclass,
            value=value,
        )
    return token
