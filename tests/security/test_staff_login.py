"""Finding 2: staff sign-in had no throttle, and nothing beyond a password guarded token digits.

django-axes locks a username+address after 10 failures (cool-off, audited, supervisor unlock);
django-otp's TOTP is required, where STAFF_2FA_REQUIRED is on, for staff who can reveal digits,
issue management tokens or decide reversals, and for superusers."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.roles import CARE_AGENT, CARE_SUPERVISOR
from audit.models import AuditEvent
from tests.conftest import STAFF_PASSWORD

pytestmark = pytest.mark.django_db


def _attempt(client: Client, path: str, username: str, password: str):
    return client.post(path, {"username": username, "password": password, "next": "/dashboard/"})


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_eleven_wrong_passwords_lock_the_account_even_against_the_right_one(staff, path) -> None:
    user = staff(CARE_AGENT, "agent-lock")
    if path.startswith("/admin"):
        user.is_superuser = True
        user.save()
    client = Client()
    statuses = [_attempt(client, path, user.username, f"wrong-{n}").status_code for n in range(11)]
    assert statuses[:9] == [200] * 9  # the login form again, with its error
    assert statuses[-1] == 429
    locked = _attempt(client, path, user.username, STAFF_PASSWORD)
    assert locked.status_code == 429
    assert b"Too many wrong passwords" in locked.content
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.filter(action="auth.locked_out").first()  # each refused attempt is recorded
    assert event is not None
    assert event.object_id == user.username and event.details["ip_address"] == "127.0.0.1"


def test_the_lock_is_per_username_and_address(staff) -> None:
    user = staff(CARE_AGENT, "agent-pair")
    attacker = Client(REMOTE_ADDR="203.0.113.50")
    for n in range(10):
        _attempt(attacker, "/accounts/login/", user.username, f"wrong-{n}")
    assert _attempt(attacker, "/accounts/login/", user.username, STAFF_PASSWORD).status_code == 429
    # The agent at their own desk is not locked out by someone else's guessing.
    desk = Client(REMOTE_ADDR="10.20.0.7")
    assert _attempt(desk, "/accounts/login/", user.username, STAFF_PASSWORD).status_code == 302


def test_the_lock_lifts_after_the_cool_off(staff) -> None:
    user = staff(CARE_AGENT, "agent-cool")
    client = Client()
    for n in range(10):
        _attempt(client, "/accounts/login/", user.username, f"wrong-{n}")
    assert _attempt(client, "/accounts/login/", user.username, STAFF_PASSWORD).status_code == 429
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)):
        assert _attempt(client, "/accounts/login/", user.username, STAFF_PASSWORD).status_code == 302


def test_a_supervisor_unlocks_and_it_is_audited(staff) -> None:
    user = staff(CARE_AGENT, "agent-unlock")
    client = Client()
    for n in range(10):
        _attempt(client, "/accounts/login/", user.username, f"wrong-{n}")
    attempt = AccessAttempt.objects.get(username=user.username)
    supervisor = staff(CARE_SUPERVISOR, "super-unlock")
    desk = Client()
    desk.force_login(supervisor)
    response = desk.post(
        "/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": [attempt.pk]}, follow=True
    )
    assert response.status_code == 200
    assert not AccessAttempt.objects.filter(username=user.username).exists()
    event = AuditEvent.objects.get(action="auth.unlocked")
    assert event.actor == supervisor and event.object_id == user.username
    assert _attempt(client, "/accounts/login/", user.username, STAFF_PASSWORD).status_code == 302


def test_an_agent_cannot_unlock(staff) -> None:
    user = staff(CARE_AGENT, "agent-x")
    client = Client()
    for n in range(10):
        _attempt(client, "/accounts/login/", user.username, f"wrong-{n}")
    attempt = AccessAttempt.objects.get(username=user.username)
    other = staff(CARE_AGENT, "agent-y")
    desk = Client()
    desk.force_login(other)
    desk.post("/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": [attempt.pk]})
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()


# --- second factor ------------------------------------------------------------------------------


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


def _unthrottle(device: TOTPDevice, **fields: int) -> None:
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_count=0, throttling_failure_timestamp=None, **fields
    )
    device.refresh_from_db()


def _password_login(username: str) -> Client:
    client = Client()
    assert _attempt(client, "/accounts/login/", username, STAFF_PASSWORD).status_code == 302
    return client


def test_supervisor_with_a_password_alone_reaches_no_digits(staff, settings) -> None:
    settings.STAFF_2FA_REQUIRED = True
    supervisor = staff(CARE_SUPERVISOR, "super-2fa")
    client = _password_login(supervisor.username)
    response = client.post("/admin/meters/meter/1/care/reveal/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/setup/")
    assert client.get("/admin/").status_code == 302
    assert not AuditEvent.objects.filter(action__contains="digits").exists()


def test_enrolment_then_codes_open_the_staff_pages(staff, settings) -> None:
    settings.STAFF_2FA_REQUIRED = True
    supervisor = staff(CARE_SUPERVISOR, "super-enrol")
    client = _password_login(supervisor.username)
    page = client.get("/accounts/2fa/setup/?next=/admin/")
    assert page.status_code == 200 and b"otpauth://" in page.content
    device = TOTPDevice.objects.get(user=supervisor)
    assert client.post("/accounts/2fa/setup/", {"token": "000000", "next": "/admin/"}).status_code == 200
    _unthrottle(device)  # django-otp makes the next try after a failure wait (1 s, doubling)
    done = client.post("/accounts/2fa/setup/", {"token": _code(device), "next": "/admin/"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.2fa_enrolled", actor=supervisor).exists()

    # The next sign-in asks for a code, not a new enrolment; a wrong code does not pass.
    later = _password_login(supervisor.username)
    assert later.get("/admin/")["Location"].startswith("/accounts/2fa/verify/")
    assert later.post("/accounts/2fa/verify/", {"token": "123456", "next": "/admin/"}).status_code == 200
    assert later.get("/admin/").status_code == 302
    _unthrottle(device, last_t=-1)  # a code may be used once; the test reuses the current window
    assert later.post("/accounts/2fa/verify/", {"token": _code(device), "next": "/admin/"}).status_code == 302
    assert later.get("/admin/").status_code == 200


def test_superusers_need_it_and_plain_agents_do_not(staff, settings) -> None:
    settings.STAFF_2FA_REQUIRED = True
    User.objects.create_superuser("root2fa", "r@example.invalid", STAFF_PASSWORD)
    assert _password_login("root2fa").get("/admin/").status_code == 302
    agent = staff(CARE_AGENT, "agent-plain")
    assert _password_login(agent.username).get("/admin/").status_code == 200


def test_the_demo_and_tests_leave_the_second_factor_off(staff, settings) -> None:
    assert settings.STAFF_2FA_REQUIRED is False
    supervisor = staff(CARE_SUPERVISOR, "super-demo")
    assert _password_login(supervisor.username).get("/admin/").status_code == 200


# --- sessions (finding 11) ----------------------------------------------------------------------


def test_staff_sessions_end_after_30_idle_minutes(staff) -> None:
    supervisor = staff(CARE_SUPERVISOR, "super-idle")
    client = _password_login(supervisor.username)
    assert client.get("/admin/").status_code == 200
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)):
        assert client.get("/admin/").status_code == 302


def test_staff_sessions_end_after_8_hours_even_when_busy(staff) -> None:
    supervisor = staff(CARE_SUPERVISOR, "super-busy")
    client = _password_login(supervisor.username)
    start = dt.datetime.now(dt.UTC)
    for minutes in range(20, 8 * 60, 20):
        with time_machine.travel(start + dt.timedelta(minutes=minutes)):
            assert client.get("/admin/").status_code == 200
    with time_machine.travel(start + dt.timedelta(hours=8, minutes=5)):
        assert client.get("/admin/").status_code == 302
