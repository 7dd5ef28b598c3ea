"""Whole *977# sessions through POST /ussd/ (the simulator driving Django's test client), real database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from campaigns.models import Enrollment
from care.models import CareCase, UssdLanguage
from care.ussd import MAX_SCREEN
from care.ussd_simulator import UssdSession
from meters.models import Meter
from sms.models import Message
from tests.care.factories import BEFORE_ROLLOVER, enroll, make_meter, vend
from tests.factories import luhn_complete
from tokens.sts import format_token as token_display

pytestmark = pytest.mark.django_db(transaction=False)

CALLER = "+254799000111"


@pytest.fixture
def post():
    client = Client()

    def _post(form: dict[str, str]) -> str:
        response = client.post("/ussd/", form)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        body = response.content.decode()
        assert body.startswith(("CON ", "END ")) and len(body) <= MAX_SCREEN, body
        return body

    return _post


def session(post, phone: str = CALLER) -> UssdSession:
    return UssdSession(post=post, phone=phone)


def set_language(phone: str, language: str) -> None:
    UssdLanguage.objects.update_or_create(phone=phone, defaults={"language": language})


@pytest.mark.parametrize("language", ["en", "sw"])
def test_get_codes_after_a_vend_shows_the_stored_codes_in_order_and_sends_an_sms(post, campaign, partner, language):
    meter = make_meter(phone="+254711000222")  # not the caller: the SMS copy goes to the registered phone
    enroll(campaign, meter)
    sale = vend(partner, meter)
    codes = sale.key_change_set.codes
    set_language(CALLER, language)

    screens = session(post).play(["1", meter.meter_number])

    last = screens[-1]
    assert last.startswith("END ")
    assert last.index("1) " + token_display(codes[0]).replace("-", " ")) < last.index(
        "2) " + token_display(codes[1]).replace("-", " ")
    )
    assert not Message.objects.filter(recipient=CALLER).exists()
    sms = Message.objects.filter(meter=meter, recipient=meter.phone, purpose="codes").latest("id")  # the USSD copy
    assert token_display(codes[0]) in sms.body and token_display(codes[1]) in sms.body
    assert len(sms.body) <= 160
    # A second session gets the identical codes (struggle 2: lost SMS, same codes every time).
    assert session(post).play(["1", meter.meter_number])[-1] == last


def test_get_codes_for_a_due_meter_without_a_purchase_issues_them_once(post, campaign):
    meter = make_meter()
    enroll(campaign, meter)
    first = session(post).play(["1", meter.meter_number])[-1]
    second = session(post).play(["1", meter.meter_number])[-1]
    assert "1) " in first and first == second
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CODES_ISSUED
    assert meter.key_change_sets.count() == 1
    assert Enrollment.objects.get(meter=meter).state == "codes_issued"


def test_plain_answers_for_each_meter_situation(post, campaign):
    not_scheduled = make_meter()
    future = make_meter()
    enroll(campaign, future, when=timezone.now() + dt.timedelta(days=3))
    confirmed = make_meter(key_state=Meter.KeyState.CONFIRMED)
    field_visit = make_meter(status=Meter.Status.NON_COMPLIANT, key_state=Meter.KeyState.NON_COMPLIANT)
    unknown = luhn_complete("5499999999")

    def answer(meter_number: str) -> str:
        return session(post).play(["1", meter_number])[-1]

    assert "not scheduled for the token update yet" in answer(not_scheduled.meter_number)
    assert (timezone.localtime() + dt.timedelta(days=3)).strftime("%d/%m/%Y") in answer(future.meter_number)
    assert "already updated and confirmed" in answer(confirmed.meter_number)
    assert "needs a visit by a KPLC technician" in answer(field_visit.meter_number)
    assert "is not registered" in answer(unknown)
    assert "not a valid meter number" in answer(unknown[:-1] + str((int(unknown[-1]) + 1) % 10))
    assert not Message.objects.exists()


def test_last_tokens_go_to_the_registered_phone_and_show_only_to_it(post, campaign, partner):
    meter = make_meter(phone="+254711222333")
    enroll(campaign, meter)
    sale = vend(partner, meter)
    digits = sale.credit_token.digits

    stranger = session(post, phone=CALLER).play(["2", meter.meter_number])[-1]
    assert digits[:4] not in stranger.replace(meter.meter_number, "") and "ending 333" in stranger
    owner = session(post, phone="0711 222 333").play(["2", meter.meter_number])[-1]
    assert token_display(digits).replace("-", " ") in owner
    resent = Message.objects.filter(meter=meter, vend_id=sale.pk).order_by("id")
    assert {m.recipient for m in resent} == {"+254711222333"}  # the vend's SMS + two copies
    assert resent.count() == 3


def test_confirm_moves_the_enrollment_to_confirmed(post, campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    vend(partner, meter)
    set_language(CALLER, "sw")
    screens = session(post).play(["3", meter.meter_number, "1"])
    assert "imethibitishwa" in screens[-1]
    enrollment = Enrollment.objects.get(meter=meter)
    assert enrollment.state == "confirmed"
    assert enrollment.events.filter(to_state="confirmed", actor_label=f"ussd:{CALLER}").exists()
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CONFIRMED


def test_report_rejected_codes_opens_one_case_and_marks_the_enrollment_failed(post, campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    vend(partner, meter)
    first = session(post).play(["4", meter.meter_number, "1"])[-1]
    again = session(post).play(["4", meter.meter_number, "1"])[-1]
    case = CareCase.objects.get(meter=meter)
    assert case.reference in first and case.reference in again  # the second report joins the open case
    assert case.kind == CareCase.Kind.CODE1_REJECTED and case.source == "ussd" and case.phone == CALLER
    assert Enrollment.objects.get(meter=meter).state == "failed"
    # ... and the customer can still fetch the very same codes.
    assert "1) " in session(post).play(["1", meter.meter_number])[-1]


def test_language_choice_is_remembered_per_phone(post):
    s = session(post)
    assert "Choose language" in s.play(["6"])[-1]
    assert "Pata namba za usasishaji" in s.send("2")
    assert UssdLanguage.objects.get(phone=CALLER).language == "sw"
    assert session(post).dial().startswith("CON KPLC Usasishaji")
    assert session(post, phone="+254700000009").dial().startswith("CON KPLC Token Update")


def test_a_retransmitted_request_gets_the_same_screen_and_does_nothing_twice(post, campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    vend(partner, meter)
    s = session(post)
    s.play(["4", meter.meter_number])
    first = s.send("3")
    assert s.request(s.text) == first  # AT retried the last request
    assert s.request(s.text + "*1").startswith("END ") and "ended" in s.screens[-1]
    assert CareCase.objects.filter(meter=meter).count() == 1
    assert CareCase.objects.get(meter=meter).comments.count() == 0


def test_garbage_never_breaks_the_callback(post, campaign):
    meter = make_meter()
    for text in ["", "*", "**", "1*", "1*x*y", "\u00e9\u20ac", "1*" + "9" * 500, "7", "1*0*1*" + meter.meter_number]:
        screen = UssdSession(post=post, phone=CALLER).request(text)
        assert screen.startswith(("CON ", "END "))
    # Missing fields and odd phone numbers: still a friendly END, never a 500.
    assert Client().post("/ussd/", {}).content.decode().startswith("END ")
    assert UssdSession(post=post, phone="not-a-phone").request("").startswith("CON ")
    assert Client().get("/ussd/").status_code == 405


def test_each_phone_is_rate_limited(post, settings):
    limit = settings.USSD_RATE_LIMIT_PER_MINUTE
    screens = [session(post).dial() for _ in range(limit + 3)]
    assert all(s.startswith("CON KPLC") for s in screens[:limit])
    assert "Too many requests" in screens[-1]
    assert session(post, phone="+254700000010").dial().startswith("CON KPLC")  # other phones unaffected


def test_a_meter_vended_before_the_rollover_is_found_by_old_tokens(post, campaign, partner):
    # Setup sanity for the decode tests: a pre-rollover vend under the old key exists alongside.
    meter = make_meter()
    old = vend(partner, meter, now=BEFORE_ROLLOVER)
    assert old.credit_token.krn == 1
