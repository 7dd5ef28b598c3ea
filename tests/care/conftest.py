"""Fixtures for care and USSD tests: real keys, a campaign, batches, vends and the memory SMS outbox."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.services import campaign_create
from partners.services import partner_create
from tests.care.factories import SGC
from tokens.custody import vending_key_load
from tokens.demo import random_des_key


@pytest.fixture
def keys(db) -> None:
    vending_key_load(sgc=SGC, krn=1, dkga="02", base_date=1993, key=random_des_key(), actor_label="test")
    vending_key_load(sgc=SGC, krn=2, dkga="02", base_date=2014, key=random_des_key(), actor_label="test")


@pytest.fixture
def campaign(db, keys):
    return campaign_create(
        name="Update Token Meter Yako",
        sgcs=[SGC],
        from_krn=1,
        to_krn=2,
        deadline=dt.date(2027, 8, 31),
        daily_capacity=100_000,
        actor_label="test",
    )


@pytest.fixture
def partner(db):
    return partner_create(name="Test Bank")
