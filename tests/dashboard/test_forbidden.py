"""A refused page is the styled 403 that names the role needed and links back."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_dashboard_page_outside_the_role_names_the_role_that_has_it(client, auditor, campaign):
    client.force_login(auditor)
    response = client.get(reverse("dashboard:batch_schedule"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your role does not allow this" in html
    assert "This page needs the Campaign manager role." in html
    assert 'id="forbidden-back"' in html and 'href="/dashboard/"' in html  # a way back, in the site's look
    assert "dashboard/dashboard.css" in html


def test_a_user_without_any_role_is_told_so(client, staff):
    client.force_login(staff(None, "norole"))
    html = client.get(reverse("dashboard:home")).content.decode()
    assert "This page needs one of the roles Campaign manager, Care agent, Care supervisor, Auditor." in html
