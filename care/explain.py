"""Decode what the customer typed, and say in plain words why the meter refuses it.

`token_explain` walks a table of questions, most specific first: is it 20 digits; is it one of
this meter's update codes; a test token; does it decode under one of the meter's keys (and then:
old key, new key too early, older than the last token, already used, valid); else a token of
another meter, a near miss of one of ours, or nothing of this meter's at all.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils import formats

from audit.services import audit_record
from kplc_sts.formats import staff_datetime
from meters.models import Meter
from tokens.digests import token_digits_clean, token_find
from tokens.errors import VendingUnavailable
from tokens.keys import MeterKey, meter_decoder_key
from tokens.models import IssuedToken, KeyChangeSet
from tokens.sts import DecodedToken, StsError, TokenKind, decode_token, tid_to_datetime


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
    EXTENDED_TOKEN = "extended_token"  # noqa: S105 - a verdict name
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


@dataclass(frozen=True)
class _Case:
    """What is known about the meter when a typed token is explained."""

    meter: Meter
    digits: str
    issued: list[IssuedToken]
    code_sets: list[KeyChangeSet]

    @property
    def on_new_key(self) -> bool:
        return self.meter.key_state == Meter.KeyState.CONFIRMED


def _when(moment: dt.datetime | None) -> str:
    return staff_datetime(moment) if moment else "an unknown date"


def token_explain(*, meter: Meter, typed: str, actor: Any = None, actor_label: str = "") -> Explanation:
    """Decode `typed` for `meter` with the STS engine and explain, in plain words, what it is and
    why the meter would refuse it. Audited (without the digits)."""
    explanation = explain(meter, typed)
    audit_record(
        action="token.decoded",
        actor=actor,
        actor_label=actor_label,
        target=meter,
        verdict=explanation.verdict,
        kind=explanation.kind,
    )
    return explanation


def explain(meter: Meter, typed: str) -> Explanation:
    digits = token_digits_clean(typed)
    if not digits.isdigit() or len(digits) != 20:
        count = sum(ch.isdigit() for ch in digits)
        return Explanation(
            Verdict.FORMAT,
            f"Typing mistake: a token has exactly 20 digits and the customer typed {count}"
            + (" plus other characters." if count != len(digits) else "."),
            ["Ask the customer to read the token again from the SMS or receipt, four digits at a time."],
        )
    case = _Case(
        meter=meter,
        digits=digits,
        issued=list(IssuedToken.objects.filter(meter=meter).select_related("vend").order_by("-issued_at", "-id")[:500]),
        code_sets=list(KeyChangeSet.objects.filter(meter=meter).order_by("-created_at", "-id")),
    )
    for question in _QUESTIONS:
        answer = question(case)
        if answer is not None:
            return answer
    return _explain_undecodable(case)


def _explain_update_code(case: _Case) -> Explanation | None:
    """One of this meter's key change codes, typed exactly."""
    for kcs in case.code_sets:
        for position, code in enumerate(kcs.codes, start=1):
            if hmac.compare_digest(code, case.digits):
                order = ", then ".join(f"update code {n}" for n in range(1, len(kcs.codes) + 1))
                detail = (
                    "The meter is already confirmed on the new key: the codes are not needed again, and a "
                    "second entry is refused."
                    if case.on_new_key
                    else f"Type {order} (waiting for each to be accepted), then the credit token."
                )
                return Explanation(
                    Verdict.KEY_CHANGE_CODE,
                    f"Update code {position} of this meter (moves it from key revision {kcs.from_krn} "
                    f"to {kcs.to_krn}).",
                    [detail],
                    kind=f"kct{position}",
                )
    return None


