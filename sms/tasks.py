"""Celery tasks: thin wrappers that take ids; the work and the claiming live in sms.services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(name="sms.send_messages", ignore_result=True)
def send_messages(ids: list[int]) -> int:
    # Which queue this task came from decides where leftovers go; notices stay on theirs.
    queue = send_messages.request.delivery_info.get("routing_key") if send_messages.request.delivery_info else None
    return services.messages_send(ids=ids, queue=queue or settings.SMS_CODES_QUEUE)


@shared_task(name="sms.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return services.messages_sweep()
