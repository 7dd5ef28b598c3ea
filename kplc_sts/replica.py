"""Reads that tolerate lag go to the streaming replica, by explicit opt-in; everything else stays on the primary.

`DATABASE_REPLICA_URL` adds the `replica` database alias (kplc_sts/settings/base.py). Nothing reads
from it unless the code says the read may be stale:

    with reads_from_replica():          # a block of code
        figures = dashboard_services.vending_health(now=clock.now())

    @lag_tolerant_view                  # a GET view: its queries, its template, its streamed rows
    def overview(request): ...

Opt-in, not "every read goes to the replica": a vend, a key change, a USSD session or a Celery task
decides what to issue from what it reads (the meter's key state, the partner's daily total, the
next TID, whether a reference was already vended). A replica is always a little behind; a global read
router would let such a decision read a row the primary changed a moment ago, and the only guard
would be remembering to pin every sale path. Here the sale paths need nothing: they never enter a
lag-tolerant scope, so they read the primary. Inside a scope the router still uses the primary for

- anything inside `transaction.atomic` (that includes `select_for_update`): a transaction reads to write;
- the tables that decide who the user is and what they may do (sessions, users, groups and
  permissions, second factors, lockouts): a revoked role or a fresh sign-in takes effect at once;
- all writes.

Read-your-writes: a staff member who has just changed something (any POST, PUT, PATCH or DELETE
answered with a session) gets a cookie that keeps their lag-tolerant pages on the primary for
REPLICA_MAX_LAG_SECONDS, the most a healthy replica may be behind, so the page a form redirects to
shows the change (`PrimaryAfterWriteMiddleware`).

The replica is used only while it is healthy: reachable and no more than `REPLICA_MAX_LAG_SECONDS`
behind, checked at most every `REPLICA_CHECK_SECONDS` per process. Otherwise the scope reads the
primary; the change of state is logged once (not on every request). A lag-tolerant GET view whose
replica query fails (the replica died after the last check) is answered again from the primary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

logger = logging.getLogger("kplc_sts.replica")

REPLICA_ALIAS = "replica"

# Who the user is and what they may do is never read stale (see the module docstring).
PRIMARY_ONLY_APPS = frozenset({"sessions", "auth", "accounts", "axes", "otp_totp", "django_otp", "otp_static"})


@dataclasses.dataclass
class _Scope:
    used_replica: bool = False


_scope: ContextVar[_Scope | None] = ContextVar("kplc_sts_replica_scope", default=None)


@functools.cache
def replica_configured() -> bool:
    """Whether a replica alias exists and replica reads are switched on (REPLICA_READS)."""
    # Cached: the router asks for every query (a vend makes about twenty); forgotten when a test
    # changes the settings.
    return REPLICA_ALIAS in settings.DATABASES and bool(getattr(settings, "REPLICA_READS", True))


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DATABASES", "REPLICA_READS"):
        replica_configured.cache_clear()


@contextlib.contextmanager
def reads_from_replica() -> Iterator[_Scope]:
    """Mark the reads inside as lag-tolerant: the router may send them to a healthy replica."""
    scope = _Scope()
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


@contextlib.contextmanager
def on_primary() -> Iterator[None]:
    """Inside a lag-tolerant scope, read this block from the primary after all."""
    token = _scope.set(None)
    try:
        yield
    finally:
        _scope.reset(token)


def lag_tolerant() -> bool:
    return _scope.get() is not None


# --- health: reachable and not too far behind ------------------------------------------------------


@dataclasses.dataclass
class _Health:
    checked_at: float = -math.inf
    usable: bool | None = None  # None: never checked in this process
    reason: str = ""
    lag_seconds: float | None = None


_health = _Health()
_health_lock = threading.Lock()


def replica_lag_seconds() -> float:
    """How far the replica is behind the primary, in seconds (0 when it has replayed everything the
    primary had written when asked; +inf when it has replayed nothing). Raises DatabaseError when
    either server cannot be reached.

    The primary's WAL position is read first: a replica that has replayed up to it holds every
    transaction committed before this check, however long ago the last one was. Otherwise the lag is
    the age of the last transaction it replayed, which overstates the lag after the primary was idle
    (a first write after a quiet hour reads as an hour behind until it is replayed): that errs on the
    primary's side."""
    replica = connections[REPLICA_ALIAS]
    if replica.vendor != "postgresql":
        return 0.0  # the test suite's SQLite mirror: the same database
    primary_lsn = None
    primary = connections[DEFAULT_DB_ALIAS]
    if primary.vendor == "postgresql":
        with primary.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            primary_lsn = cursor.fetchone()[0]
    with replica.cursor() as cursor:
        cursor.execute(
            "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()),"
            " EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())",
            [primary_lsn or "0/0"],
        )
        in_recovery, behind_bytes, replay_age = cursor.fetchone()
    if not in_recovery:
        # Not a standby: the primary itself (a TEST mirror) or a promoted copy. Nothing to wait for.
        return 0.0
    if behind_bytes is not None and behind_bytes <= 0:
        return 0.0
    return float(replay_age) if replay_age is not None else math.inf


