"""Project-level views that belong to no single domain app."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def _database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure, it never raises
        return f"error: {exc.__class__.__name__}"


def _broker_status() -> str:
    if not settings.CELERY_BROKER_URL:
        return "eager"  # tasks run in-process: there is no broker to reach
    try:
        from kplc_sts.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database, broker = _database_status(), _broker_status()
    healthy = database == "ok" and broker in {"ok", "eager"}
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "database": database, "broker": broker},
        status=200 if healthy else 503,
    )
