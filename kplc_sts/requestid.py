"""One id per request, carried into the log lines and the Celery tasks the request enqueues.

The id lives in a context variable: set by `RequestLogMiddleware` for a web request, copied into
the headers of every task published while it is set (`before_task_publish`), and restored in the
worker around the task (`task_prerun` / `task_postrun`), so a worker's log lines name the request
that caused them. An eager task (the demo) runs inside the request and simply sees its id.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("kplc_request_id", default=None)
HEADER = "kplc_request_id"
# An id offered by a trusted proxy is kept if it looks like one; anything else is replaced.
VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,64}$")

logger = logging.getLogger("kplc_sts.task")


def current_request_id() -> str | None:
    return _request_id.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_set(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def request_id_reset(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


# --- Celery ------------------------------------------------------------------------------------------

_task_state: dict[str, tuple[contextvars.Token[str | None], float]] = {}


def _on_publish(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    request_id = current_request_id()
    if request_id and headers is not None and HEADER not in headers:
        headers[HEADER] = request_id


def _task_header(task: Any) -> str | None:
    request = getattr(task, "request", None)
    value = getattr(request, HEADER, None)
    if value is None and request is not None:
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return value if isinstance(value, str) and VALID_ID.match(value) else None


def _on_prerun(task_id: str = "", task: Any = None, **_kwargs: Any) -> None:
    # Eager tasks run inside the request and keep its id; a worker takes the id from the message.
    request_id = _task_header(task) or current_request_id() or f"task-{task_id}"
    _task_state[task_id] = (request_id_set(request_id), time.monotonic())


def _on_postrun(task_id: str = "", task: Any = None, state: str = "", **_kwargs: Any) -> None:
    token, started = _task_state.pop(task_id, (None, time.monotonic()))
    logger.info(
        "task %s %s in %.0f ms",
        getattr(task, "name", "?"),
        state or "done",
        (time.monotonic() - started) * 1000,
        extra={"task_id": task_id},
    )
    if token is not None:
        try:
            request_id_reset(token)
        except ValueError:  # reset from another context (thread pools): just clear it
            request_id_set(None)


def connect_celery_signals() -> None:
    from celery import signals

    signals.before_task_publish.connect(_on_publish, dispatch_uid="kplc_sts.request_id.publish", weak=False)
    signals.task_prerun.connect(_on_prerun, dispatch_uid="kplc_sts.request_id.prerun", weak=False)
    signals.task_postrun.connect(_on_postrun, dispatch_uid="kplc_sts.request_id.postrun", weak=False)
