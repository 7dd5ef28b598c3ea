"""Periodic vend history jobs (Celery beat): partitions ahead, compaction, archive (of the vend
history and of the SMS log)."""

from __future__ import annotations

import logging

from celery import shared_task

from kplc_sts import partitions

from .services import history

logger = logging.getLogger(__name__)


@shared_task(name="tokens.partitions_ensure", ignore_result=True)
def partitions_ensure_task() -> int:
    return len(history.partitions_ensure())


@shared_task(name="tokens.vend_bodies_compact", ignore_result=True)
def vend_bodies_compact_task() -> int:
    return history.vend_bodies_compact()


@shared_task(name="tokens.archive_partitions", ignore_result=True)
def archive_partitions_task() -> int:
    try:
        return len(history.partitions_archive_all())
    except partitions.ArchiveBusy:
        # A manual run (or this task delivered twice) is archiving the same months right now.
        logger.info("archive_partitions: another run holds the lock; leaving it to that run")
        return 0
