from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _log_partitions_ensure(**kwargs: object) -> None:
    # A fresh database (or one migrated after a long pause) has this month's log partition at once.
    from .services import log_partitions_ensure

    log_partitions_ensure()


class SmsConfig(AppConfig):
    name = "sms"
    verbose_name = "SMS outbox"

    def ready(self) -> None:
        post_migrate.connect(_log_partitions_ensure, sender=self)
