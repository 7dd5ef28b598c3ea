"""The *977# menu as a pure state machine: (inputs, language, backend) -> one screen.

Africa's Talking sends the whole session so far in `text` ("1*54000000015"), so every request
replays the inputs from the main menu. Nothing here touches Django: the `UssdBackend` protocol
supplies facts about meters and performs actions, and actions run only for the *last* input (a
replayed step never sends a second SMS or opens a second case). Parsing never depends on the
language, so a language change in the middle of a session cannot shift the meaning of later inputs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from tokens.sts import format_token as sts_format_token
from tokens.sts import is_valid_meter_number

MAX_SCREEN = 182  # characters a handset shows, "CON "/"END " included
MAX_TEXT = 120  # longer `text` is garbage or a loop: no legitimate path needs more than ~40
MAX_INPUTS = 15
LANGUAGES = ("en", "sw")
DEFAULT_LANGUAGE = "en"

_SEPARATORS = re.compile(r"[\s\-.]")


class MeterStatus(enum.Enum):
    NOT_FOUND = "not_found"
    NOT_SCHEDULED = "not_scheduled"
    AWAITING_CODES = "awaiting_codes"  # enrolled; the codes come with the next purchase
    CODES_READY = "codes_ready"
    CONFIRMED = "confirmed"
    FIELD_VISIT = "field_visit"


class Purpose(enum.Enum):
    CODES = "1"
    TOKENS = "2"
    CONFIRM = "3"
    REPORT = "4"


class Rejected(enum.Enum):
    CODE1 = "1"
    CODE2 = "2"
    TOKEN = "3"  # noqa: S105 - a menu choice
    OTHER = "4"


@dataclass(frozen=True)
class MeterFacts:
    """What the menu needs to know about one meter."""

    meter_number: str
    status: MeterStatus
    masked_name: str = ""
    registered_phone: str = ""
    update_from: date | None = None


@dataclass(frozen=True)
class TokenLine:
    issued_at: datetime
    units: Decimal | None
    digits: str


class UssdBackend(Protocol):
    """Reads (called for any step) and actions (called only for the last input of a request)."""

    def meter_facts(self, meter_number: str) -> MeterFacts | None: ...

    def last_tokens(self, meter_number: str) -> Sequence[TokenLine]: ...

    def deliver_codes(self, meter_number: str, phone: str) -> tuple[tuple[str, ...], bool]:
        """The codes to type (issued now if due and not made yet) and whether an SMS copy was queued."""
        ...

    def send_last_tokens_sms(self, meter_number: str) -> bool: ...

    def confirm(self, meter_number: str, phone: str) -> bool: ...

    def open_case(self, meter_number: str, phone: str, rejected: Rejected) -> str: ...

    def language_set(self, phone: str, language: str) -> None: ...


# --- Screens ------------------------------------------------------------------------------------
# Every text is GSM-7 only (no curly quotes): one odd character would halve an SMS and may not
# render on a feature phone. Tests render each screen with worst-case values and check MAX_SCREEN.

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "menu": (
            "KPLC Token Update\n1 Get my update codes\n2 My last tokens\n3 My meter accepted the codes\n"
            "4 My meter rejected the codes\n5 Help\n6 Kiswahili/Language"
        ),
        "invalid": "Invalid choice.\n",
        "back": "\n0 Back",
        "ask_meter": "Enter your meter number (the 11 digits on the meter or receipt)",
        "not_a_number": "That is not a meter number. Enter the 11 digits on your meter",
        "bad_meter": "{m} is not a valid meter number. Check the digits and enter it again",
        "not_found": "Meter {m} is not registered. Check the number and enter it again",
        "not_scheduled": (
            "Meter {m} is not scheduled for the token update yet. We will SMS you before it is. "
            "Keep buying and loading tokens as usual."
        ),
        "awaiting": (
            "Meter {m} gets the token update from {date}. Before then load all unused tokens. "
            "Update codes 1 and 2 come with your next purchase, or here on *977#."
        ),
        "codes_head": "Meter {m}: type in this order\n",
        "code_line": "{n}) {code}\n",
        "codes_tail": "{n}) then your token\nLoad old tokens first.",
        "sms_copy": " SMS copy sent.",
        "confirmed": "Meter {m} is already updated and confirmed. Nothing more to type. Thank you.",
        "field_visit": "Meter {m} needs a visit by a KPLC technician. We will call you. Do not type any codes.",
        "tokens_head": "Meter {m} last tokens:\n",
        "token_line": "{when} {units}: {token}\n",
        "tokens_sms": "SMS copy sent.",
        "tokens_sent": "We sent the last tokens of meter {m} by SMS to its registered phone ending {last3}.",
        "tokens_none": "No tokens found for meter {m}.",
        "no_phone": "Meter {m} has no registered phone. Visit a KPLC office to register your phone.",
        "confirm_ask": "Meter {m}{name}: did the meter accept update codes 1 and 2 and your token?\n1 Yes\n2 No",
        "confirm_done": "Thank you! Meter {m} is confirmed on the new key. Buy and load tokens as usual.",
        "confirm_failed": "Sorry, we could not record that now. Please try again later.",
        "no_codes_yet": "Meter {m} has no update codes yet, so there is nothing to confirm.",
        "report_what": (
            "Meter {m}: what did the meter reject?\n1 Update code 1\n2 Update code 2\n3 My token\n4 Something else"
        ),
        "report_done": (
            "Sorry! Case {ref} is open. KPLC care will call you on this phone. "
            "Tip: type update code 1, then update code 2, then the token."
        ),
        "help1": (
            "Type update code 1, then update code 2, then your token (3). BEFORE update code 1 load all unused "
            "tokens: "
            "old tokens stop working after the update.\n1 More"
        ),
        "help2": (
            "Lost the update codes? Choose 1 in the menu: they never change. KPLC SMS have no links. "
            "Never pay anyone for codes."
        ),
        "language": "Choose language / Chagua lugha\n1 English\n2 Kiswahili",
        "ended": "This session has ended. Dial *977# to start again.",
        "too_long": "Sorry, that was too long. Dial *977# to start again.",
        "rate_limited": "Too many requests from this phone. Please try again in a few minutes.",
        "unavailable": "Sorry, the service is busy. Please dial *977# again later.",
    },
    "sw": {
        "menu": (
            "KPLC Usasishaji Tokeni\n1 Pata namba za usasishaji\n2 Tokeni zangu za mwisho\n"
            "3 Mita imekubali namba\n4 Mita imekataa namba\n5 Msaada\n6 English/Lugha"
        ),
        "invalid": "Chaguo si sahihi.\n",
        "back": "\n0 Rudi",
        "ask_meter": "Weka namba ya mita yako (tarakimu 11 kwenye mita au risiti)",
        "not_a_number": "Hiyo si namba ya mita. Weka tarakimu 11 za mita yako",
        "bad_meter": "{m} si namba sahihi ya mita. Angalia tarakimu na uiweke tena",
        "not_found": "Mita {m} haijasajiliwa. Angalia namba na uiweke tena",
        "not_scheduled": (
            "Mita {m} bado haijapangiwa usasishaji. Tutakutumia SMS kabla. "
            "Endelea kununua na kuweka tokeni kama kawaida."
        ),
        "awaiting": (
            "Mita {m} itasasishwa kuanzia {date}. Kabla ya hapo weka tokeni zote za zamani. "
            "Namba za usasishaji 1 na 2 zitakuja na ununuzi wako ujao, au hapa *977#."
        ),
        "codes_head": "Mita {m}: weka kwa mpangilio huu\n",
        "code_line": "{n}) {code}\n",
        "codes_tail": "{n}) kisha tokeni yako\nWeka tokeni za zamani kwanza.",
        "sms_copy": " Nakala ya SMS imetumwa.",
        "confirmed": "Mita {m} tayari imesasishwa na kuthibitishwa. Hakuna cha kuweka zaidi. Asante.",
        "field_visit": "Mita {m} inahitaji fundi wa KPLC. Tutakupigia simu. Usiweke namba zozote.",
        "tokens_head": "Tokeni za mwisho za mita {m}:\n",
        "token_line": "{when} {units}: {token}\n",
        "tokens_sms": "Nakala ya SMS imetumwa.",
        "tokens_sent": "Tokeni za mwisho za mita {m} zimetumwa kwa SMS kwa simu iliyosajiliwa inayoishia {last3}.",
        "tokens_none": "Hakuna tokeni zilizopatikana kwa mita {m}.",
        "no_phone": "Mita {m} haina simu iliyosajiliwa. Tembelea ofisi ya KPLC kusajili simu yako.",
        "confirm_ask": (
            "Mita {m}{name}: je, mita ilikubali namba za usasishaji 1 na 2 na tokeni yako?\n1 Ndiyo\n2 Hapana"
        ),
        "confirm_done": "Asante! Mita {m} imethibitishwa kwenye ufunguo mpya. Nunua na uweke tokeni kama kawaida.",
        "confirm_failed": "Samahani, hatukuweza kuhifadhi hilo sasa. Tafadhali jaribu tena baadaye.",
        "no_codes_yet": "Mita {m} bado haina namba za usasishaji, kwa hivyo hakuna cha kuthibitisha.",
        "report_what": (
            "Mita {m}: mita ilikataa nini?\n1 Namba ya usasishaji 1\n2 Namba ya usasishaji 2\n3 Tokeni yangu\n"
            "4 Kitu kingine"
        ),
        "report_done": (
            "Pole! Kesi {ref} imefunguliwa. Huduma kwa wateja wa KPLC watakupigia simu hii. "
            "Weka namba ya usasishaji 1, kisha 2, kisha tokeni."
        ),
        "help1": (
            "Weka namba ya usasishaji 1, kisha 2, kisha tokeni yako (3). KABLA ya namba 1 weka tokeni zote "
            "ambazo hazijatumika: hazitafanya kazi baadaye.\n1 Zaidi"
        ),
        "help2": (
            "Umepoteza namba? Chagua 1 kwenye menyu: namba hazibadiliki. SMS za KPLC hazina viungo. "
            "Usimlipe mtu yeyote kwa namba."
        ),
        "language": "Chagua lugha / Choose language\n1 English\n2 Kiswahili",
        "ended": "Kipindi hiki kimeisha. Piga *977# kuanza upya.",
        "too_long": "Samahani, ulichoandika ni kirefu mno. Piga *977# kuanza upya.",
        "rate_limited": "Maombi mengi mno kutoka simu hii. Tafadhali jaribu tena baada ya dakika chache.",
        "unavailable": "Samahani, huduma ina shughuli nyingi. Tafadhali piga *977# tena baadaye.",
    },
}


def text_for(language: str, key: str, **values: object) -> str:
    texts = TEXTS.get(language, TEXTS[DEFAULT_LANGUAGE])
    return texts[key].format(**values)


@dataclass(frozen=True)
class Reply:
    """One screen: `render()` is what goes back to Africa's Talking."""

    body: str
    end: bool
    language: str

    def render(self) -> str:
        return ("END " if self.end else "CON ") + self.body


