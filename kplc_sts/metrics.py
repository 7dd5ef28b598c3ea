"""Prometheus metrics at GET /metrics for the on-call engineer.

Two kinds:

- counted where they happen, in the web process (vends by outcome, vend latency, API errors by code).
  Under gunicorn set PROMETHEUS_MULTIPROC_DIR to an empty per-host directory: each worker writes its
  own file and a scrape sums them (prometheus-client's multiprocess mode; kplc_sts/gunicorn_conf.py
  marks dead workers).
- read at scrape time from shared state, so they are right whichever process or host did the work:
  the SMS outbox by queue and status, the oldest queued message, unapplied delivery reports, batch
  progress (maintained counters, never a COUNT over millions of rows), and Celery task failures
  (counted in the shared cache by the workers).

The endpoint answers only `Authorization: Bearer <METRICS_TOKEN>` or a client in
METRICS_ALLOWED_NETWORKS; with neither configured it answers nobody (404).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from campaigns.models import Batch
from sms.models import DeliveryReport, Message
from sms.selectors import messages_newest
from sms.tallies import batch_tallies

from . import clock
from .celery import app
from .clientip import address_in, client_ip

logger = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Multiprocess mode writes each value to a file in this directory from the first metric on.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

VENDS = Counter("kplc_vends", "Partner vend requests by outcome (issued, replayed or the error code)", ["outcome"])
VEND_SECONDS = Histogram(
    "kplc_vend_duration_seconds",
    "Time to answer POST /api/v1/vends/",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
)
API_ERRORS = Counter("kplc_api_errors", "Partner API error responses by error code", ["code"])

QUEUE_COUNT_CAP = 100_000  # counts ride partial indexes; the cap bounds a scrape on a huge backlog
RECENT_MESSAGES = 10_000  # the status mix of the newest messages, by primary key (no full scan)
TASK_FAILURE_KEY = "metrics:celery_task_failures:{}"
TASK_FAILURE_TTL = 400 * 24 * 3600  # a counter should outlive any scrape interval by far


def vend_observe(*, outcome: str, started: float) -> None:
    try:
        VENDS.labels(outcome=outcome[:40]).inc()
        VEND_SECONDS.observe(time.monotonic() - started)
    except Exception:
        logger.warning("could not record vend metrics", exc_info=True)


def api_error_observe(code: str) -> None:
    try:
        API_ERRORS.labels(code=code[:40]).inc()
    except Exception:
        logger.warning("could not record API error metric", exc_info=True)


def celery_task_failed(sender: Any = None, **_kwargs: Any) -> None:
    """celery task_failure: one more failure of this task, in the cache every web process reads."""
    name = getattr(sender, "name", "unknown")
    key = TASK_FAILURE_KEY.format(name)
    try:
        if not cache.add(key, 1, TASK_FAILURE_TTL):
            cache.incr(key)
    except Exception:  # noqa: BLE001 - a cache outage must not turn a task failure into another error
        logger.warning("could not count a failure of task %s", name)


def _task_names() -> list[str]:
    return sorted(name for name in app.tasks if not name.startswith("celery."))


class OperationsCollector:
    """Gauges read from the database and the cache at scrape time."""

    def collect(self) -> Iterator[Metric]:
        now = clock.now()
        queue_of = {
            purpose: settings.SMS_NOTICE_QUEUE if purpose in Message.BULK_PURPOSES else settings.SMS_CODES_QUEUE
            for purpose in Message.Purpose.values
        }
        live = GaugeMetricFamily(
            "kplc_sms_messages",
            f"Messages queued or sending, by queue (exact up to {QUEUE_COUNT_CAP})",
            labels=["queue", "status"],
        )
        for status in (Message.Status.QUEUED, Message.Status.SENDING):
            ids = Message.objects.filter(status=status).values("id")[:QUEUE_COUNT_CAP]
            counts = {queue: 0 for queue in set(queue_of.values())}
            for purpose in Message.objects.filter(id__in=ids).values_list("purpose", flat=True).iterator():
                counts[queue_of.get(purpose, settings.SMS_CODES_QUEUE)] += 1
            for queue, count in sorted(counts.items()):
                live.add_metric([queue, status], count)
        yield live

        recent = GaugeMetricFamily(
            "kplc_sms_recent_messages",
            f"Status of the newest {RECENT_MESSAGES} messages, by queue (failed, rejected, delivered...)",
            labels=["queue", "status"],
        )
        mix: dict[tuple[str, str], int] = {}
        # Outbox and log together: the newest messages have mostly settled and moved already.
        rows = [(record.purpose, record.status) for record in messages_newest(limit=RECENT_MESSAGES)]
        for purpose, message_status in rows:
            key = (queue_of.get(purpose, settings.SMS_CODES_QUEUE), str(message_status))
            mix[key] = mix.get(key, 0) + 1
        for (queue, label), count in sorted(mix.items()):
            recent.add_metric([queue, label], count)
        yield recent

        # The outbox is small (a queue): the first queued row in id order, no index on status.
        oldest_at = (
            Message.objects.filter(status=Message.Status.QUEUED)
            .order_by("id")
            .values_list("created_at", flat=True)
            .first()
        )
        yield GaugeMetricFamily(
            "kplc_sms_oldest_queued_age_seconds",
            "Age of the oldest message still queued (0 when none)",
            value=(now - oldest_at).total_seconds() if oldest_at else 0.0,
        )

        unapplied = DeliveryReport.objects.filter(applied_at__isnull=True)
        first = unapplied.order_by("id").values_list("received_at", flat=True).first()
        yield GaugeMetricFamily(
            "kplc_delivery_reports_unapplied",
            f"Delivery reports received but not yet matched to a message (exact up to {QUEUE_COUNT_CAP})",
            value=unapplied.values("id")[:QUEUE_COUNT_CAP].count(),
        )
        yield GaugeMetricFamily(
            "kplc_delivery_report_lag_seconds",
            "Age of the oldest delivery report not yet applied (0 when none)",
            value=(now - first).total_seconds() if first else 0.0,
        )

        progress = GaugeMetricFamily(
            "kplc_batch_progress",
            "Maintained counters of batches not yet closed, by stage",
            labels=["campaign", "batch", "status", "stage"],
        )
        stages = Batch.COUNTER_FIELDS
        batches = list(
            Batch.objects.exclude(status__in=[Batch.Status.CLOSED, Batch.Status.CANCELLED])
            .order_by("id")
            .values("id", "campaign_id", "number", "status", *stages)[:200]
        )
        tallies = batch_tallies(batch_ids=[batch["id"] for batch in batches])
        for batch in batches:
            labels = [str(batch["campaign_id"]), str(batch["number"]), batch["status"]]
            for stage in stages:
                progress.add_metric([*labels, stage], batch[stage])
            tally = tallies[batch["id"]]
            for stage, value in (
                ("sms_sent", tally.sent),
                ("sms_delivered", tally.delivered),
                ("sms_failed", tally.failed),
            ):
                progress.add_metric([*labels, stage], value)
        yield progress

        failures = CounterMetricFamily("kplc_celery_task_failures", "Celery task failures by task", labels=["task"])
        names = _task_names()
        values = cache.get_many([TASK_FAILURE_KEY.format(name) for name in names])
        for name in names:
            failures.add_metric([name], float(values.get(TASK_FAILURE_KEY.format(name), 0)))
        yield failures


def metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    operations = CollectorRegistry()
    operations.register(OperationsCollector())
    return counted + generate_latest(operations)


def _authorised(request: HttpRequest) -> bool | None:
    """True to answer, False for 401 (a token is configured and was not presented), None for 404."""
    token = settings.METRICS_TOKEN
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks and address_in(client_ip(request), networks):
        return True
    if token:
        scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
    return None


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    allowed = _authorised(request)
    if allowed is None:
        return HttpResponse(status=404)
    if not allowed:
        response = HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
