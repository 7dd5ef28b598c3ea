"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache

from accounts.roles import roles_sync
from sms.backends.memory import MemoryBackend
from tests.factories import MeterFactory

STAFF_PASSWORD = "staff-test-pass-2024"


@pytest.fixture
def meter_factory() -> type[MeterFactory]:
    return MeterFactory


@pytest.fixture(autouse=True)
def _fresh_outbox_and_cache() -> Iterator[None]:
    # The in-memory SMS outbox and the cache (throttles, rate limits, cached lists) are
    # process-wide: every test starts and ends with them empty.
    MemoryBackend.reset()
    cache.clear()
    yield
    MemoryBackend.reset()
    cache.clear()


@pytest.fixture
def staff(db: None) -> Callable[..., User]:
    """staff(role, username=None) -> a staff user in that role's group (None: no group)."""

    def make(role: str | None, username: str | None = None) -> User:
        if role and not Group.objects.filter(name=role).exists():
            roles_sync()  # a transactional test's flush dropped the groups
        name = username or (role or "nobody").split()[0].lower()
        user = User.objects.create_user(name, password=STAFF_PASSWORD, is_staff=True)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture(autouse=True, scope="session")
def _audit_rows_flushable() -> Iterator[None]:
    # A transactional test ends with `flush`. PostgreSQL flushes with TRUNCATE (not seen by the audit
    # log's row trigger); SQLite deletes row by row, which its trigger refuses unless told otherwise.
    from django.core.management.commands import flush

    from audit.immutability import audit_maintenance

    original = flush.Command.handle

    def handle(self: flush.Command, *args: object, **options: object) -> None:
        with audit_maintenance():
            original(self, *args, **options)

    flush.Command.handle = handle  # type: ignore[method-assign]
    yield
    flush.Command.handle = original  # type: ignore[method-assign]
