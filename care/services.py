"""Customer care: cases, the desk's actions on a meter, token digests and the plain-words decoder.

Every action that sends, reveals or changes something is recorded with `audit_record`. Token
digits never go into the audit log, a log line or an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from meters.models import Meter
from tokens.errors import VendingUnavailable
from tokens.models import IssuedToken, KeyChangeSet
from tokens.services import MeterKey, meter_decoder_key, meter_last_tokens, meter_update_codes, vend_sms_resend
from tokens.sts import StsError, decode_token, tid_to_datetime

from .models import CareCase, CaseComment, TokenDigest

logger = logging.getLogger(__name__)


class CareError(ValueError):
    """An action the desk cannot do for this meter right now (the message is shown to the agent)."""


def actor_label_for(actor: Any) -> str:
    return f"user:{actor.get_username()}" if getattr(actor, "is_authenticated", False) else "system"


# --- Token digests: find a token from the digits a customer reads out --------------------------------


def _digest_key() -> bytes:
    # A dedicated key derived from SECRET_KEY: the digest is useless without it (20 digits are only
    # ~66 bits, a plain hash could be brute-forced per meter), and rotating SECRET_KEY means running
    # `manage.py care_index_tokens` again.
    return hmac.new(settings.SECRET_KEY.encode(), b"care.token-digest.v1", hashlib.sha256).digest()


def token_digits_clean(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch not in "-.")


def token_digest(digits: str) -> str:
    return hmac.new(_digest_key(), token_digits_clean(digits).encode(), hashlib.sha256).hexdigest()


def token_digest_index_issued(*, token: IssuedToken) -> None:
    TokenDigest.objects.bulk_create(
        [TokenDigest(digest=token_digest(token.digits), meter_id=token.meter_id, issued_token_id=token.pk)],
        ignore_conflicts=True,
    )


def token_digest_index_key_change_set(*, key_change_set: KeyChangeSet) -> None:
    TokenDigest.objects.bulk_create(
        [
            TokenDigest(
                digest=token_digest(code),
                meter_id=key_change_set.meter_id,
                key_change_set_id=key_change_set.pk,
                position=position,
            )
            for position, code in enumerate(key_change_set.codes, start=1)
        ],
        ignore_conflicts=True,
    )


def token_digests_backfill(*, chunk: int = 5000) -> int:
    """Index every issued token and key change code not indexed yet (after a restore or key rotation)."""
    done = 0
    indexed = TokenDigest.objects.filter(issued_token_id__isnull=False).values("issued_token_id")
    for token in IssuedToken.objects.exclude(pk__in=indexed).only("pk", "meter_id", "digits").iterator(chunk):
        token_digest_index_issued(token=token)
        done += 1
    indexed = TokenDigest.objects.filter(key_change_set_id__isnull=False).values("key_change_set_id")
    for key_change_set in KeyChangeSet.objects.exclude(pk__in=indexed).iterator(chunk):
        token_digest_index_key_change_set(key_change_set=key_change_set)
        done += len(key_change_set.codes)
    return done


@dataclass(frozen=True)
class TokenMatch:
    meter: Meter
    issued_token: IssuedToken | None = None
    key_change_set: KeyChangeSet | None = None
    position: int | None = None


def token_find(*, digits: str) -> list[TokenMatch]:
    """Which meter (and vend, or key change set) these 20 digits were issued to."""
    digits = token_digits_clean(digits)
    if len(digits) != 20 or not digits.isdigit():
        return []
    matches = []
    rows = TokenDigest.objects.filter(digest=token_digest(digits)).select_related("meter")
    for row in rows:
        if row.issued_token_id:
            token = IssuedToken.objects.filter(pk=row.issued_token_id).select_related("vend").first()
            if token is not None and hmac.compare_digest(token.digits, digits):
                matches.append(TokenMatch(meter=row.meter, issued_token=token))
        elif row.key_change_set_id:
            key_change_set = KeyChangeSet.objects.filter(pk=row.key_change_set_id).first()
            if key_change_set is not None:
                matches.append(TokenMatch(meter=row.meter, key_change_set=key_change_set, position=row.position))
    return matches


# --- Care cases ----------------------------------------------------------------------------------


def care_case_open(
    *,
    meter: Meter | None,
    kind: str,
    source: str,
    phone: str = "",
    summary: str = "",
    actor: Any = None,
    actor_label: str = "",
) -> CareCase:
    """Open a case. From USSD, a second report of the same problem joins the open case instead."""
    label = actor_label or actor_label_for(actor)
    with transaction.atomic():
        if source == CareCase.Source.USSD and meter is not None:
            existing = (
                CareCase.objects.select_for_update()
                .filter(meter=meter, kind=kind, source=source, status=CareCase.Status.OPEN)
                .first()
            )
            if existing is not None:
                CaseComment.objects.create(case=existing, author_label=label, body="Reported again on USSD.")
                return existing
        case = CareCase.objects.create(
            meter=meter, kind=kind, source=source, phone=phone, summary=summary[:300], opened_by=label[:100]
        )
        audit_record(action="care_case.opened", actor=actor, actor_label=label, target=case, kind=kind, source=source)
    return case


def care_case_assign(*, case: CareCase, assignee: Any, actor: Any) -> CareCase:
    with transaction.atomic():
        CareCase.objects.filter(pk=case.pk).update(assigned_to=assignee, assigned_at=timezone.now())
        case.refresh_from_db()
        audit_record(
            action="care_case.assigned",
            actor=actor,
            target=case,
            assignee=assignee.get_username() if assignee else "",
        )
    return case


def care_case_comment(*, case: CareCase, body: str, actor: Any) -> CaseComment:
    body = body.strip()
    if not body:
        raise CareError("A comment cannot be empty.")
    with transaction.atomic():
        comment = CaseComment.objects.create(
            case=case,
            author=actor if getattr(actor, "is_authenticated", False) else None,
            author_label=actor_label_for(actor),
            body=body,
        )
        audit_record(action="care_case.commented", actor=actor, target=case)
    return comment


def care_case_close(*, case: CareCase, resolution: str, actor: Any) -> bool:
    """Close an open case; False if it was already closed (two agents clicking at once)."""
    with transaction.atomic():
        closed = CareCase.objects.filter(pk=case.pk, status=CareCase.Status.OPEN).update(
            status=CareCase.Status.CLOSED,
            closed_at=timezone.now(),
            closed_by=actor_label_for(actor),
            resolution=resolution[:300],
        )
        if closed:
            audit_record(action="care_case.closed", actor=actor, target=case)
    case.refresh_from_db()
    return bool(closed)


# --- Desk actions on a meter ----------------------------------------------------------------------


def codes_sms_body(*, meter_number: str, codes: list[str]) -> str:
    """The update codes on their own (no credit token): labelled in typing order, GSM-7, one SMS."""
    numbered = " ".join(f"{n}) {'-'.join(c[i : i + 4] for i in range(0, 20, 4))}" for n, c in enumerate(codes, 1))
    return f"KPLC {meter_number}: load unused tokens first, then type {numbered} {len(codes) + 1}) your token. *977#"


def meter_codes_send(*, meter: Meter, recipient: str = "", actor: Any = None, actor_label: str = "") -> bool:
    """Queue the meter's update codes by SMS (the same digits every time). False: no phone."""
    key_change_set = meter_update_codes(meter=meter)
    if key_change_set is None:
        raise CareError(f"Meter {meter.meter_number} has no update codes issued.")
    phone = recipient or meter.phone
    if not phone:
        return False
    from sms.services import message_queue

    label = actor_label or actor_label_for(actor)
    with transaction.atomic():
        message_queue(
            recipient=phone,
            body=codes_sms_body(meter_number=meter.meter_number, codes=list(key_change_set.codes)),
            purpose="codes",
            meter=meter,
        )
        audit_record(
            action="care.codes_sent", actor=actor, actor_label=label, target=meter, to_registered=phone == meter.phone
        )
    return True