def end_screen(language: str, key: str) -> Reply:
    return Reply(text_for(language, key), True, language)


# --- The machine ----------------------------------------------------------------------------------


class Step(enum.Enum):
    MAIN = "main"
    LANGUAGE = "language"
    HELP1 = "help1"
    HELP2 = "help2"
    ASK_METER = "ask_meter"
    CONFIRM_ASK = "confirm_ask"
    REPORT_WHAT = "report_what"
    DONE = "done"  # an END screen: `final` holds it


@dataclass(frozen=True)
class State:
    step: Step = Step.MAIN
    language: str = DEFAULT_LANGUAGE
    purpose: Purpose | None = None
    meter: MeterFacts | None = None
    error: str = ""  # key of a message shown instead of (or before) the step's own prompt
    error_values: dict[str, str] = field(default_factory=dict)
    final: str = ""  # the END body once step is DONE


@dataclass(frozen=True)
class Context:
    phone: str
    backend: UssdBackend
    last: bool  # True while processing the request's final input: the only time actions run


def ussd_reply(*, text: str, phone: str, language: str, backend: UssdBackend) -> Reply:
    """The screen for a session whose inputs so far are `text` ("" on dialling)."""
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    if len(text) > MAX_TEXT:
        return end_screen(language, "too_long")
    inputs = text.split("*") if text else []
    if len(inputs) > MAX_INPUTS:
        return end_screen(language, "too_long")
    # "00" anywhere means "main menu": what came before it no longer matters.
    if "00" in inputs:
        inputs = inputs[len(inputs) - inputs[::-1].index("00") :]
    state = State(language=language)
    for index, raw in enumerate(inputs):
        if state.step is Step.DONE:
            return end_screen(state.language, "ended")
        context = Context(phone=phone, backend=backend, last=index == len(inputs) - 1)
        state = _advance(state, raw.strip(), context)
    return _render(state)


