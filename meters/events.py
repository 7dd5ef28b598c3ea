"""What the meter register tells the apps built on it.

meters depends on nothing above it; an app that keeps aggregates of the register (campaigns: its
segments and targets) connects a receiver in its AppConfig.ready().
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent by meters.services.meter_import inside its transaction, after the register changed.
register_imported = Signal()
