"""Meter admin: care agents find a meter by number, phone in any format, or account."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/meters/meter/"


@pytest.fixture
def meters(meter_factory):
    wanted = meter_factory(phone="+254712345678", account_number="ACC-42", customer_name="Wanted Meter")
    other = meter_factory(phone="+254799000111", account_number="ACC-43", customer_name="Other Meter")
    return wanted, other


def search(admin_client, term: str) -> str:
    response = admin_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("term", ["0712 345 678", "0712345678", "+254712345678", "254 712-345-678", "ACC-42"])
def test_search_by_phone_in_any_format_or_account(admin_client, meters, term: str) -> None:
    page = search(admin_client, term)
    assert "Wanted Meter" in page
    assert "Other Meter" not in page


def test_search_by_meter_number(admin_client, meters) -> None:
    wanted, other = meters
    page = search(admin_client, wanted.meter_number)
    assert "Wanted Meter" in page
    assert "Other Meter" not in page
    assert "Other Meter" in search(admin_client, other.meter_number)


def test_unknown_term_finds_nothing(admin_client, meters) -> None:
    page = search(admin_client, "0700 000 000")
    assert "Wanted Meter" not in page
    assert "Other Meter" not in page


def test_filters_by_region_and_krn(admin_client, meter_factory) -> None:
    meter_factory(region="Kisumu", krn=1, customer_name="Lakeside")
    meter_factory(region="Nyeri", krn=2, customer_name="Highlands")
    page = admin_client.get(CHANGELIST, {"region": "Kisumu"}).content.decode()
    assert "Lakeside" in page and "Highlands" not in page
    page = admin_client.get(CHANGELIST, {"krn": "2"}).content.decode()
    assert "Highlands" in page and "Lakeside" not in page