def meter_last_token_send(*, meter: Meter, actor: Any = None, actor_label: str = "") -> bool:
    """Queue the SMS of the meter's last vend again, to the meter's registered phone (same digits)."""
    last = meter_last_tokens(meter=meter, limit=1)
    if not last or last[0].vend is None:
        raise CareError(f"No token has been sold for meter {meter.meter_number}.")
    if not meter.phone:
        return False
    label = actor_label or actor_label_for(actor)
    return vend_sms_resend(vend=last[0].vend, actor=actor, actor_label=label, recipient=meter.phone)


def meter_confirm(*, meter: Meter, actor: Any = None, actor_label: str = "", reason: str = "") -> bool:
    """The meter took the codes: its enrollment (or, outside any batch, the meter) becomes confirmed."""
    from campaigns.services import enrollment_confirm, enrollment_for_meter

    label = actor_label or actor_label_for(actor)
    enrollment = enrollment_for_meter(meter)
    with transaction.atomic():
        if enrollment is not None:
            changed = enrollment_confirm(enrollment=enrollment, actor_label=label, reason=reason)
        else:
            changed = bool(
                Meter.objects.filter(pk=meter.pk)
                .exclude(key_state=Meter.KeyState.CONFIRMED)
                .update(key_state=Meter.KeyState.CONFIRMED, status=Meter.Status.ACTIVE, updated_at=timezone.now())
            )
        if changed:
            audit_record(action="meter.confirmed", actor=actor, actor_label=label, target=meter, reason=reason[:200])
    meter.refresh_from_db()
    return changed