def _set_health(usable: bool, reason: str, lag: float | None) -> None:
    # Called with _health_lock held. Logged on a change of state only, so a replica down for an
    # hour writes two lines, not one per request.
    if usable != _health.usable:
        if usable:
            logger.info("replica: reading lag-tolerant pages from the replica again (%s)", reason)
        else:
            logger.warning("replica: reading lag-tolerant pages from the primary: %s", reason)
    _health.usable, _health.reason, _health.lag_seconds = usable, reason, lag
    _health.checked_at = time.monotonic()


def _close_replica() -> None:
    with contextlib.suppress(DatabaseError, InterfaceError):
        connections[REPLICA_ALIAS].close()


def replica_usable() -> bool:
    """Whether lag-tolerant reads may use the replica now (cached for REPLICA_CHECK_SECONDS)."""
    interval = float(getattr(settings, "REPLICA_CHECK_SECONDS", 5.0))
    if time.monotonic() - _health.checked_at < interval and _health.usable is not None:
        return _health.usable
    with _health_lock:
        if time.monotonic() - _health.checked_at < interval and _health.usable is not None:
            return _health.usable
        limit = float(getattr(settings, "REPLICA_MAX_LAG_SECONDS", 30.0))
        try:
            lag = replica_lag_seconds()
        except (DatabaseError, InterfaceError) as exc:
            _close_replica()
            _set_health(False, f"replica unreachable ({type(exc).__name__}: {str(exc).strip()[:200]})", None)
        else:
            if lag > limit:
                _set_health(False, f"replica {lag:.1f} s behind, more than REPLICA_MAX_LAG_SECONDS={limit:g}", lag)
            else:
                _set_health(True, f"{lag:.1f} s behind", lag)
        return bool(_health.usable)


def replica_failed(exc: BaseException) -> None:
    """A query on the replica failed: read from the primary until the next check says otherwise."""
    with _health_lock:
        _close_replica()
        _set_health(False, f"a query on the replica failed ({type(exc).__name__}: {str(exc).strip()[:200]})", None)


def replica_health_reset() -> None:
    """Forget the last check (tests, and after changing the replica's settings)."""
    with _health_lock:
        _health.checked_at, _health.usable, _health.reason, _health.lag_seconds = -math.inf, None, "", None


def replica_status() -> dict[str, Any]:
    """The last check's result, for health pages and tests."""
    return {"usable": _health.usable, "reason": _health.reason, "lag_seconds": _health.lag_seconds}


# --- the router ------------------------------------------------------------------------------------