def _advance(state: State, choice: str, context: Context) -> State:
    # Every step starts clean: an error belongs to the screen that follows the bad input only.
    state = replace(state, error="", error_values={})
    if state.step is Step.MAIN:
        return _main(state, choice)
    if state.step is Step.LANGUAGE:
        if choice in ("1", "2"):
            language = LANGUAGES[int(choice) - 1]
            if context.last:
                context.backend.language_set(context.phone, language)
            return State(language=language)
        return _back_or_invalid(state, choice)
    if state.step is Step.HELP1:
        if choice == "1":
            return replace(state, step=Step.HELP2)
        return _back_or_invalid(state, choice)
    if state.step is Step.HELP2:
        return _back_or_invalid(state, choice)
    if state.step is Step.ASK_METER:
        return _meter_entered(state, choice, context)
    if state.step is Step.CONFIRM_ASK:
        return _confirm_answer(state, choice, context)
    if state.step is Step.REPORT_WHAT:
        return _report_answer(state, choice, context)
    raise AssertionError(state.step)  # pragma: no cover - DONE is handled by the caller


def _main(state: State, choice: str) -> State:
    if choice in {p.value for p in Purpose}:
        return replace(state, step=Step.ASK_METER, purpose=Purpose(choice), meter=None)
    if choice == "5":
        return replace(state, step=Step.HELP1)
    if choice == "6":
        return replace(state, step=Step.LANGUAGE)
    return replace(state, error="invalid")


