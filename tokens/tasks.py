"""Periodic vend history jobs (Celery beat): partitions ahead, compaction, archive (of the vend
history and of the SMS log)."""

from __future__ import annotations

from celery import shared_task

from .services import history


@shared_task(name="tokens.partitions_ensure", ignore_result=True)
def partitions_ensure_task() -> int:
    return len(history.partitions_ensure())


@shared_task(name="tokens.vend_bodies_compact", ignore_result=True)
def vend_bodies_compact_task() -> int:
    return history.vend_bodies_compact()


@shared_task(name="tokens.archive_partitions", ignore_result=True)
def archive_partitions_task() -> int:
    return len(history.partitions_archive_all())
