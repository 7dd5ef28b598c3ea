"""The *977# menu as a pure function: every branch, both languages, garbage at every step, screen sizes.

A fake backend stands in for the database (these are unit tests of one module); the same menu is
played end to end through the real callback in test_ussd_sessions.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from campaigns.texts import gsm7_length
from care import ussd
from care.ussd import MAX_SCREEN, MeterFacts, MeterStatus, Rejected, TokenLine, ussd_reply
from tests.factories import luhn_complete

PHONE = "+254712000001"
OTHER = "+254733000002"
CODE1 = "12345678901234567890"
CODE2 = "09876543210987654321"
TOKEN = "11112222333344445555"


def meter_number(n: int) -> str:
    return luhn_complete(f"54{n:08d}")


METERS = {
    meter_number(1): MeterStatus.NOT_SCHEDULED,
    meter_number(2): MeterStatus.AWAITING_CODES,
    meter_number(3): MeterStatus.CODES_READY,
    meter_number(4): MeterStatus.CONFIRMED,
    meter_number(5): MeterStatus.FIELD_VISIT,
}
NOT_SCHEDULED, AWAITING, READY, CONFIRMED, FIELD_VISIT = METERS
UNKNOWN = meter_number(99)
BAD_LUHN = READY[:-1] + str((int(READY[-1]) + 1) % 10)


class FakeBackend:
    def __init__(self, registered_phone: str = PHONE) -> None:
        self.registered_phone = registered_phone
        self.calls: list[tuple] = []

    def meter_facts(self, number: str) -> MeterFacts | None:
        if number not in METERS:
            return None
        return MeterFacts(
            meter_number=number,
            status=METERS[number],
            masked_name="W****** K*****",
            registered_phone=self.registered_phone,
            update_from=dt.date(2026, 12, 24),
        )

    def deliver_codes(self, number: str, phone: str) -> tuple[tuple[str, ...], bool]:
        self.calls.append(("codes", number, phone))
        return (CODE1, CODE2), True

    def last_tokens(self, number: str) -> list[TokenLine]:
        when = dt.datetime(2026, 11, 20, 9, 30)
        return [TokenLine(when, Decimal("1234.5"), TOKEN), TokenLine(when, Decimal("99.9"), TOKEN)]

    def send_last_tokens_sms(self, number: str) -> bool:
        self.calls.append(("tokens_sms", number))
        return True

    def confirm(self, number: str, phone: str) -> bool:
        self.calls.append(("confirm", number))
        return True

    def open_case(self, number: str, phone: str, rejected: Rejected) -> str:
        self.calls.append(("case", number, rejected))
        return "C123456"

    def language_set(self, phone: str, language: str) -> None:
        self.calls.append(("language", phone, language))


def play(text: str, language: str = "en", backend: FakeBackend | None = None, phone: str = PHONE) -> str:
    screen = ussd_reply(text=text, phone=phone, language=language, backend=backend or FakeBackend()).render()
    assert screen.startswith(("CON ", "END "))
    assert len(screen) <= MAX_SCREEN, (len(screen), screen)
    assert gsm7_length(screen) is not None, f"non GSM-7 character in {screen!r}"
    return screen


# Every path a customer can take, as the `text` AT would send at its last step.
BRANCHES = {
    "codes_ready": f"1*{READY}",
    "codes_not_scheduled": f"1*{NOT_SCHEDULED}",
    "codes_awaiting": f"1*{AWAITING}",
    "codes_confirmed": f"1*{CONFIRMED}",
    "codes_field_visit": f"1*{FIELD_VISIT}",
    "tokens": f"2*{READY}",
    "confirm_yes": f"3*{READY}*1",
    "confirm_no_then_report": f"3*{READY}*2*1",
    "confirm_not_scheduled": f"3*{NOT_SCHEDULED}",
    "confirm_awaiting": f"3*{AWAITING}",
    "confirm_already": f"3*{CONFIRMED}",
    "report_code1": f"4*{READY}*1",
    "report_code2": f"4*{READY}*2",
    "report_token": f"4*{READY}*3",
    "report_other": f"4*{READY}*4",
    "help": "5",
    "help_more": "5*1",
    "language": "6",
}


@pytest.mark.parametrize("language", ["en", "sw"])
@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_every_prefix_of_every_branch_fits_a_screen(name: str, language: str) -> None:
    inputs = BRANCHES[name].split("*")
    for end in range(len(inputs) + 1):
        play("*".join(inputs[:end]), language)


@pytest.mark.parametrize("language", ["en", "sw"])
@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_garbage_at_every_step_gets_a_friendly_screen_and_a_way_back(name: str, language: str) -> None:
    inputs = BRANCHES[name].split("*")
    for step in range(len(inputs)):
        before = "*".join(inputs[:step])
        state_screen = play(before, language)
        if state_screen.startswith("END "):
            continue
        for garbage in ["x", "99", "#", "", "1;DROP TABLE", "9" * 40, "*"]:
            text = f"{before}*{garbage}" if before else garbage
            screen = play(text, language)
            assert screen.startswith("CON "), (text, screen)  # never an END, never an error page
            back = "0 Back" if language == "en" else "0 Rudi"
            assert back in screen or "1 " in screen, screen
            # ... and "0" (or "00") really goes back to the main menu.
            menu = play(f"{text}*00", language)
            assert menu == play("", language)


def test_the_main_menu_offers_every_branch_in_both_languages() -> None:
    english = play("", "en")
    swahili = play("", "sw")
    assert english.startswith("CON KPLC")
    for n in "123456":
        assert f"\n{n} " in english and f"\n{n} " in swahili
    assert "update codes" in english and "usasishaji" in swahili
    assert english != swahili


def test_codes_are_labelled_1_and_2_in_typing_order_then_the_token() -> None:
    backend = FakeBackend()
    for language, then in (("en", "3) then your token"), ("sw", "3) kisha tokeni yako")):
        screen = play(f"1*{READY}", language, backend)
        assert screen.startswith("END ")
        first, second = screen.index("1) 1234 5678 9012 3456 7890"), screen.index("2) 0987 6543 2109 8765 4321")
        assert first < second < screen.index(then)
    assert ("codes", READY, PHONE) in backend.calls


@pytest.mark.parametrize(
    ("meter", "en", "sw"),
    [
        (NOT_SCHEDULED, "not scheduled for the token update yet", "bado haijapangiwa"),
        (AWAITING, "from 24/12/2026", "kuanzia 24/12/2026"),
        (CONFIRMED, "already updated and confirmed", "tayari imesasishwa"),
        (FIELD_VISIT, "needs a visit by a KPLC technician", "inahitaji fundi"),
    ],
)
def test_plain_answers_instead_of_codes(meter: str, en: str, sw: str) -> None:
    backend = FakeBackend()
    assert en in play(f"1*{meter}", "en", backend)
    assert sw in play(f"1*{meter}", "sw", backend)
    assert not [c for c in backend.calls if c[0] == "codes"]


@pytest.mark.parametrize("language", ["en", "sw"])
def test_meter_number_mistakes_ask_again(language: str) -> None:
    not_found = play(f"1*{UNKNOWN}", language)
    assert UNKNOWN in not_found and not_found.startswith("CON ")
    bad = play(f"1*{BAD_LUHN}", language)
    assert BAD_LUHN in bad and bad.startswith("CON ")
    assert play("1*abc", language).startswith("CON ")
    # The customer then types the right number and gets the codes.
    assert "1) 1234" in play(f"1*{BAD_LUHN}*{READY}", language)
    # Spaces and dashes as printed on the meter are fine.
    assert "1) 1234" in play(f"1*{READY[:4]} {READY[4:8]}-{READY[8:]}", language)


def test_last_tokens_shown_on_screen_only_to_the_registered_phone() -> None:
    backend = FakeBackend(registered_phone=PHONE)
    own = play(f"2*{READY}", "en", backend, phone=PHONE)
    assert "1111 2222 3333 4444 5555" in own and "1234.5kWh" in own and "SMS copy sent" in own
    stranger = play(f"2*{READY}", "en", backend, phone=OTHER)
    assert "1111" not in stranger and "ending 001" in stranger
    assert backend.calls.count(("tokens_sms", READY)) == 2


def test_a_meter_with_no_phone_cannot_get_its_tokens_by_sms() -> None:
    backend = FakeBackend(registered_phone="")
    screen = play(f"2*{READY}", "sw", backend, phone=OTHER)
    assert "haina simu iliyosajiliwa" in screen
    assert "1111" not in screen


def test_confirm_asks_before_confirming_and_no_leads_to_a_report() -> None:
    backend = FakeBackend()
    ask = play(f"3*{READY}", "en", backend)
    assert ask.startswith("CON ") and "W****** K*****" in ask and "1 Yes" in ask
    assert backend.calls == []
    assert "confirmed on the new key" in play(f"3*{READY}*1", "en", backend)
    assert backend.calls == [("confirm", READY)]
    report = play(f"3*{READY}*2", "sw", backend)
    assert "mita ilikataa nini" in report
    assert "Kesi C123456" in play(f"3*{READY}*2*2", "sw", backend)
    assert backend.calls[-1] == ("case", READY, Rejected.CODE2)


def test_nothing_to_confirm_before_codes() -> None:
    backend = FakeBackend()
    assert "nothing to confirm" in play(f"3*{AWAITING}", "en", backend)
    assert "not scheduled" in play(f"3*{NOT_SCHEDULED}", "en", backend)
    assert backend.calls == []


@pytest.mark.parametrize("choice", list(Rejected))
def test_report_opens_a_case_with_what_was_rejected(choice: Rejected) -> None:
    backend = FakeBackend()
    screen = play(f"4*{READY}*{choice.value}", "en", backend)
    assert screen.startswith("END ") and "Case C123456" in screen
    assert backend.calls == [("case", READY, choice)]


def test_actions_run_only_for_the_last_input() -> None:
    backend = FakeBackend()
    # A session that opened a case, then (in a broken client) kept sending: the case is not re-opened.
    screen = play(f"4*{READY}*1*1", "en", backend)
    assert screen.startswith("END ") and "ended" in screen
    assert backend.calls == []


def test_help_says_what_to_type_in_what_order_and_to_load_old_tokens_first() -> None:
    english = play("5", "en")
    assert "update code 1, then update code 2, then your token" in english and "load all unused tokens" in english
    assert "old tokens stop working" in english
    assert "Choose 1 in the menu" in play("5*1", "en")
    assert "KABLA ya namba 1" in play("5", "sw")


def test_language_choice_is_remembered_and_parsing_does_not_depend_on_it() -> None:
    backend = FakeBackend()
    menu = play("6*2", "en", backend)
    assert "Pata namba za usasishaji" in menu
    assert backend.calls == [("language", PHONE, "sw")]
    # Next request of the same session arrives with the saved language: same path, same meaning.
    assert "Weka namba ya mita" in play("6*2*1", "sw", backend)
    assert "Enter your meter number" in play("6*1*1", "sw", backend)


def test_over_long_text_ends_politely() -> None:
    assert "too long" in play("1*" + "5" * 200)
    assert "ni kirefu mno" in play("*".join(["0"] * 40), "sw")


def test_every_text_fits_with_the_longest_values() -> None:
    values = {
        "m": "0" * 13,
        "date": "24/12/2026",
        "last3": "999",
        "name": " (" + "W" * 24 + ")",
        "ref": "C9999999",
        "n": 9,
        "code": "1234 5678 9012 3456 7890",
        "when": "20/11",
        "units": "1234.5kWh",
        "token": "1234 5678 9012 3456 7890",
    }
    for language, texts in ussd.TEXTS.items():
        for key, template in texts.items():
            body = template.format(**values)
            assert len(body) + 4 <= MAX_SCREEN, (language, key, len(body))
            assert gsm7_length(body) is not None, (language, key)
        assert set(texts) == set(ussd.TEXTS["en"])  # no missing translation