def _back_or_invalid(state: State, choice: str) -> State:
    if choice == "0":
        return State(language=state.language)
    return replace(state, error="invalid")


def _done(state: State, key: str, **values: object) -> State:
    return replace(state, step=Step.DONE, final=text_for(state.language, key, **values))


def clean_meter_number(raw: str) -> str:
    return _SEPARATORS.sub("", raw)


def _meter_entered(state: State, choice: str, context: Context) -> State:
    if choice == "0":
        return State(language=state.language)
    digits = clean_meter_number(choice)
    if not digits.isascii() or not digits.isdigit():
        return replace(state, error="not_a_number")
    if not is_valid_meter_number(digits):
        return replace(state, error="bad_meter", error_values={"m": digits[:13]})
    facts = context.backend.meter_facts(digits)
    if facts is None or facts.status is MeterStatus.NOT_FOUND:
        return replace(state, error="not_found", error_values={"m": digits})
    state = replace(state, meter=facts)
    m = facts.meter_number
    if state.purpose is Purpose.CODES:
        return _codes(state, facts, context)
    if state.purpose is Purpose.TOKENS:
        return _tokens(state, facts, context)
    if state.purpose is Purpose.CONFIRM:
        if facts.status is MeterStatus.CODES_READY:
            return replace(state, step=Step.CONFIRM_ASK)
        key = {
            MeterStatus.NOT_SCHEDULED: "not_scheduled",
            MeterStatus.AWAITING_CODES: "no_codes_yet",
            MeterStatus.CONFIRMED: "confirmed",
            MeterStatus.FIELD_VISIT: "field_visit",
        }[facts.status]
        return _done(state, key, m=m)
    return replace(state, step=Step.REPORT_WHAT)


