"""gunicorn settings: `gunicorn kplc_sts.wsgi -c kplc_sts/gunicorn_conf.py`.

The access log, if switched on (--access-logfile -), goes through the same redaction as the
application's logs: the delivery-report and USSD paths carry their secrets, and a partner could
send its key in a query string. RequestLogMiddleware already writes one line per request, so the
image leaves gunicorn's own access log off.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger

from kplc_sts.logging import RedactTokenDigitsFilter


class RedactingLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            for handler in log.handlers:
                handler.addFilter(RedactTokenDigitsFilter())


logger_class = RedactingLogger
# Off unless asked for on the command line: the application logs each request (with its id).
accesslog = None
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))


def child_exit(server: Any, worker: Any) -> None:
    # prometheus-client's multiprocess mode: a dead worker's live gauges must stop counting.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
