"""The Celery application. Settings come from Django settings under the CELERY_ namespace."""

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kplc_sts.settings.local")

app = Celery("kplc_sts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids travel with the tasks a request enqueues; task failures are counted for /metrics.
from .requestid import connect_celery_signals  # noqa: E402

connect_celery_signals()

# Tasks read the primary even when they run eagerly inside a lag-tolerant request (kplc_sts/replica.py).
from .replica import connect_celery_signals as connect_replica_signals  # noqa: E402

connect_replica_signals()


def _count_task_failure(*args: object, **kwargs: object) -> None:
    # Imported when a task fails, not here: this module is loaded before Django's apps are ready,
    # and the metrics module reads models.
    from .metrics import celery_task_failed

    celery_task_failed(*args, **kwargs)


from celery.signals import task_failure  # noqa: E402

task_failure.connect(_count_task_failure, dispatch_uid="kplc_sts.metrics.task_failure", weak=False)


@app.on_after_configure.connect
def _in_process_broker(sender: Celery, **kwargs: object) -> None:
    # Without CELERY_BROKER_URL tasks run eagerly, yet Celery still builds a producer for every
    # call: give it the in-memory transport instead of an unnamed AMQP host (kombu warned "No
    # hostname was supplied" on each one).
    if sender.conf.task_always_eager and not sender.conf.broker_url:
        sender.conf.broker_url = "memory://localhost/"
        # In-process, every eager task logged "Task ... succeeded in 0.0003s: 0" at INFO: hundreds of
        # lines per batch in the web and demo consoles. Failures are still logged (ERROR).
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
