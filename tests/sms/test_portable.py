"""The outbox's PostgreSQL statements (sms._pg) and their portable twins (sms._portable) agree.

One scenario, run twice on the same rows (each run rolled back): a batch's notices and a codes SMS
are sent, delivery reports arrive (final, intermediate then final, one before its message's id is
stored, a duplicate), and the leftovers are applied. Statuses, settled times, applied reports and
the batch's tallies must come out the same. PostgreSQL only: elsewhere both runs are the portable one.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from kplc_sts.db import portable_forced
from sms.backends.base import SendResult
from sms.backends.memory import MemoryBackend
from sms.models import DeliveryReport, Message, MessageTally
from sms.services import delivery_report_receive, delivery_reports_apply_pending, message_queue, messages_send

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="elsewhere both runs are the portable one"),
]

BATCH_ID = 9001


def _scenario(meters: list[Any]) -> list[Any]:
    MemoryBackend.reset()
    ids = [
        message_queue(recipient=m.phone, body=f"notice {i}", purpose="notice", meter=m, batch_id=BATCH_ID).pk
        for i, m in enumerate(meters)
    ]
    ids.append(message_queue(recipient=meters[0].phone, body="codes", purpose="codes", meter=meters[0]).pk)
    MemoryBackend.script = [SendResult.sent("")] * len(ids)
    MemoryBackend.script[2] = SendResult.rejected("UserInBlacklist", "406 UserInBlacklist")
    messages_send(ids=ids, queue="sms_notices")
    provider = dict(Message.objects.filter(pk__in=ids).values_list("pk", "provider_message_id"))
    # Reports: delivered, failed, intermediate then final, a duplicate final, one for an id not yet known.
    delivery_report_receive(provider_message_id=provider[ids[0]], status="Success", phone_number=meters[0].phone)
    delivery_report_receive(provider_message_id=provider[ids[1]], status="Failed", failure_reason="DeliveryFailure")
    delivery_report_receive(provider_message_id=provider[ids[3]], status="Buffered")
    delivery_report_receive(provider_message_id=provider[ids[3]], status="Success")
    delivery_report_receive(provider_message_id=provider[ids[3]], status="Failed", failure_reason="late duplicate")
    delivery_report_receive(provider_message_id="p-unknown", status="Success")
    Message.objects.filter(pk=ids[4]).update(provider_message_id="p-unknown")  # the worker stores it late
    applied = delivery_reports_apply_pending()
    # Provider ids are random per run: name them by the position of their message.
    position = {
        pid: index
        for index, pid in enumerate(
            Message.objects.filter(pk__in=ids).order_by("pk").values_list("provider_message_id", flat=True)
        )
    }
    seen = [
        applied,
        list(Message.objects.filter(pk__in=ids).order_by("pk").values_list("status", "failure_reason", "attempts")),
        sorted(
            (position.get(pid, -1), status, reason, applied_at is not None)
            for pid, status, reason, applied_at in DeliveryReport.objects.values_list(
                "provider_message_id", "status", "failure_reason", "applied_at"
            )
        ),
        list(MessageTally.objects.filter(batch_id=BATCH_ID).values_list("sent", "delivered", "failed")),
    ]
    return seen


def _run(meters: list[Any], django_capture_on_commit_callbacks: Any) -> list[Any]:
    with transaction.atomic():
        with django_capture_on_commit_callbacks(execute=False):
            seen = _scenario(meters)
        transaction.set_rollback(True)
    return seen


def test_native_and_portable_outbox_statements_settle_alike(meter_factory, django_capture_on_commit_callbacks):
    meters = meter_factory.create_batch(5)
    native = _run(meters, django_capture_on_commit_callbacks)
    with portable_forced():
        portable = _run(meters, django_capture_on_commit_callbacks)
    assert portable == native
    assert native[3] == [(4, 3, 2)]  # 4 notices accepted, 3 delivered; the rejected one and a failure
