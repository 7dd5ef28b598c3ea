"""The care desk in a real headless Chromium, one test per role: find the customer from the front
door by the phone as they say it, open the meter, click every action the role has and check what
the page then shows; roles without an action are told why, and a forced request gets the 403 page
naming the role that may."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEvent
from care.models import CareCase
from meters.models import Meter
from sms.backends.memory import MemoryBackend
from sms.models import Message
from tests.browser import chromium_page
from tests.care.factories import enroll, make_meter, vend
from tests.conftest import STAFF_PASSWORD
from tokens.models import IssuedToken
from tokens.sts import format_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STAFF_TIME = re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}$")  # "1 Dec 2026 22:17", Nairobi

# Submits a POST from the page as a crafted request would (a role's missing button cannot be clicked).
FORCED_POST_JS = """
([url, fields]) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = url;
  const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
  for (const [name, value] of Object.entries({csrfmiddlewaretoken: token, ...fields})) {
    const input = document.createElement('input');
    input.type = 'hidden'; input.name = name; input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}
"""


@pytest.fixture
def page(transactional_db, live_server, monkeypatch):
    yield from chromium_page(monkeypatch, width=1366, height=900)


@pytest.fixture
def bought(campaign, partner):
    """A meter whose codes came with a KES 500 purchase at Test Bank (SMS sent, not yet typed)."""
    meter = make_meter()
    enroll(campaign, meter)
    sale = vend(partner, meter)
    meter.refresh_from_db()
    return meter, sale


def spoken(phone: str) -> str:
    """The phone as a customer reads it out: "0712 345 678" for +254712345678."""
    return f"0{phone[4:7]} {phone[7:10]} {phone[10:]}"


def mistyped(digits: str) -> str:
    return digits[:7] + str((int(digits[7]) + 1) % 10) + digits[8:]


def sign_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", user.username)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    assert page.inner_text("#site-name") == "⚡ KPLC care desk"


def find(page, term: str, meter: Meter) -> None:
    page.fill("#find-q", term)
    page.click("#find-customer button[type=submit]")
    page.wait_for_url(re.compile(rf"/admin/meters/meter/{meter.pk}/change/$"))


def status_line(page) -> str:
    return page.inner_text("#status-line")


def click_action(page, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def test_care_agent_finds_the_customer_by_phone_and_works_the_meter(page, live_server, staff, bought, meter_factory):
    from accounts.roles import CARE_AGENT

    meter, sale = bought
    agent = staff(CARE_AGENT, "agent")
    sign_in(page, live_server, agent)

    # The front door: one search, the queues.
    assert page.get_attribute("#find-q", "autofocus") is not None
    assert page.inner_text("[data-queue=cases] .queue-count") == "0"
    find(page, spoken(meter.phone), meter)

    # Status first, in plain words, with the next step; then the actions; the story; records folded.
    line = status_line(page)
    assert line.startswith("Update codes issued ") and "with a KES 500.00 purchase at Test Bank" in line
    assert "waiting for the customer to type them." in line
    assert "decode the digits the customer typed below" in page.inner_text("#next-step")
    boxes = {name: page.locator(name).bounding_box()["y"] for name in ("#desk-status", "#care-actions", "#timeline")}
    assert boxes["#desk-status"] < boxes["#care-actions"] < boxes["#timeline"] < 900  # all on the first screen
    assert not page.is_visible("#meter_form")  # the register fields are folded
    assert page.locator("#records").get_attribute("open") is None
    times = page.locator("#timeline time").all_inner_texts()
    assert times and all(STAFF_TIME.match(t) for t in times), times
    kinds = page.locator("#timeline li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert kinds.index("notice") < kinds.index("codes") and "vend" in kinds and "sms" in kinds

    # Decode what the customer typed: a slip of one digit, then the right code.
    code1, code2 = sale.key_change_set.codes
    page.fill("#id_digits", " ".join(mistyped(code1)[i : i + 4] for i in range(0, 20, 4)))
    click_action(page, "#action-decode button")
    headline = page.inner_text("#decode-result .result-headline")
    assert headline.startswith("Typing mistake: this is update code 1 for this meter, but digit 8 was typed as ")
    page.fill("#id_digits", code2)
    click_action(page, "#action-decode button")
    assert page.inner_text("#decode-result .result-headline").startswith("Update code 2 of this meter")
    assert "The customer typed one of this meter's update codes" in page.inner_text("#timeline")
    assert AuditEvent.objects.filter(action="token.decoded", actor_label="user:agent").count() == 2

    # Resend the codes, then the last token: the same digits, to the registered phone.
    MemoryBackend.reset()
    click_action(page, "#action-resend button:has-text('Resend update codes')")
    assert f"Update codes queued by SMS to {meter.phone}." in page.inner_text(".messagelist")
    click_action(page, "#action-resend button:has-text('Resend last token')")
    assert f"Last token queued by SMS to {meter.phone}." in page.inner_text(".messagelist")
    bodies = [sms.body for sms in MemoryBackend.outbox if sms.recipient == meter.phone]
    assert len(bodies) == 2 and format_token(code1) in bodies[0] and format_token(sale.credit_token.digits) in bodies[1]
    assert "Update codes re-sent by SMS" in page.inner_text("#timeline")

    # Open a case for the customer.
    page.select_option("#id_kind", "code1_rejected")
    page.fill("#id_summary", "Meter shows Err after the first code")
    click_action(page, "#action-case button")
    case = CareCase.objects.get(meter=meter)
    assert f"Case {case.reference} opened." in page.inner_text(".messagelist")
    assert f"Case {case.reference} opened: Meter rejected update code 1" in page.inner_text("#timeline")
    assert "1 open case" in page.inner_text("#desk-status")

    # The customer typed everything: mark it confirmed.
    click_action(page, "#action-state button:has-text('Mark confirmed')")
    assert "Marked confirmed on the new key." in page.inner_text(".messagelist")
    assert status_line(page).startswith("Confirmed on the new key (revision 2)")
    assert status_line(page).endswith("by agent.")

    # Another customer's meter is too old for the codes: flag it for a field visit.
    old = make_meter()
    page.goto(f"{live_server.url}/admin/")
    find(page, old.meter_number, old)
    page.fill("#id_reason", "pre-2014 model")
    click_action(page, "#action-state button:has-text('Flag for a field visit')")
    assert "Flagged for a field visit." in page.inner_text(".messagelist")
    assert status_line(page).startswith("Flagged for a field visit") and "pre-2014 model" in status_line(page)
    page.goto(f"{live_server.url}/admin/")
    assert page.inner_text("[data-queue=field-visits] .queue-count") == "1"
    assert page.inner_text("[data-queue=cases] .queue-count") == "1"

    # No supervisor tools, and the page says who has them; a forced request gets the 403 page.
    find(page, meter.meter_number, meter)
    assert page.locator("#action-supervisor").count() == 0
    assert "need the Care supervisor role" in page.inner_text("#supervisor-note")
    with page.expect_navigation():
        page.evaluate(FORCED_POST_JS, [f"/admin/meters/meter/{meter.pk}/care/reveal/", {}])
    assert page.inner_text("h1") == "Your role does not allow this"
    assert "Showing token digits needs the Care supervisor role; you are signed in as agent (Care agent)." in (
        page.inner_text("#forbidden-reason")
    )
    assert not AuditEvent.objects.filter(action="token.digits_viewed").exists()


def test_care_supervisor_is_told_the_way_forward_then_issues_a_management_token_and_sees_digits(
    page, live_server, staff, bought
):
    from accounts.roles import CARE_SUPERVISOR

    meter, sale = bought
    sign_in(page, live_server, staff(CARE_SUPERVISOR, "supervisor"))
    spaced_token = " ".join(sale.credit_token.digits[i : i + 4] for i in range(0, 20, 4))
    find(page, spaced_token, meter)  # the 20 digits a customer reads out find the meter too

    # On the retired key no management token can be made: the refusal says why and what to do.
    page.select_option("#id_kind_mgmt", "clear_tamper")
    click_action(page, "#action-supervisor button:has-text('Issue (audited)')")
    refusal = page.inner_text(".messagelist")
    assert f"No clear tamper token can be made for meter {meter.meter_number} yet" in refusal
    assert "still on key revision 1, which the TID rollover retired" in refusal
    assert "Have the customer type update code 1, then update code 2" in refusal
    assert not IssuedToken.objects.filter(meter=meter, kind="management").exists()

    click_action(page, "#action-state button:has-text('Mark confirmed')")
    assert status_line(page).startswith("Confirmed on the new key (revision 2)")
    page.select_option("#id_kind_mgmt", "clear_tamper")
    click_action(page, "#action-supervisor button:has-text('Issue (audited)')")
    token = IssuedToken.objects.get(meter=meter, kind="management")
    assert page.inner_text("#management-token h2") == "Clear tamper token issued"
    assert page.inner_text("#management-token .token-digits") == format_token(token.digits)
    assert "Management token issued (subclass 5, key revision 2)" in page.inner_text("#timeline")

    # Token digits, shown on request and audited each time.
    click_action(page, "#action-supervisor button:has-text('Show token digits')")
    revealed = page.inner_text("#revealed")
    assert format_token(sale.credit_token.digits) in revealed and format_token(token.digits) in revealed
    assert all(format_token(code) in revealed for code in sale.key_change_set.codes)
    assert AuditEvent.objects.filter(action="token.digits_viewed", actor_label="user:supervisor").count() == 1
    assert "Token digits shown on the desk by supervisor" in page.inner_text("#timeline")

    # Decode as well: a token made before the update, typed after it.
    page.fill("#id_digits", sale.credit_token.digits)
    click_action(page, "#action-decode button")
    assert "Verdict:" in page.inner_text("#decode-result")


@pytest.mark.parametrize("role_name", ["Auditor", "Campaign manager"])
def test_read_only_roles_read_the_story_and_are_told_why_they_cannot_act(page, live_server, staff, bought, role_name):
    meter, _ = bought
    user = staff(role_name, role_name.split()[-1].lower())
    sign_in(page, live_server, user)
    assert page.locator("#all-records").get_attribute("open") is not None  # not a care role: records unfolded
    find(page, spoken(meter.phone), meter)

    assert "waiting for the customer to type them." in status_line(page)
    refusal = page.inner_text("#no-actions")
    assert refusal.startswith(f"Your role ({role_name}) can read this meter's story but not act on it")
    assert "need the Care agent or Care supervisor role" in refusal
    assert page.locator("#care-actions form").count() == 0
    assert page.locator("#timeline li").count() >= 4

    before = Message.objects.count()
    with page.expect_navigation():
        page.evaluate(FORCED_POST_JS, [f"/admin/meters/meter/{meter.pk}/care/resend-codes/", {}])
    assert page.inner_text("h1") == "Your role does not allow this"
    assert "needs the Care agent or Care supervisor role" in page.inner_text("#forbidden-reason")
    assert f"you are signed in as {user.username} ({role_name})" in page.inner_text("#forbidden-reason")
    with page.expect_navigation():
        page.click("#forbidden-back")
    assert f"/admin/meters/meter/{meter.pk}/change/" in page.url
    assert Message.objects.count() == before

    # An admin page outside the role: the same styled page, naming the role the user has.
    page.goto(f"{live_server.url}/admin/care/carecase/add/")
    assert page.inner_text("h1") == "Your role does not allow this"
    assert f"({role_name})" in page.inner_text("#forbidden-reason")