def meter_flag_non_compliant(*, meter: Meter, reason: str, actor: Any = None, actor_label: str = "") -> bool:
    """The meter cannot take the codes: it joins the field-visit queue and leaves the to-do count."""
    from campaigns.services import enrollment_flag_non_compliant, enrollment_for_meter

    label = actor_label or actor_label_for(actor)
    enrollment = enrollment_for_meter(meter)
    with transaction.atomic():
        if enrollment is not None and enrollment.state != "confirmed":
            changed = enrollment_flag_non_compliant(enrollment=enrollment, actor_label=label, reason=reason)
        else:
            changed = bool(
                Meter.objects.filter(pk=meter.pk)
                .exclude(key_state=Meter.KeyState.NON_COMPLIANT)
                .update(
                    status=Meter.Status.NON_COMPLIANT,
                    key_state=Meter.KeyState.NON_COMPLIANT,
                    updated_at=timezone.now(),
                )
            )
        if changed:
            audit_record(action="meter.flagged_non_compliant", actor=actor, actor_label=label, target=meter)
    meter.refresh_from_db()
    return changed


def token_digits_reveal(*, meter: Meter, actor: Any, limit: int = 20) -> list[IssuedToken]:
    """The meter's issued tokens with digits, for staff holding tokens.view_token_digits. Audited.

    The caller checks the permission; this records that digits were shown, never the digits.
    """
    tokens = list(IssuedToken.objects.filter(meter=meter).select_related("vend").order_by("-issued_at", "-id")[:limit])
    audit_record(
        action="token.digits_viewed", actor=actor, target=meter, token_ids=[t.pk for t in tokens], count=len(tokens)
    )
    return tokens


# --- Decode what the customer typed, and say why the meter refuses it ------------------------------


class Verdict:
    FORMAT = "typo_format"
    TYPO = "typo"
    WRONG_METER = "wrong_meter"
    UNDECODABLE = "not_for_this_meter"
    OLD_KEY = "old_key"
    NEEDS_CODES = "needs_codes_first"
    ALREADY_USED = "already_used"
    OLDER_THAN_LAST = "older_than_last"
    KEY_CHANGE_CODE = "key_change_code"
    TEST_TOKEN = "test_token"  # noqa: S105 - a verdict name
    VALID = "valid"


@dataclass
class Explanation:
    verdict: str
    headline: str
    details: list[str] = field(default_factory=list)
    kind: str = ""
    tid: int | None = None
    key_label: str = ""


@dataclass(frozen=True)
class _KeyRole:
    key: MeterKey
    role: str  # "old" or "new" (from a key change set) or "register"


def _meter_keys(meter: Meter) -> list[_KeyRole]:
    roles: dict[tuple[str, int], _KeyRole] = {}
    for kcs in KeyChangeSet.objects.filter(meter=meter).order_by("created_at", "id"):
        old = MeterKey(sgc=kcs.from_sgc, krn=kcs.from_krn, base_date=kcs.from_base_date, ken=meter.ken)
        new = MeterKey(sgc=kcs.to_sgc, krn=kcs.to_krn, base_date=kcs.to_base_date, ken=kcs.to_ken)
        roles.setdefault((old.sgc, old.krn), _KeyRole(old, "old"))
        roles[(new.sgc, new.krn)] = _KeyRole(new, "new")
    register = MeterKey(sgc=meter.sgc, krn=meter.krn, base_date=meter.base_date, ken=meter.ken)
    roles.setdefault((register.sgc, register.krn), _KeyRole(register, "register"))
    return list(roles.values())