def _extended(decoded: DecodedToken) -> Explanation:
    return Explanation(
        Verdict.EXTENDED_TOKEN,
        "A genuine extended-token-set token (STS 202-5): it passes the meter's checks and carries data for "
        "meter functions beyond credit; it adds no units.",
        [f"Token class {decoded.token_class}, subclass {decoded.subclass}; data {decoded.data:011X}."]
        if decoded.data is not None
        else [],
        kind="extended",
        tid=decoded.tid,
    )


def _explain_test_token(case: _Case) -> Explanation | None:
    try:
        decoded = decode_token(case.digits)  # class 1 (test and extended-read) tokens need no key
    except StsError:
        return None
    if decoded.kind == TokenKind.EXTENDED:
        return _extended(decoded)
    if decoded.kind != TokenKind.TEST:
        return None
    return Explanation(
        Verdict.TEST_TOKEN,
        "A test token: it makes the meter show information (such as its key revision: 1 old, 2 new) "
        "and adds no credit.",
        kind="test",
    )


def _meter_keys(case: _Case) -> list[_KeyRole]:
    meter = case.meter
    roles: dict[tuple[str, int], _KeyRole] = {}
    for kcs in sorted(case.code_sets, key=lambda k: (k.created_at, k.pk)):
        old = MeterKey(sgc=kcs.from_sgc, krn=kcs.from_krn, base_date=kcs.from_base_date, ken=meter.ken)
        roles.setdefault((old.sgc, old.krn), _KeyRole(old, "old"))
        roles[(kcs.to_sgc, kcs.to_krn)] = _KeyRole(MeterKey.set_target(kcs), "new")
    register = MeterKey.register(meter)
    roles.setdefault((register.sgc, register.krn), _KeyRole(register, "register"))
    return list(roles.values())


def _decode_under_keys(case: _Case) -> tuple[DecodedToken, _KeyRole] | None:
    for role in _meter_keys(case):
        try:
            decoder_key = meter_decoder_key(meter=case.meter, key=role.key)
        except VendingUnavailable:
            continue  # that key's vending key is not loaded here: try the meter's other keys
        try:
            return decode_token(case.digits, ea=case.meter.ea, decoder_key=decoder_key), role
        except StsError:
            continue
        finally:
            del decoder_key
    return None


def _explain_decoded(case: _Case) -> Explanation | None:
    found = _decode_under_keys(case)
    if found is None:
        return None
    decoded, key_role = found
    if decoded.kind == TokenKind.EXTENDED:
        return _extended(decoded)
    kind, key = str(decoded.kind), key_role.key

    def said(verdict: str, headline: str, details: list[str]) -> Explanation:
        return Explanation(verdict, headline, details, kind=kind, tid=decoded.tid, key_label=f"KRN {key.krn}")

    details = [_describe(decoded, kind, key)]
    if key_role.role == "old" and case.meter.key_state in (Meter.KeyState.CONFIRMED, Meter.KeyState.CODES_ISSUED):
        new_krn = max((k.to_krn for k in case.code_sets), default=key.krn + 1)
        state = "is confirmed on" if case.on_new_key else "may already be on (the update codes were issued for)"
        return said(
            Verdict.OLD_KEY,
            f"Made under the old key (revision {key.krn}) before the update. The meter {state} the new key "
            f"(revision {new_krn}) and refuses tokens made under the old one.",
            [
                *details,
                "Old tokens must be loaded BEFORE update codes 1 and 2. An STS token cannot be moved to the new key: "
                "open a case if the customer paid for units they could not load.",
            ],
        )
    if key_role.role == "new" and not case.on_new_key:
        return said(
            Verdict.NEEDS_CODES,
            f"Made under the new key (revision {key.krn}): the meter accepts it only after the update codes. "
            "Type update code 1, then update code 2, then this token.",
            details,
        )
    return _explain_history(case, decoded, key, details, said)


