"""The VendingKey admin shows the check value and never the key."""

from __future__ import annotations

import pytest

from tokens.custody import vending_key_load

from .conftest import assert_no_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(des_key: bytes):
    return vending_key_load(sgc="600675", krn=1, dkga="02", base_date=1993, key=des_key, actor_label="test")


def test_changelist_shows_check_value_not_key(admin_client, stored, des_key: bytes) -> None:
    response = admin_client.get("/admin/tokens/vendingkey/")
    assert response.status_code == 200
    page = response.content.decode()
    assert stored.check_value in page
    assert_no_key(page, des_key)


def test_change_page_shows_check_value_not_key_nor_ciphertext(admin_client, stored, des_key: bytes) -> None:
    response = admin_client.get(f"/admin/tokens/vendingkey/{stored.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert stored.check_value in page
    assert_no_key(page, des_key)
    assert bytes(stored.ciphertext).hex() not in page.lower()


def test_keys_cannot_be_added_or_edited_in_the_admin(admin_client, stored) -> None:
    assert admin_client.get("/admin/tokens/vendingkey/add/").status_code == 403
    response = admin_client.post(f"/admin/tokens/vendingkey/{stored.pk}/change/", {"sgc": "999999"})
    assert response.status_code == 403
    stored.refresh_from_db()
    assert stored.sgc == "600675"
