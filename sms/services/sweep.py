"""The periodic sweep: recover from crashes and broker outages. Safe to run any number of times."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from kplc_sts import clock
from kplc_sts.celery import app

from ..models import DeliveryReport, Message, MessageLog
from .log import log_reports_apply
from .outbox import message_dispatch
from .reports import delivery_reports_apply_pending
from .sending import messages_count_sent

logger = logging.getLogger(__name__)

Status = Message.Status
Purpose = Message.Purpose


def _broker_queue_length(queue: str) -> int:
    """Tasks waiting in the broker queue (0 when tasks run eagerly or the broker is down)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return 0
    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            return int(client.llen(queue)) if client is not None else 0
    except Exception:  # noqa: BLE001 - any broker failure: assume nothing waits, the sweep publishes
        logger.warning("could not read the length of broker queue %s", queue)
        return 0


def messages_reconcile(*, now: dt.datetime | None = None) -> int:
    """Adopt the delivery reports of messages a lost worker sent but never recorded.

    Africa's Talking has no idempotency key, so re-sending a message stuck in 'sending' would
    send it twice if the gateway took it before the worker died. The gateway reports on every
    message it took, with the recipient's number; a report nobody claimed (its id is on no
    message), for the number of a stuck message, received after that message was claimed, is
    that message's. Pairs are made per number in time order, so two stuck messages to one number
    take two reports. Returns the number of messages adopted (now sent, and settled if final).
    """
    now = now or clock.now()
    # How long a send may take is a property of the worker and the gateway (wall time); claimed_at
    # is on the clock, so on an accelerated clock the window is that many wall seconds' worth.
    stale_before = now - dt.timedelta(seconds=clock.from_wall(settings.SMS_SENDING_STALE_SECONDS))
    stuck = [
        (pk, recipient, claimed_at)
        for pk, recipient, claimed_at in Message.objects.filter(status=Status.SENDING, claimed_at__lt=stale_before)
        .order_by("claimed_at", "pk")
        .values_list("pk", "recipient", "claimed_at")[: settings.SMS_SWEEP_LIMIT]
        if claimed_at is not None
    ]
    if not stuck:
        return 0
    orphans = (
        DeliveryReport.objects.filter(
            applied_at__isnull=True,
            phone_number__in=sorted({recipient for _, recipient, _ in stuck}),
            received_at__gte=min(claimed_at for _, _, claimed_at in stuck),
        )
        .filter(~Exists(Message.objects.filter(provider_message_id=OuterRef("provider_message_id"))))
        # A report on a message that has moved to the log is that message's, not an orphan.
        .filter(~Exists(MessageLog.objects.filter(provider_message_id=OuterRef("provider_message_id"))))
        .order_by("received_at", "pk")
        .values_list("provider_message_id", "phone_number", "received_at")
    )
    reports: dict[str, list[tuple[str, dt.datetime]]] = {}
    for provider_id, phone, received_at in orphans:
        reports.setdefault(phone, []).append((provider_id, received_at))
    adopted: list[int] = []
    adopted_ids: list[str] = []
    for pk, recipient, claimed_at in stuck:
        candidates = reports.get(recipient) or []
        while candidates and candidates[0][1] < claimed_at:
            candidates.pop(0)  # before this claim: not this send (an earlier, recorded, attempt)
        if not candidates:
            continue
        provider_id, received_at = candidates.pop(0)
        # Conditional: a worker that was only slow, not dead, may have stored it meanwhile.
        if Message.objects.filter(pk=pk, status=Status.SENDING).update(
            status=Status.SENT,
            provider_message_id=provider_id,
            sent_at=received_at,
            last_error="adopted by the sweep: the gateway reported on it after its worker was lost",
        ):
            adopted.append(pk)
            adopted_ids.append(provider_id)
    if adopted:
        logger.warning("sweep: %d SMS stuck in 'sending' were taken by the gateway; not sending again", len(adopted))
        messages_count_sent(ids=adopted)
        delivery_reports_apply_pending(provider_message_ids=adopted_ids)
    return len(adopted)


def messages_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Recover from crashes and broker outages. Safe to run any number of times, anywhere.

    - messages stuck in 'sending' longer than SMS_SENDING_STALE_SECONDS (a worker died mid-send)
      whose number has an unclaimed delivery report since their claim are adopted (the gateway
      took them: messages_reconcile); those without one after SMS_DLR_GRACE_SECONDS go back to
      queued and are sent again;
    - sent messages a lost worker never counted are counted;
    - final delivery reports that arrived before their message id was stored are applied (in the
      outbox, or in the log for a message that moved there unreported);
    - when a queue has drained, due queued messages (lost tasks, retries, broker outages) are
      published again; claiming makes a second task for the same message harmless.
    """
    now = now or clock.now()
    adopted = messages_reconcile(now=now)
    wait = clock.from_wall(max(settings.SMS_SENDING_STALE_SECONDS, settings.SMS_DLR_GRACE_SECONDS))
    requeued = Message.objects.filter(status=Status.SENDING, claimed_at__lt=now - dt.timedelta(seconds=wait)).update(
        status=Status.QUEUED, next_attempt_at=now, last_error="requeued by the sweep: the worker was lost mid-send"
    )
    if requeued:
        logger.warning("sweep: %d SMS were stuck in 'sending' with no report from the gateway; queued again", requeued)
    uncounted = list(
        Message.objects.filter(sent_counted=False, sent_at__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)[: settings.SMS_SWEEP_LIMIT]
    )
    for start in range(0, len(uncounted), 1000):
        messages_count_sent(ids=uncounted[start : start + 1000])
    reports = delivery_reports_apply_pending() + log_reports_apply()
    # Younger than 2 wall seconds: its own after-commit publish is probably still on its way.
    young = dt.timedelta(seconds=clock.from_wall(2))
    due = Message.objects.filter(status=Status.QUEUED, created_at__lt=now - young).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    dispatched = 0
    for queue, purposes in (
        (settings.SMS_CODES_QUEUE, [p for p in Purpose.values if p not in Message.BULK_PURPOSES]),
        (settings.SMS_NOTICE_QUEUE, list(Message.BULK_PURPOSES)),
    ):
        if _broker_queue_length(queue) > 0:
            continue  # workers are still busy with this queue; its messages have tasks
        ids = list(
            due.filter(purpose__in=purposes).order_by("pk").values_list("pk", flat=True)[: settings.SMS_SWEEP_LIMIT]
        )
        for start in range(0, len(ids), settings.SMS_DISPATCH_CHUNK):
            message_dispatch(ids[start : start + settings.SMS_DISPATCH_CHUNK], queue=queue)
        dispatched += len(ids)
    return {"adopted": adopted, "requeued": requeued, "reports": reports, "dispatched": dispatched}