def _describe(decoded: DecodedToken, kind: str, key: MeterKey) -> str:
    made = tid_to_datetime(decoded.tid, key.base_date) if decoded.tid is not None else None
    what = {
        "credit": "Credit token",
        "currency_credit": "Currency token",
        "management": "Management token",
    }.get(kind, f"Token ({kind})")
    if decoded.units is not None and kind == "credit":
        what += f" for {decoded.units} kWh"
    elif decoded.units is not None and kind == "currency_credit":
        what += f" debiting {-decoded.units}" if decoded.units < 0 else f" crediting {decoded.units}"
    what += f", made under key revision {key.krn}"
    if made is not None:
        what += f" on {formats.date_format(made, 'DATETIME_FORMAT')}"  # the TID clock's wall time
    return what + "."


def _explain_history(
    case: _Case,
    decoded: DecodedToken,
    key: MeterKey,
    details: list[str],
    said: Callable[[str, str, list[str]], Explanation],
) -> Explanation:
    """A token of the meter's current key: where it stands among the tokens we issued."""
    same_key = [t for t in case.issued if t.sgc == key.sgc and t.krn == key.krn]
    mine = next((t for t in same_key if t.tid == decoded.tid), None)
    newer = [t for t in same_key if t.tid > (decoded.tid or 0)]
    if mine is not None:
        sale = f" for vend {mine.vend.reference}" if mine.vend else ""
        details.append(f"Issued on {_when(mine.issued_at)}{sale}.")
    if newer:
        latest = max(newer, key=lambda t: t.tid)
        return said(
            Verdict.OLDER_THAN_LAST,
            f"Older than the last token: a newer token was bought on {_when(latest.issued_at)}. Once a meter has "
            "accepted a newer token it refuses older ones (and it never accepts the same token twice).",
            [*details, "If these units were never loaded, open a case; the token itself cannot be revived."],
        )
    if mine is not None:
        return said(
            Verdict.ALREADY_USED,
            "Valid for this meter and its newest token, so a refusal means it was already used: each token is "
            "accepted only once.",
            [*details, "Ask the customer to check the credit on the meter: the units were most likely added."],
        )
    return said(
        Verdict.VALID,
        "Valid for this meter on its current key and newer than its last token: the meter should accept it. "
        "Ask the customer to type it again slowly.",
        [*details, "This token is not in our records of tokens issued to this meter."],
    )


_QUESTIONS: tuple[Callable[[_Case], Explanation | None], ...] = (
    _explain_update_code,
    _explain_test_token,
    _explain_decoded,
)


def _near_miss(typed: str, known: str) -> str:
    """How `typed` differs from `known` if by one digit or one swap of neighbours, else ""."""
    diffs = [i for i in range(20) if typed[i] != known[i]]
    if len(diffs) == 1:
        i = diffs[0]
        return f"digit {i + 1} was typed as {typed[i]} instead of {known[i]}"
    swapped = len(diffs) == 2 and diffs[1] == diffs[0] + 1
    if swapped and typed[diffs[0]] == known[diffs[1]] and typed[diffs[1]] == known[diffs[0]]:
        return f"digits {diffs[0] + 1} and {diffs[1] + 1} were swapped"
    return ""


def _explain_undecodable(case: _Case) -> Explanation:
    meter, digits = case.meter, case.digits
    elsewhere = [match for match in token_find(digits=digits) if match.meter.pk != meter.pk]
    if elsewhere:
        match = elsewhere[0]
        when = match.issued_token.issued_at if match.issued_token else match.key_change_set.created_at  # type: ignore[union-attr]
        what = "a token" if match.issued_token else f"update code {match.position}"
        return Explanation(
            Verdict.WRONG_METER,
            f"Wrong meter: this is {what} made for meter {match.meter.meter_number} on {_when(when)}, not for "
            f"meter {meter.meter_number}. A token only works on the meter it was bought for.",
            ["It cannot be moved to another meter; a reversal request can be recorded for the vend."],
        )
    known = [(t.digits, f"the token issued on {_when(t.issued_at)}") for t in case.issued]
    for kcs in case.code_sets:
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
