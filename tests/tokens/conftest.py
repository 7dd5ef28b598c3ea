"""Fixtures for vending-key custody tests."""

from __future__ import annotations

import pytest

from tokens.demo import random_des_key


@pytest.fixture
def des_key() -> bytes:
    return random_des_key()


def key_forms(key: bytes) -> list[str]:
    """Every way the key's bytes could leak as text."""
    return [key.hex(), key.hex().upper(), key.hex(" "), key.hex(" ").upper(), repr(key)]


def assert_no_key(text: str, key: bytes) -> None:
    for form in key_forms(key):
        assert form not in text, "vending key bytes leaked"
