"""The SMS outbox: queue in the business transaction, send from Celery, settle on delivery reports.

`outbox` writes and publishes messages (and a campaign batch's notices), `sending` claims and
sends them, `reports` settles them on delivery reports, `sweep` recovers from crashes, `log`
moves settled messages out of the outbox into the log (reads of both: `sms.selectors`). The
PostgreSQL statements are in `sms._pg`, their portable twins in `sms._portable`.
"""

from __future__ import annotations

from .log import (
    LogArchive,
    log_archive_cutoff,
    log_partitions,
    log_partitions_archive,
    log_partitions_due,
    log_partitions_ensure,
    log_reports_apply,
    messages_log_settled,
)
from .outbox import (
    batches_with_notices_pending,
    message_dispatch,
    message_queue,
    messages_queue_many,
    notices_cancel,
    notices_dispatch,
    notices_hold,
    notices_insert_from,
    notices_release,
    queue_for,
)
from .reports import REPORT_STATUS, delivery_report_receive, delivery_reports_apply_pending, delivery_reports_prune
from .sending import message_record_failure, messages_claim, messages_count_sent, messages_send
from .sweep import messages_reconcile, messages_sweep

__all__ = [
    "REPORT_STATUS",
    "LogArchive",
    "batches_with_notices_pending",
    "delivery_report_receive",
    "delivery_reports_apply_pending",
    "delivery_reports_prune",
    "log_archive_cutoff",
    "log_partitions",
    "log_partitions_archive",
    "log_partitions_due",
    "log_partitions_ensure",
    "log_reports_apply",
    "message_dispatch",
    "message_queue",
    "message_record_failure",
    "messages_queue_many",
    "messages_claim",
    "messages_count_sent",
    "messages_log_settled",
    "messages_reconcile",
    "messages_send",
    "messages_sweep",
    "notices_cancel",
    "notices_dispatch",
    "notices_hold",
    "notices_insert_from",
    "notices_release",
    "queue_for",
]
