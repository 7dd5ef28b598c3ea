"""Which database each read goes to, with a replica alias that mirrors the test database.

The mirror is the same database reached through a second connection, so a query's alias is told by
capturing the queries each connection runs. The real streaming replica (lag, pause, stop) is
tests/replica/test_streaming.py's.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from kplc_sts import replica
from kplc_sts.replica import lag_tolerant_view, on_primary, reads_from_replica
from meters.models import Meter
from tokens.models import Vend

pytestmark = [
    pytest.mark.django_db(transaction=True, databases={"default", "replica"}),
    pytest.mark.usefixtures("replica_on"),
]


class Queries:
    """The SQL each alias ran inside the block."""

    def __enter__(self) -> Queries:
        self._contexts = {alias: CaptureQueriesContext(connections[alias]) for alias in ("default", "replica")}
        for context in self._contexts.values():
            context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for context in self._contexts.values():
            context.__exit__(*exc)

    def on(self, alias: str, like: str = "") -> list[str]:
        return [q["sql"] for q in self._contexts[alias].captured_queries if like in q["sql"]]


def test_reads_outside_a_scope_stay_on_the_primary(meter_factory):
    meter_factory()
    with Queries() as queries:
        assert Meter.objects.count() == 1
    assert queries.on("default", "meters_meter") and not queries.on("replica")


def test_reads_inside_a_scope_go_to_the_replica_and_writes_to_the_primary(meter_factory):
    meter = meter_factory()
    with Queries() as queries, reads_from_replica():
        assert Meter.objects.count() == 1
        Meter.objects.filter(pk=meter.pk).update(customer_name="Changed")
        with on_primary():
            assert Meter.objects.get(pk=meter.pk).customer_name == "Changed"
    assert queries.on("replica", "COUNT(")
    assert queries.on("default", "UPDATE") and not queries.on("replica", "UPDATE")
    assert queries.on("default", "SELECT") and not [q for q in queries.on("replica") if "customer_name" in q]


def test_a_transaction_reads_the_primary_even_inside_a_scope(meter_factory):
    meter = meter_factory()
    with Queries() as queries, reads_from_replica():
        with transaction.atomic():
            Meter.objects.select_for_update().get(pk=meter.pk)
            Meter.objects.filter(region=meter.region).count()
    assert not queries.on("replica", "meters_meter")
    assert len(queries.on("default", "meters_meter")) == 2 and queries.on("default", "COUNT(")


def test_who_the_user_is_is_never_read_from_the_replica(manager):
    with Queries() as queries, reads_from_replica():
        assert User.objects.get(pk=manager.pk).has_perm("campaigns.view_campaign")
    assert queries.on("default", "auth_user") and not queries.on("replica")


def test_without_replica_reads_the_router_leaves_everything_to_django(settings, meter_factory):
    settings.REPLICA_READS = False
    meter_factory()
    with Queries() as queries, reads_from_replica():
        Meter.objects.count()
    assert not queries.on("replica")
    assert replica.ReplicaRouter().db_for_read(Meter) is None


def test_dashboard_pages_and_exports_read_the_replica_sessions_the_primary(client, manager, campaign):
    client.force_login(manager)
    with Queries() as queries:
        assert client.get(reverse("dashboard:vending_health")).status_code == 200
    assert queries.on("replica", "dashboard_vendminutestat")
    assert queries.on("default", "django_session") and not queries.on("replica", "django_session")
    assert not queries.on("default", "dashboard_vendminutestat")

    with Queries() as queries:
        response = client.get(reverse("dashboard:export_csv", args=["campaigns"]))
        body = b"".join(response.streaming_content)  # the rows are read while streaming
    assert campaign.name.encode() in body
    assert queries.on("replica", "campaigns_campaign") and not queries.on("default", "campaigns_campaign")


def test_scheduling_reads_the_primary(client, manager, campaign):
    client.force_login(manager)
    with Queries() as queries:
        assert client.get(reverse("dashboard:batch_schedule")).status_code == 200
    assert not queries.on("replica")


def test_admin_lists_and_care_search_read_the_replica_the_meter_page_the_primary(client, staff, meter_factory):
    from accounts.roles import CARE_AGENT

    meter = meter_factory()
    client.force_login(staff(CARE_AGENT))
    with Queries() as queries:
        assert client.get(reverse("admin:meters_meter_changelist"), {"q": meter.meter_number}).status_code == 200
    assert queries.on("replica", "meters_meter") and not queries.on("default", "meters_meter")
    with Queries() as queries:
        found = client.get(reverse("admin:meters_meter_find"), {"q": meter.meter_number})
    assert found.status_code == 302 and str(meter.pk) in found["Location"]
    assert queries.on("replica", "meters_meter") and not queries.on("default", "meters_meter")
    with Queries() as queries:
        assert client.get(found["Location"]).status_code == 200
    assert queries.on("default", "meters_meter") and not queries.on("replica")


def test_a_vend_never_reads_the_replica(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    with Queries() as queries:
        response = vend(meter, reference="R-REPLICA")
    assert response.status_code == 201, response.content
    assert Vend.objects.filter(reference="R-REPLICA").count() == 1
    assert queries.on("default", "meters_meter") and not queries.on("replica")


def test_ussd_never_reads_the_replica(client, meter_factory):
    meter = meter_factory()
    with Queries() as queries:
        response = client.post(
            "/ussd/", {"sessionId": "s1", "phoneNumber": meter.phone, "text": "", "serviceCode": "*977#"}
        )
    assert response.status_code == 200
    assert queries.on("default") and not queries.on("replica")


def test_a_replica_too_far_behind_is_left_alone_and_logged_once(monkeypatch, caplog, settings, meter_factory):
    meter_factory()
    lag = {"seconds": 120.0}
    monkeypatch.setattr(replica, "replica_lag_seconds", lambda: lag["seconds"])
    settings.REPLICA_MAX_LAG_SECONDS = 30
    with caplog.at_level(logging.INFO, logger="kplc_sts.replica"), Queries() as queries, reads_from_replica():
        for _ in range(3):
            Meter.objects.count()
        assert not queries.on("replica")
        assert replica.replica_status()["lag_seconds"] == 120.0
        lag["seconds"] = 2.0
        Meter.objects.count()
    assert queries.on("replica", "COUNT(")
    messages = [r.getMessage() for r in caplog.records if r.name == "kplc_sts.replica"]
    assert len(messages) == 2, messages
    assert "120.0 s behind" in messages[0] and "REPLICA_MAX_LAG_SECONDS=30" in messages[0]
    assert "again" in messages[1]


def test_a_replica_that_is_down_is_left_alone_and_logged_once(monkeypatch, caplog, meter_factory):
    meter_factory()

    def down() -> float:
        raise OperationalError("connection refused")

    monkeypatch.setattr(replica, "replica_lag_seconds", down)
    with caplog.at_level(logging.WARNING, logger="kplc_sts.replica"), Queries() as queries, reads_from_replica():
        assert [Meter.objects.count() for _ in range(3)] == [1, 1, 1]
    assert not queries.on("replica")
    warnings = [r.getMessage() for r in caplog.records if r.name == "kplc_sts.replica"]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "connection refused" in warnings[0]


def test_a_view_whose_replica_query_fails_is_answered_from_the_primary(rf, meter_factory):
    meter_factory()

    @lag_tolerant_view
    def page(request: Any) -> Any:
        from django.http import HttpResponse

        return HttpResponse(str(Meter.objects.count()))

    def refuse(execute, sql, params, many, context):  # the replica dies under the view
        raise OperationalError("server closed the connection unexpectedly")

    with Queries() as queries, connections["replica"].execute_wrapper(refuse):
        response = page(rf.get("/"))
    assert response.content == b"1"
    assert queries.on("default", "COUNT(")
    assert replica.replica_status()["usable"] is False
    assert "server closed the connection" in replica.replica_status()["reason"]


def test_a_form_post_through_a_lag_tolerant_view_reads_the_primary(rf, meter_factory):
    meter_factory()

    @lag_tolerant_view
    def page(request: Any) -> Any:
        from django.http import HttpResponse

        return HttpResponse(str(Meter.objects.count()))

    with Queries() as queries:
        assert page(rf.post("/")).content == b"1"
    assert queries.on("default", "COUNT(") and not queries.on("replica")


def test_the_replica_is_never_migrated():
    assert replica.ReplicaRouter().allow_migrate("replica", "meters") is False
    assert replica.ReplicaRouter().allow_migrate("default", "meters") is None


def test_after_a_write_the_same_user_reads_the_primary_until_the_replica_must_have_it(client, manager, campaign):
    from campaigns.models import Batch

    client.force_login(manager)
    batch = Batch.objects.create(
        campaign=campaign, number=1, selection_limit=10, scheduled_at=campaign.created_at, status=Batch.Status.OPEN
    )
    response = client.post(reverse("dashboard:batch_action", args=[batch.pk, "pause"]))
    assert response.status_code == 302
    cookie = response.cookies[replica.PRIMARY_COOKIE]
    assert int(cookie["max-age"]) == 30 and cookie["httponly"]
    with Queries() as queries:
        assert client.get(response["Location"]).status_code == 200
    assert not queries.on("replica")

    client.cookies[replica.PRIMARY_COOKIE] = "1"  # expired: back to the replica
    with Queries() as queries:
        assert client.get(response["Location"]).status_code == 200
    assert queries.on("replica", "campaigns_batch")


def test_a_partners_vend_gets_no_cookie(vend, vending_keys, in_campaign, meter_factory):
    response = vend(meter_factory(), reference="R-COOKIE")
    assert response.status_code == 201
    assert replica.PRIMARY_COOKIE not in response.cookies


def test_a_task_run_inside_a_lag_tolerant_request_reads_the_primary(meter_factory):
    from kplc_sts.celery import app

    @app.task(name="tests.replica.count_meters")
    def count_meters() -> int:
        return Meter.objects.count()

    meter_factory()
    with Queries() as queries, reads_from_replica():
        assert count_meters.delay().get() == 1  # eager in tests: in this thread, inside the scope
        assert Meter.objects.count() == 1  # and the scope is back afterwards
    assert len(queries.on("default", "COUNT(")) == 1
    assert len(queries.on("replica", "COUNT(")) == 1


def test_signing_in_does_not_pin_the_pages_to_the_primary(client, manager):
    from tests.conftest import STAFF_PASSWORD

    response = client.post(reverse("login"), {"username": manager.username, "password": STAFF_PASSWORD})
    assert response.status_code == 302
    assert replica.PRIMARY_COOKIE not in response.cookies
    with Queries() as queries:
        assert client.get(reverse("dashboard:vending_health")).status_code == 200
    assert queries.on("replica", "dashboard_vendminutestat")
