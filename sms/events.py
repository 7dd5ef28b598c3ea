"""What the outbox tells the apps above it.

sms depends on nothing above it (it knows a campaign batch only by id); campaigns connects a
receiver in its AppConfig.ready() to move the enrollments of notified meters.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that first counted these notices as accepted by the gateway, with
# by_batch = {batch_id: [meter_id, ...]} and at = when they were sent. Each notice is reported once.
notices_sent = Signal()

# Sent after the transaction that gave up on notices without sending them (refused for good, or
# out of attempts), with batch_ids = [batch_id, ...]: such a batch may have nothing left to send.
notices_abandoned = Signal()
