"""Periodic campaign jobs (Celery beat, or `manage.py campaign_tick` without a broker)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="campaigns.start_due_batches", ignore_result=True)
def start_due_batches() -> list[int]:
    return services.batches_start_due()
