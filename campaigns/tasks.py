"""Periodic campaign jobs (Celery beat, or `manage.py campaign_tick` without a broker)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="campaigns.start_due_batches", ignore_result=True)
def start_due_batches_task() -> list[int]:
    started = services.batches_start_due()
    services.batches_open_finished()
    return started


@shared_task(name="campaigns.refresh_targets", ignore_result=True)
def refresh_targets_task() -> int:
    return services.campaign_targets_refresh()
