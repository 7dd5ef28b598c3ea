"""Demo vending keys that seed_demo loads."""

from __future__ import annotations

import io

import pytest

from tokens import demo
from tokens.custody import key_check_value, vending_key_get
from tokens.models import VendingKey

from .conftest import assert_no_key

pytestmark = pytest.mark.django_db


def test_random_des_keys_have_odd_parity_and_differ() -> None:
    keys = {demo.random_des_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert len(key) == 8
        assert all(bin(byte).count("1") % 2 == 1 for byte in key)


def test_seed_loads_both_demo_keys_and_prints_only_check_values() -> None:
    stdout = io.StringIO()
    demo.seed(stdout)

    rows = {(key.sgc, key.krn, key.base_date, key.dkga) for key in VendingKey.objects.all()}
    assert rows == {("600675", 1, 1993, "02"), ("600675", 2, 2014, "02")}
    for krn in (1, 2):
        key = vending_key_get(sgc="600675", krn=krn)
        assert len(key) == 8
        assert key_check_value(key) in stdout.getvalue()
        assert_no_key(stdout.getvalue(), key)
