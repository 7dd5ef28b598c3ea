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


@shared_task(name="campaigns.send_reminders", ignore_result=True)
def send_reminders_task() -> int:
    return services.reminders_send_all()


@shared_task(name="campaigns.infer_updates", ignore_result=True)
def infer_updates_task() -> int:
    return services.updates_infer()