def _decoder_key(meter: Meter, key: MeterKey) -> bytes | None:
    try:
        return meter_decoder_key(meter=meter, key=key)
    except VendingUnavailable:
        return None  # that key's vending key is not loaded here: try the meter's other keys


def _near_miss(typed: str, known: str) -> str:
    """How `typed` differs from `known` if by one digit or one swap of neighbours, else ""."""
    diffs = [i for i in range(20) if typed[i] != known[i]]
    if len(diffs) == 1:
        i = diffs[0]
        return f"digit {i + 1} was typed as {typed[i]} instead of {known[i]}"
    if len(diffs) == 2 and diffs[1] == diffs[0] + 1 and typed[diffs[0]] == known[diffs[1]]:
        if typed[diffs[1]] == known[diffs[0]]:
            return f"digits {diffs[0] + 1} and {diffs[1] + 1} were swapped"
    return ""


def _when(moment: datetime | None) -> str:
    return f"{timezone.localtime(moment):%d %b %Y %H:%M}" if moment else "an unknown date"


def token_explain(*, meter: Meter, typed: str, actor: Any = None) -> Explanation:
    """Decode `typed` for `meter` with the STS engine and explain, in plain words, what it is and
    why the meter would refuse it. Audited (without the digits)."""
    explanation = _explain(meter, typed)
    audit_record(action="token.decoded", actor=actor, target=meter, verdict=explanation.verdict, kind=explanation.kind)
    return explanation


def _explain(meter: Meter, typed: str) -> Explanation:  # noqa: C901 - one decision table, read top to bottom
    digits = token_digits_clean(typed)
    if not digits.isdigit() or len(digits) != 20:
        count = sum(ch.isdigit() for ch in digits)
        return Explanation(
            Verdict.FORMAT,
            f"Typing mistake: a token has exactly 20 digits and the customer typed {count}"
            + (" plus other characters." if count != len(digits) else "."),
            ["Ask the customer to read the token again from the SMS or receipt, four digits at a time."],
        )
    issued = list(IssuedToken.objects.filter(meter=meter).select_related("vend").order_by("-issued_at", "-id")[:500])
    code_sets = list(KeyChangeSet.objects.filter(meter=meter).order_by("-created_at", "-id"))
    on_new_key = meter.key_state == Meter.KeyState.CONFIRMED

    # A key change code of this meter, typed exactly.
    for kcs in code_sets:
        for position, code in enumerate(kcs.codes, start=1):
            if hmac.compare_digest(code, digits):
                detail = (
                    "The meter is already confirmed on the new key: the codes are not needed again, and a "
                    "second entry is refused."
                    if on_new_key
                    else "Type code 1, then code 2 (waiting for each to be accepted), then the credit token."
                )
                return Explanation(
                    Verdict.KEY_CHANGE_CODE,
                    f"Update code {position} of this meter (moves it from key revision {kcs.from_krn} "
                    f"to {kcs.to_krn}).",
                    [detail],
                    kind=f"kct{position}",
                )

    decoded = None
    key_role: _KeyRole | None = None
    try:
        decoded = decode_token(digits)  # class 1 (test) tokens need no key
    except StsError:
        decoded = None
    if decoded is not None and str(decoded.kind) == "test":
        return Explanation(
            Verdict.TEST_TOKEN,
            "A test token: it makes the meter show information (such as its key revision: 1 old, 2 new) "
            "and adds no credit.",
            kind="test",
        )
    decoded = None
    for role in _meter_keys(meter):
        decoder_key = _decoder_key(meter, role.key)
        if decoder_key is None:
            continue
        try:
            decoded = decode_token(digits, ea=meter.ea, decoder_key=decoder_key)
        except StsError:
            continue
        finally:
            del decoder_key
        key_role = role
        break

    if decoded is None or key_role is None:
        return _explain_undecodable(meter, digits, issued, code_sets)

    kind = str(decoded.kind)
    key = key_role.key
    made = tid_to_datetime(decoded.tid, key.base_date) if decoded.tid is not None else None
    what = {"credit": "Credit token", "management": "Management token"}.get(kind, f"Token ({kind})")
    if decoded.units is not None and kind == "credit":
        what += f" for {decoded.units} kWh"
    what += f", made under key revision {key.krn}"
    if made is not None:
        what += f" on {made:%d %b %Y %H:%M}"
    details = [what + "."]

    if key_role.role == "old" and meter.key_state in (Meter.KeyState.CONFIRMED, Meter.KeyState.CODES_ISSUED):
        new_krn = max((k.to_krn for k in code_sets), default=key.krn + 1)
        state = "is confirmed on" if on_new_key else "may already be on (the update codes were issued for)"
        return Explanation(
            Verdict.OLD_KEY,
            f"Made under the old key (revision {key.krn}) before the update. The meter {state} the new key "
            f"(revision {new_krn}) and refuses tokens made under the old one.",
            [
                *details,
                "Old tokens must be loaded BEFORE codes 1 and 2. An STS token cannot be moved to the new key: "
                "open a case if the customer paid for units they could not load.",
            ],
            kind=kind,
            tid=decoded.tid,
            key_label=f"KRN {key.krn}",
        )
    if key_role.role == "new" and not on_new_key:
        return Explanation(
            Verdict.NEEDS_CODES,
            f"Made under the new key (revision {key.krn}): the meter accepts it only after the update codes. "
            "Type code 1, then code 2, then this token.",
            details,
            kind=kind,
            tid=decoded.tid,
            key_label=f"KRN {key.krn}",
        )

    same_key = [t for t in issued if t.sgc == key.sgc and t.krn == key.krn]
    mine = next((t for t in same_key if t.tid == decoded.tid), None)
    newer = [t for t in same_key if t.tid > (decoded.tid or 0)]
    if mine is not None:
        sale = f" for vend {mine.vend.reference}" if mine.vend else ""
        details.append(f"Issued on {_when(mine.issued_at)}{sale}.")
    if newer:
        latest = max(newer, key=lambda t: t.tid)
        return Explanation(
            Verdict.OLDER_THAN_LAST,
            f"Older than the last token: a newer token was bought on {_when(latest.issued_at)}. Once a meter has "
            "accepted a newer token it refuses older ones (and it never accepts the same token twice).",
            [*details, "If these units were never loaded, open a case; the token itself cannot be revived."],
            kind=kind,
            tid=decoded.tid,
            key_label=f"KRN {key.krn}",
        )
    if mine is not None:
        return Explanation(
            Verdict.ALREADY_USED,
            "Valid for this meter and its newest token, so a refusal means it was already used: each token is "
            "accepted only once.",
            [*details, "Ask the customer to check the credit on the meter: the units were most likely added."],
            kind=kind,
            tid=decoded.tid,
            key_label=f"KRN {key.krn}",
        )
    return Explanation(
        Verdict.VALID,
        "Valid for this meter on its current key and newer than its last token: the meter should accept it. "
        "Ask the customer to type it again slowly.",
        [*details, "This token is not in our records of tokens issued to this meter."],
        kind=kind,
        tid=decoded.tid,
        key_label=f"KRN {key.krn}",
    )


