"""Celery tasks: thin wrappers that take ids; the work and the claiming live in sms.services.

The services import this module to publish (after commit), so each task imports its service when
it runs, as HackSoft's styleguide does for the same two-way edge inside one app.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(name="sms.send_messages", ignore_result=True)
def send_messages_task(ids: list[int]) -> int:
    from .services import messages_send

    # Which queue this task came from decides where leftovers go; notices stay on theirs.
    info = send_messages_task.request.delivery_info
    queue = info.get("routing_key") if info else None
    return messages_send(ids=ids, queue=queue or settings.SMS_CODES_QUEUE)


@shared_task(name="sms.sweep", ignore_result=True)
def sweep_task() -> dict[str, int]:
    from .services import messages_sweep

    return messages_sweep()


@shared_task(name="sms.log_settled", ignore_result=True)
def log_settled_task() -> int:
    from .services import messages_log_settled

    return messages_log_settled()


@shared_task(name="sms.reports_prune", ignore_result=True)
def reports_prune_task() -> int:
    from .services import delivery_reports_prune

    return delivery_reports_prune()


@shared_task(name="sms.log_partitions", ignore_result=True)
def log_partitions_task() -> list[str]:
    from .services import log_partitions_ensure

    return log_partitions_ensure()
