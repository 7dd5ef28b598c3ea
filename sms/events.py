"""What the outbox tells the apps above it.

sms depends on nothing above it (it knows a campaign batch only by id); campaigns connects a
receiver in its AppConfig.ready() to move the enrollments of notified meters.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that first counted these notices as accepted by the gateway, with
# by_batch = {batch_id: [meter_id, ...]} and at = when they were sent. Each notice is reported once.
notices_sent = Signal()

# Sent after the transaction that counted notices as sent, or gave up on them without sending
# (refused for good, or out of attempts), with batch_ids = [batch_id, ...]: such a batch may have
# nothing left to send. After, not inside: finding that out reads the batch's outbox rows, and the
# rows just sent stay locked (delivery reports for them waiting) until that transaction ends.
notices_out = Signal()

# Sent inside the transaction that settled codes SMS as delivered (a delivery report said so), with
# meter_ids = [meter_id, ...] and at = when the report was applied. Each message is reported once.
codes_delivered = Signal()