def _codes(state: State, facts: MeterFacts, context: Context) -> State:
    m = facts.meter_number
    if facts.status is MeterStatus.NOT_SCHEDULED:
        return _done(state, "not_scheduled", m=m)
    if facts.status is MeterStatus.AWAITING_CODES:
        when = f"{facts.update_from:%d/%m/%Y}" if facts.update_from else "soon"
        return _done(state, "awaiting", m=m, date=when)
    if facts.status is MeterStatus.CONFIRMED:
        return _done(state, "confirmed", m=m)
    if facts.status is MeterStatus.FIELD_VISIT:
        return _done(state, "field_visit", m=m)
    if not context.last:
        return _done(state, "unavailable")  # an END screen; its wording is never shown
    codes, sent = context.backend.deliver_codes(m, context.phone)
    if not codes:
        return _done(state, "unavailable")
    language = state.language
    body = text_for(language, "codes_head", m=m)
    for number, code in enumerate(codes, start=1):
        body += text_for(language, "code_line", n=number, code=format_token(code))
    body += text_for(language, "codes_tail", n=len(codes) + 1)
    if sent:
        body += text_for(language, "sms_copy")
    return replace(state, step=Step.DONE, final=body)


def _tokens(state: State, facts: MeterFacts, context: Context) -> State:
    m = facts.meter_number
    if not context.last:
        return _done(state, "tokens_none", m=m)  # an END screen; its wording is never shown
    tokens = list(context.backend.last_tokens(m))
    if not tokens:
        return _done(state, "tokens_none", m=m)
    if not facts.registered_phone:
        return _done(state, "no_phone", m=m)
    sent = context.backend.send_last_tokens_sms(m)
    if facts.registered_phone != context.phone:
        return _done(state, "tokens_sent", m=m, last3=facts.registered_phone[-3:])
    language = state.language
    body = text_for(language, "tokens_head", m=m)
    for line in tokens[:2]:
        units = f"{line.units}kWh" if line.units is not None else ""
        when, token = f"{line.issued_at:%d/%m}", format_token(line.digits)
        body += text_for(language, "token_line", when=when, units=units, token=token)
    if sent:
        body += text_for(language, "tokens_sms")
    return replace(state, step=Step.DONE, final=body.rstrip())


def _confirm_answer(state: State, choice: str, context: Context) -> State:
    assert state.meter is not None
    m = state.meter.meter_number
    if choice == "1":
        if context.last and not context.backend.confirm(m, context.phone):
            return _done(state, "confirm_failed")
        return _done(state, "confirm_done", m=m)
    if choice == "2":
        return replace(state, step=Step.REPORT_WHAT)
    return _back_or_invalid(state, choice)


def _report_answer(state: State, choice: str, context: Context) -> State:
    assert state.meter is not None
    if choice in {r.value for r in Rejected}:
        reference = ""
        if context.last:
            reference = context.backend.open_case(state.meter.meter_number, context.phone, Rejected(choice))
        return _done(state, "report_done", ref=reference)
    return _back_or_invalid(state, choice)


def format_token(digits: str) -> str:
    """'12345678901234567890' -> '1234 5678 9012 3456 7890': the engine's grouping, with spaces
    (what a USSD screen shows best, and what customers read and type)."""
    return sts_format_token(digits).replace("-", " ")


def _render(state: State) -> Reply:
    language = state.language
    if state.step is Step.DONE:
        return _fit(Reply(state.final, True, language))
    error = text_for(language, state.error, **state.error_values) if state.error else ""
    back = text_for(language, "back")
    if state.step is Step.MAIN:
        body = text_for(language, "menu")
        return _fit(Reply((error + body) if error else body, False, language))
    if state.step is Step.ASK_METER:
        # Meter-number errors replace the prompt: the customer simply types the number again.
        body = (error if state.error != "invalid" else "") or text_for(language, "ask_meter")
        return _fit(Reply(body + back, False, language))
    if state.step is Step.CONFIRM_ASK:
        assert state.meter is not None
        name = f" ({state.meter.masked_name[:24]})" if state.meter.masked_name else ""
        body = text_for(language, "confirm_ask", m=state.meter.meter_number, name=name)
    elif state.step is Step.REPORT_WHAT:
        assert state.meter is not None
        body = text_for(language, "report_what", m=state.meter.meter_number)
    else:
        body = text_for(language, state.step.value)
    return _fit(Reply(error + body + back, False, language))


def _fit(reply: Reply) -> Reply:
    """A last line of defence: a handset truncates (or the gateway rejects) a longer screen."""
    limit = MAX_SCREEN - 4
    if len(reply.body) <= limit:
        return reply
    return replace(reply, body=reply.body[: limit - 3].rstrip() + "...")
