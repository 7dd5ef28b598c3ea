"""Finding 11: no Content-Security-Policy on any page; proxy headers believed from anyone."""

from __future__ import annotations

import re

import pytest
from csp.constants import NONCE, SELF
from csp.utils import build_policy
from django.http import HttpResponse
from django.test import Client, RequestFactory

from accounts.roles import CAMPAIGN_MANAGER, CARE_SUPERVISOR
from kplc_sts.csp import SettingsPolicyCSPMiddleware

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/api/docs/"])
def test_every_page_has_a_strict_policy(path) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == "script-src 'self'"
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert policy["object-src"] == "object-src 'none'" and policy["frame-ancestors"] == "frame-ancestors 'none'"


def test_the_header_is_the_one_django_csp_builds_from_the_settings() -> None:
    # The middleware builds the settings' policy once; what it sends must be the library's string.
    for path in ("/accounts/login/", "/healthz"):
        assert Client().get(path)["Content-Security-Policy"] == build_policy()
    assert "Content-Security-Policy-Report-Only" not in Client().get("/accounts/login/")


def test_a_changed_policy_setting_is_sent_from_the_next_response(settings) -> None:
    assert "img-src 'self' data:" in Client().get("/accounts/login/")["Content-Security-Policy"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": [SELF], "img-src": ["https://img.example"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {
        "DIRECTIVES": {"script-src": [SELF]},
        "EXCLUDE_URL_PREFIXES": ["/healthz"],
    }
    response = Client().get("/accounts/login/")
    assert _policy(response)["img-src"] == "img-src https://img.example"
    assert response["Content-Security-Policy-Report-Only"] == build_policy(report_only=True)
    assert "script-src 'self'" in response["Content-Security-Policy-Report-Only"]
    assert "Content-Security-Policy-Report-Only" not in Client().get("/healthz")


def test_a_view_decorator_still_changes_its_own_page_only() -> None:
    # The API docs' Swagger UI is given inline styles by csp_update; no other page is.
    assert "'unsafe-inline'" in _policy(Client().get("/api/docs/"))["style-src"]
    assert _policy(Client().get("/accounts/login/"))["style-src"] == "style-src 'self'"


def test_a_nonce_asked_for_by_the_page_is_in_its_header(settings) -> None:
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": [SELF], "script-src": [SELF, NONCE]}}
    request = RequestFactory().get("/somewhere/")
    asked: list[str] = []

    def page(request) -> HttpResponse:
        asked.append(str(request.csp_nonce))
        return HttpResponse("ok")

    header = SettingsPolicyCSPMiddleware(page)(request)["Content-Security-Policy"]
    assert f"'nonce-{asked[0]}'" in header
    # Without the page asking, no nonce is made and the cached policy leaves the sentinel out.
    plain = SettingsPolicyCSPMiddleware(lambda request: HttpResponse("ok"))(RequestFactory().get("/x/"))
    assert _policy(plain)["script-src"] == "script-src 'self'"


def test_staff_pages_have_the_policy_and_no_inline_scripts(staff) -> None:
    client = Client()
    client.force_login(staff(CAMPAIGN_MANAGER, "csp-manager"))
    for path in ("/dashboard/", "/dashboard/batches/", "/dashboard/vending/"):
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response["Content-Security-Policy"]
        # Every <script> has a src: an inline one would be blocked by the policy.
        assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", response.content), path
    admin = Client()
    admin.force_login(staff(CARE_SUPERVISOR, "csp-super"))
    page = admin.get("/admin/meters/meter/")
    assert page.status_code == 200 and "Content-Security-Policy" in page


def test_the_api_docs_load_their_start_up_script_from_a_file() -> None:
    html = Client().get("/api/docs/").content
    assert not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_a_forged_forwarded_proto_does_not_make_a_request_secure(settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    # From our proxy, "https" is believed: no redirect.
    assert Client().get("/accounts/login/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_PROTO="https").status_code == 200
    # From anyone else the header is dropped: the plain-HTTP request is redirected to HTTPS.
    forged = Client().get("/accounts/login/", REMOTE_ADDR="203.0.113.8", HTTP_X_FORWARDED_PROTO="https")
    assert forged.status_code == 301 and forged["Location"].startswith("https://")
