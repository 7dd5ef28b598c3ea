"""Periodic dashboard jobs (Celery beat)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="dashboard.refresh_targets", ignore_result=True)
def refresh_targets() -> int:
    return services.campaign_targets_refresh()
