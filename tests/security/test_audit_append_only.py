"""Finding 3: audit events could be edited, re-attributed and deleted through the ORM. The model now
refuses, and so does the database (a trigger on PostgreSQL and SQLite) for raw SQL."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent, AuditLogImmutable
from audit.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def event() -> AuditEvent:
    supervisor = User.objects.create_user("supervisor-audit")
    return audit_record(action="tokens.digits_viewed", actor=supervisor, object_type="meters.meter", object_id=7)


def test_orm_update_of_an_event_is_refused(event) -> None:
    with pytest.raises(AuditLogImmutable, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened")
    event.actor_label = "someone else"
    with pytest.raises(AuditLogImmutable):
        event.save()
    with pytest.raises(AuditLogImmutable):
        AuditEvent.objects.bulk_update([event], ["actor_label"])


def test_orm_delete_of_an_event_is_refused(event) -> None:
    with pytest.raises(AuditLogImmutable):
        event.delete()
    with pytest.raises(AuditLogImmutable):
        AuditEvent.objects.filter(action="tokens.digits_viewed").delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_re_attributing_through_raw_sql_is_refused_by_the_database(event) -> None:
    other = User.objects.create_user("innocent")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_id = %s WHERE id = %s", [other.pk, event.pk])
    event.refresh_from_db()
    assert event.actor.username == "supervisor-audit"


def test_deleting_through_raw_sql_is_refused_by_the_database(event) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_new_events_are_still_written(event) -> None:
    audit_record(action="meters.imported", actor_label="command:test")
    assert AuditEvent.objects.count() == 2