class ReplicaRouter:
    """Reads go to the replica only inside a lag-tolerant scope, outside transactions, for tables that
    do not decide identity or permissions, and while the replica is healthy. Writes and migrations:
    the primary (the replica is a physical copy; it is never migrated)."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        if not replica_configured():
            return None  # no replica: Django's own choice, exactly as before
        scope = _scope.get()
        if (
            scope is None
            or model._meta.app_label in PRIMARY_ONLY_APPS
            or connections[DEFAULT_DB_ALIAS].in_atomic_block
            or not replica_usable()
        ):
            return DEFAULT_DB_ALIAS
        scope.used_replica = True
        return REPLICA_ALIAS

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return DEFAULT_DB_ALIAS if replica_configured() else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # Both aliases hold the same rows: an object read from the replica may be related to one
        # read from the primary.
        return True if replica_configured() else None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return False if db == REPLICA_ALIAS else None


# --- views -----------------------------------------------------------------------------------------


def _streamed_on_replica(chunks: Iterable[Any]) -> Iterator[Any]:
    # A streamed export runs its queries while the server iterates, after the view returned: each
    # step re-enters a lag-tolerant scope (and leaves it before yielding, so the server's own work
    # between chunks stays outside).
    iterator = iter(chunks)
    while True:
        with reads_from_replica():
            try:
                chunk = next(iterator)
            except StopIteration:
                return
        yield chunk


def _render_on_replica(view: Callable[..., HttpResponseBase], request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
    with reads_from_replica() as scope:
        try:
            response = view(request, *args, **kwargs)
            # A TemplateResponse (the admin's) runs its lazy queries while rendering: render here.
            render = getattr(response, "render", None)
            if callable(render) and not getattr(response, "is_rendered", True):
                response = render()
        except (OperationalError, InterfaceError) as exc:
            if not scope.used_replica:
                raise
            replica_failed(exc)
            return None
    if isinstance(response, StreamingHttpResponse) and not response.is_async:
        response.streaming_content = _streamed_on_replica(response.streaming_content)  # type: ignore[arg-type]
    return response


PRIMARY_COOKIE = "kplc_primary_until"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Signing in and out writes only the session and the login time, which the primary-only tables hold:
# no page needs the primary for them.
UNPINNED_URL_NAMES = frozenset({"login", "logout", "2fa-setup", "2fa-verify"})


def _pinned_to_primary(request: HttpRequest) -> bool:
    try:
        return float(request.COOKIES.get(PRIMARY_COOKIE, "0")) > time.time()
    except ValueError:
        return False


class PrimaryAfterWriteMiddleware:
    """After a signed-in user's write, their lag-tolerant pages read the primary for a while."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        # Staff signed in through a session only: a partner's API call reads nothing from the replica.
        # Wall-clock time, not kplc_sts.clock: replication lag is real seconds even on a rehearsal's clock.
        if request.method not in SAFE_METHODS and replica_configured():
            session = getattr(request, "session", None)
            match = getattr(request, "resolver_match", None)
            unpinned = match is not None and match.url_name in UNPINNED_URL_NAMES
            if session is not None and SESSION_KEY in session and not unpinned:
                seconds = float(getattr(settings, "REPLICA_MAX_LAG_SECONDS", 30.0))
                response.set_cookie(
                    PRIMARY_COOKIE,
                    f"{time.time() + seconds:.0f}",
                    max_age=math.ceil(seconds),
                    secure=request.is_secure(),
                    httponly=True,
                    samesite="Lax",
                )
        return response


def lag_tolerant_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let a view's GET/HEAD requests read from the replica. Other methods (a form post, an admin
    action) read the primary: they decide something. So do the pages of someone who just wrote."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method not in ("GET", "HEAD") or not replica_configured() or _pinned_to_primary(request):
            return view(request, *args, **kwargs)
        response = _render_on_replica(view, request, *args, **kwargs)
        if response is None:  # the replica failed under the view: once more, from the primary
            response = view(request, *args, **kwargs)
        return response

    wrapper.lag_tolerant = True  # type: ignore[attr-defined]
    return wrapper


# --- Celery --------------------------------------------------------------------------------------------

_task_tokens: dict[str, Token[_Scope | None]] = {}


def _task_prerun(task_id: str = "", **_kwargs: Any) -> None:
    # A task decides (sends, claims, issues): never inside a lag-tolerant scope, even when it runs
    # eagerly inside a lag-tolerant request (the demo runs tasks in-process).
    _task_tokens[task_id] = _scope.set(None)


def _task_postrun(task_id: str = "", **_kwargs: Any) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            _scope.reset(token)
        except ValueError:  # reset from another context (thread pools): just clear it
            _scope.set(None)


def connect_celery_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_task_prerun, dispatch_uid="kplc_sts.replica.prerun", weak=False)
    signals.task_postrun.connect(_task_postrun, dispatch_uid="kplc_sts.replica.postrun", weak=False)