def _explain_undecodable(
    meter: Meter, digits: str, issued: list[IssuedToken], code_sets: list[KeyChangeSet]
) -> Explanation:
    elsewhere = [match for match in token_find(digits=digits) if match.meter.pk != meter.pk]
    if elsewhere:
        match = elsewhere[0]
        when = match.issued_token.issued_at if match.issued_token else match.key_change_set.created_at
        what = "a token" if match.issued_token else f"update code {match.position}"
        return Explanation(
            Verdict.WRONG_METER,
            f"Wrong meter: this is {what} made for meter {match.meter.meter_number} on {_when(when)}, not for "
            f"meter {meter.meter_number}. A token only works on the meter it was bought for.",
            ["It cannot be moved to another meter; a reversal request can be recorded for the vend."],
        )
    known = [(t.digits, f"the token issued on {_when(t.issued_at)}") for t in issued]
    for kcs in code_sets:
        known += [(code, f"update code {n}") for n, code in enumerate(kcs.codes, start=1)]
    for candidate, label in known:
        difference = _near_miss(digits, candidate)
        if difference:
            return Explanation(
                Verdict.TYPO,
                f"Typing mistake: this is {label} for this meter, but {difference}.",
                ["Ask the customer to type it again slowly, four digits at a time."],
            )
    return Explanation(
        Verdict.UNDECODABLE,
        f"Not a token for meter {meter.meter_number}: it fails the meter's check under every key the meter has "
        "had. Either it was mistyped or it was made for another meter.",
        ["Ask the customer to read it again from the SMS or receipt and to confirm the meter number."],
    )
