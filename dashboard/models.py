"""The dashboard owns no tables: it reads campaigns' counters and targets, the outbox's tallies and
the vending-health aggregates the vend writes (`tokens.models.VendMinuteStat`, `ApiErrorStat`)."""
