"""The play: customers, partners, the campaign manager and a care agent on the one accelerated clock.

Events are kept in one heap by clock time. A dispatcher hands each due event to a lane: a
customer's events always go to the same lane (one thread), so a customer does one thing at a time
and in order, as a person does; the manager, the care agent and the faults share the office lane,
the only one that touches the database directly (through the same services the dashboard form and
the care desk use). Customers only ever talk HTTP: to the partner API through their partner, to
*977#, and they read the SMS the gateway accepted for their phone. Each types exactly what the
receipt, the SMS or the USSD screen showed into their virtual meter.
"""

from __future__ import annotations

import datetime as dt
import heapq
import http.client
import itertools
import json
import logging
import math
import queue
import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.db import close_old_connections, connection
from django.db.models import Count

from campaigns import services as campaigns
from campaigns.models import Campaign
from care.models import CareCase
from care.services import care_case_close, meter_flag_non_compliant
from kplc_sts import clock
from sms.models import Message
from tokens.sts import RejectReason

from . import endpoints
from .features import REMINDER_MARK
from .population import REGIONS, Behaviour, Customer
from .stack import Stack

logger = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"(?<!\d)(\d{4})[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
SMS_METER_RE = re.compile(r"^KPLC:? (\d{11,13})\b")  # every SMS carrying digits names its meter first
DAY = 86400.0
AMOUNTS = ((50, 0.2), (100, 0.3), (200, 0.2), (500, 0.15), (1000, 0.1), (2000, 0.05))


def tokens_in(text: str) -> list[str]:
    return ["".join(groups) for groups in TOKEN_RE.findall(text)]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """One keep-alive HTTP/1.1 connection (one per lane thread): what a partner's client keeps open."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        """Raises ConnectionError when the server could not be reached or dropped the connection
        (to the caller that is a timeout: it retries as a partner would)."""
        started = time.perf_counter()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                raw = self.conn.getresponse()
                payload = raw.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # A kept-alive connection the server closed while idle: reconnect once, for free.
                if attempt == 0 and isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError):
                    continue
                raise ConnectionError(str(exc)) from exc
            response_headers: dict[str, str] = {}
            for name, value in raw.getheaders():  # repeated headers (Set-Cookie) folded as HTTP allows
                key = name.lower()
                response_headers[key] = f"{response_headers[key]}, {value}" if key in response_headers else value
            if response_headers.get("connection", "").lower() == "close":
                self.close()
            return Response(raw.status, response_headers, payload, time.perf_counter() - started)
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class DayStats:
    vends: int = 0
    vends_with_codes: int = 0
    vend_latencies: list[float] = field(default_factory=list)
    replays: int = 0
    lookups: int = 0
    ussd_sessions: int = 0
    ussd_latencies: list[float] = field(default_factory=list)
    notices: int = 0
    reminders: int = 0
    sms: int = 0
    scheduled: int = 0
    on_new_key: int = 0  # virtual meters that took the codes that day
    got_codes: int = 0
    confirmed: int = 0
    flagged: int = 0
    lag_max: float = 0.0
    system_done: int | None = None
    system_codes_issued: int | None = None


@dataclass
class Invariants:
    """Violations counted while the play runs (the rest are counted from the rows at the end)."""

    server_errors: int = 0  # 5xx from the API or USSD
    replay_mismatch: int = 0  # a retried reference did not return the first response byte for byte
    unexpected_api_refusals: int = 0  # a vend or lookup refused that should have gone through
    unexpected_meter_rejections: int = 0  # a meter rejected a token it should have taken
    token_sms_to_other_phone: int = 0
    ussd_unexpected_screens: int = 0
    simulator_errors: int = 0  # a handler raised: the play itself is not to be trusted


class UssdBusy(Exception):
    """*977# answered "the service is busy" (its cache or database was unreachable): the customer
    dials again later, as people do."""


class Simulation:
    def __init__(
        self,
        *,
        customers: Sequence[Customer],
        stack: Stack,
        campaign: Campaign,
        partners: dict[str, str],
        behaviour: Behaviour,
        start: dt.datetime,
        days: int,
        capacity: int,
        seed: int,
        lanes: int,
        manager: Any,
        care_agent: Any,
        kill_worker: bool,
        redis_restart: bool,
        features: Sequence[Any] = (),
        progress: Callable[[Simulation], None] | None = None,
    ) -> None:
        self.customers = list(customers)
        self.by_phone = {c.phone: c for c in self.customers}
        self.by_meter = {c.meter_number: c for c in self.customers}
        self.stack, self.campaign, self.partners = stack, campaign, partners
        self.behaviour, self.capacity, self.days = behaviour, capacity, days
        self.start_ts = start.timestamp()
        self.end_ts = self.start_ts + days * DAY
        self.rng = random.Random(seed)
        self.manager, self.care_agent = manager, care_agent
        self.want_kill, self.want_redis_restart = kill_worker, redis_restart
        self.features = list(features)
        self.reminder_runs: list[str] = []  # the last line of each send_reminders (feature "reminders")
        self.push_runs: list[str] = []  # the last line of each push_codes (feature "codes-push")
        self.progress = progress
        self.heap: list[tuple[float, int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.heap_lock = threading.Lock()
        self.seq = itertools.count()
        self.lane_count = lanes
        self.office = lanes  # the office lane's index
        self.queues: list[queue.Queue[tuple[float, Callable[..., None], tuple[Any, ...]] | None]] = [
            queue.Queue() for _ in range(lanes + 1)
        ]
        self.days_stats: dict[dt.date, DayStats] = defaultdict(DayStats)
        self.hour_vends: Counter[tuple[dt.date, int]] = Counter()
        self.stats_lock = threading.Lock()
        self.invariants = Invariants()
        self.vend_status: Counter[str] = Counter()
        self.gateway_notices: Counter[str] = Counter()  # phone -> notices the gateway accepted
        self.gateway_messages = 0
        self.manager_scheduled = 0
        self.batches_scheduled = 0
        # When each batch's enrollments became visible (batch_schedule returned, its transaction
        # committed): they carry the time the transaction began, and on an accelerated clock a
        # few wall seconds of a busy machine are hours. A vend before this could not see them.
        self.batch_visible_at: dict[int, dt.datetime] = {}
        self.schedule_wall_seconds: list[float] = []
        self.partner_retries = 0
        self.double_submits = 0
        self.faults: list[dict[str, Any]] = []
        self.killed = False
        self.redis_restarted = False
        self.draining = False
        self.stop_feed = threading.Event()
        self.errors: list[str] = []
        self.lag_max = 0.0
        self.done_events = 0
        self.ussd_busy = 0

    # --- the event machinery ------------------------------------------------------------------------------

    def at(self, when: float, lane: int, action: Callable[..., None], *args: Any) -> None:
        with self.heap_lock:
            heapq.heappush(self.heap, (when, next(self.seq), lane, action, args))

    def for_customer(self, customer: Customer, when: float, action: Callable[..., None], *args: Any) -> None:
        self.at(when, customer.index % self.lane_count, action, customer, *args)

    def day_of(self, ts: float | None = None) -> dt.date:
        return clock.localdate(dt.datetime.fromtimestamp(ts if ts is not None else clock.timestamp(), tz=dt.UTC))

    def day(self) -> DayStats:
        return self.days_stats[self.day_of()]

    def _lane(self, index: int) -> None:
        http = Http(self.stack.web_port)
        self.http_by_thread[threading.get_ident()] = http
        while True:
            item = self.queues[index].get()
            if item is None:
                self.queues[index].task_done()
                break
            when, action, args = item
            lag = clock.timestamp() - when
            if lag > self.lag_max and index != self.office:  # the office sleeps through its own faults
                self.lag_max = lag
            try:
                action(*args)
            except UssdBusy:
                retries = getattr(action, "__name__", "")
                with self.stats_lock:
                    self.ussd_busy += 1
                if self.ussd_busy < 10_000 and args and isinstance(args[0], Customer):
                    self.for_customer(args[0], clock.timestamp() + 3600, action, *args[1:])
                else:
                    self._error(f"{retries}: *977# stayed busy")
            except Exception as exc:
                logger.exception("rehearsal: %s failed", getattr(action, "__name__", action))
                self._error(f"{getattr(action, '__name__', action)}: {exc.__class__.__name__}: {exc}")
            finally:
                self.queues[index].task_done()
                self.done_events += 1
        http.close()
        if index == self.office:
            connection.close()

    def _error(self, what: str) -> None:
        with self.stats_lock:
            self.invariants.simulator_errors += 1
            if len(self.errors) < 50:
                self.errors.append(what)

    @property
    def http(self) -> Http:
        return self.http_by_thread[threading.get_ident()]

    def run(self) -> None:
        self.http_by_thread: dict[int, Http] = {}
        threads = [
            threading.Thread(target=self._lane, args=(i,), name=f"lane-{i}", daemon=True)
            for i in range(self.lane_count + 1)
        ]
        for thread in threads:
            thread.start()
        feed = threading.Thread(target=self._sms_feed, name="sms-feed", daemon=True)
        feed.start()
        self._plan()
        play_started = time.monotonic()
        drain_seconds = 0.0
        last_progress = 0.0
        drained_checks = 0
        drain_deadline = None
        while True:
            now = clock.timestamp()
            due = []
            with self.heap_lock:
                while self.heap and self.heap[0][0] <= now:
                    due.append(heapq.heappop(self.heap))
                next_at = self.heap[0][0] if self.heap else None
            for when, _, lane, action, args in due:
                self.queues[lane].put((when, action, args))
            if self.progress is not None and time.monotonic() - last_progress > 0.5:
                self.progress(self)
                last_progress = time.monotonic()
            if now >= self.end_ts and not self.draining:
                self.draining = True
                # A play that fell behind its clock catches up here: allow it as long as it played.
                drain_seconds = max(300.0, time.monotonic() - play_started)
                drain_deadline = time.monotonic() + drain_seconds
            if self.draining:
                # No purchase is planned past the end; what is left is SMS still on their way and
                # what customers do with them (type, fetch on *977#, confirm), and the last care round.
                if not self.heap and not self.lanes_busy():
                    drained_checks += 1
                    if drained_checks % 10 == 1 and self._outbox_settled():
                        break
                assert drain_deadline is not None
                if time.monotonic() > drain_deadline:
                    self._error(f"the play did not settle within {drain_seconds:.0f} s of its end")
                    break
            wait = 0.02 if next_at is None else min(max(clock.to_wall(next_at - now), 0.0), 0.02)
            time.sleep(wait)
        # Give the last SMS a moment to be read and typed.
        time.sleep(1.0)
        while self.lanes_busy():
            time.sleep(0.05)
        self.stop_feed.set()
        feed.join(10)
        for q in self.queues:
            q.put(None)
        for thread in threads:
            thread.join(30)
        # The care desk's last round, once every customer has done what they were going to do: a
        # play that fell behind its clock has reports made after the last scheduled round.
        self._care_round()
        connection.close()
        if self.progress is not None:
            self.progress(self)

    def lanes_busy(self) -> bool:
        return any(q.unfinished_tasks for q in self.queues)

    def _outbox_settled(self) -> bool:
        close_old_connections()
        pending = Message.objects.filter(
            status__in=[Message.Status.QUEUED, Message.Status.SENDING, Message.Status.HELD]
        ).count()
        uncounted = Message.objects.filter(sent_counted=False, sent_at__isnull=False).count()
        unreported = Message.objects.filter(status=Message.Status.SENT).count()
        connection.close()
        return pending == 0 and uncounted == 0 and unreported == 0

    # --- the plan: who does what when ------------------------------------------------------------------------

    def _plan(self) -> None:
        for customer in self.customers:
            self._next_purchase(customer, self.start_ts)
        for day in range(self.days):
            morning = self.start_ts + day * DAY
            self.at(morning + 6 * 3600, self.office, self._manager_day)
            self.at(morning + 10 * 3600, self.office, self._care_round)
            self.at(morning + 15 * 3600, self.office, self._care_round)
            self.at(morning + DAY - 60, self.office, self._day_close)
            for feature in self.features:
                self.at(morning + 7 * 3600, self.office, feature.on_day, self)
        if self.want_kill and self.days > 1:
            # Day 2, just before its batches start: the kill lands while their notices go out.
            self.at(self.start_ts + DAY + 8.9 * 3600, self.office, self._kill_worker_mid_batch)
        if self.want_redis_restart:
            self.at(self.start_ts + max(1, int(self.days * 0.4)) * DAY + 12 * 3600, self.office, self._restart_redis)

    def _next_purchase(self, customer: Customer, after: float, *, mean_days: float | None = None) -> None:
        interval = mean_days if mean_days is not None else customer.interval_days
        if interval is None:
            return
        mean = interval * DAY / (self.behaviour.purchase_scale if mean_days is None else 1.0)
        when = after + self.rng.expovariate(1.0 / mean)
        # People buy in the day: move a night-time draw to the next waking hours (06:00-22:00 Nairobi).
        local = dt.datetime.fromtimestamp(when, tz=dt.UTC).astimezone(self.campaign_tz)
        if local.hour < 6 or local.hour >= 22:
            shift = ((6 - local.hour) % 24) * 3600 + self.rng.uniform(0, 16 * 3600)
            when += shift
        if when >= self.end_ts:
            return
        customer.purchase_generation += 1
        self.for_customer(customer, when, self._purchase, customer.purchase_generation)

    @property
    def campaign_tz(self) -> dt.tzinfo:
        return dt.timezone(dt.timedelta(hours=3))  # Africa/Nairobi has had no DST since 1942

    # --- customers -----------------------------------------------------------------------------------------------

    def _purchase(self, customer: Customer, generation: int) -> None:
        if generation != customer.purchase_generation:
            return  # a later plan (after the notice) replaced this purchase
        self._next_purchase(customer, clock.timestamp())
        receipt = self._vend(customer)
        if receipt is None:
            return
        customer.purchases += 1
        tokens = receipt["tokens"]
        customer.note(f"{clock.now():%m-%d %H:%M} bought: {[t['kind'] + ':' + t['digits'][-4:] for t in tokens]}")
        codes = [t["digits"] for t in tokens if t["kind"] != "credit"]
        credit = next(t["digits"] for t in tokens if t["kind"] == "credit")
        if codes:
            self._codes_seen(customer, codes)
            customer.bought_after_open = True
        if customer.channel == "mobile_money":
            # The SMS brings the tokens; if they have not come in 3 hours, the customer dials *977#.
            self.for_customer(customer, clock.timestamp() + 3 * 3600, self._sms_overdue, credit)
        else:
            self._type(customer, codes, credit)

    def _vend(self, customer: Customer) -> dict[str, Any] | None:
        channel = customer.channel
        headers = {"Authorization": f"Api-Key {self.partners[channel]}", "Content-Type": "application/json"}
        if channel != "mobile_money":
            lookup = self._call(
                "GET", endpoints.PARTNER_METER.format(meter_number=customer.meter_number), None, headers
            )
            if lookup is not None:
                with self.stats_lock:
                    self.day().lookups += 1
        amount = _pick(self.rng, AMOUNTS)
        reference = f"{channel[:2].upper()}-{customer.index}-{customer.purchases}-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {"meter_number": customer.meter_number, "amount": f"{amount}.00", "reference": reference}
        if channel == "mobile_money":
            body["customer_phone"] = customer.phone
        payload = json.dumps(body).encode()
        roll = self.rng.random()
        if roll < self.behaviour.partner_double_submit:
            response = self._double_submit(payload, headers)
        else:
            response = self._post_vend(payload, headers)
            if response is not None and roll < self.behaviour.partner_double_submit + self.behaviour.partner_retry:
                # The partner's call timed out after the sale was made: it asks again with the same
                # reference (a repeat POST, or the "last response" GET) and must get the first answer.
                self.partner_retries += 1
                if self.rng.random() < 0.5:
                    again = self._post_vend(payload, headers)
                    replayed = again is not None and again.headers.get("idempotent-replayed") == "true"
                else:
                    again = self._call("GET", endpoints.PARTNER_VEND.format(reference=reference), None, headers)
                    replayed = True
                if again is None or again.body != response.body or not replayed:
                    self.invariants.replay_mismatch += 1
                else:
                    with self.stats_lock:
                        self.day().replays += 1
        if response is None:
            return None
        if response.status != 201:
            self.vend_status[f"{response.status}"] += 1
            with self.stats_lock:
                self.invariants.unexpected_api_refusals += 1
                if len(self.errors) < 50:
                    self.errors.append(f"vend {response.status}: {response.body[:200]!r}")
            return None
        receipt = response.json()
        self.vend_status["201"] += 1
        now_day, hour = self.day_of(), dt.datetime.fromtimestamp(clock.timestamp(), tz=self.campaign_tz).hour
        with self.stats_lock:
            stats = self.days_stats[now_day]
            stats.vends += 1
            stats.vends_with_codes += bool(receipt["key_change"])
            stats.vend_latencies.append(response.seconds)
            self.hour_vends[(now_day, hour)] += 1
        return receipt

    def _post_vend(self, payload: bytes, headers: dict[str, str]) -> Response | None:
        """POST the sale; a dropped connection is a timeout to the partner, who repeats the same request."""
        for attempt in range(4):
            response = self._call("POST", endpoints.PARTNER_VENDS, payload, headers, raise_connection=True)
            if response is not None:
                return response
            self.partner_retries += 1
            time.sleep(0.2 * (attempt + 1))
        return None

    def _double_submit(self, payload: bytes, headers: dict[str, str]) -> Response | None:
        """Two identical POSTs at once: exactly one sale, both answers the same body."""
        self.double_submits += 1
        second: list[Response | None] = []

        def other() -> None:
            client = Http(self.stack.web_port)
            try:
                second.append(client.request("POST", endpoints.PARTNER_VENDS, payload, headers))
            except ConnectionError:
                second.append(None)
            finally:
                client.close()

        thread = threading.Thread(target=other)
        thread.start()
        first = self._post_vend(payload, headers)
        thread.join(60)
        twin = second[0] if second else None
        if first is None or twin is None or first.body != twin.body or first.status != twin.status:
            self.invariants.replay_mismatch += 1
        elif sum(r.headers.get("idempotent-replayed") == "true" for r in (first, twin)) != 1:
            self.invariants.replay_mismatch += 1
        return first

    def _call(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], *, raise_connection: bool = False
    ) -> Response | None:
        try:
            response = self.http.request(method, path, body, headers)
        except ConnectionError:
            if raise_connection:
                return None
            response = None
        if response is not None and response.status >= 500:
            with self.stats_lock:
                self.invariants.server_errors += 1
                if len(self.errors) < 50:
                    self.errors.append(f"{method} {path}: HTTP {response.status}")
            return None
        if response is not None and method == "GET" and response.status != 200:
            with self.stats_lock:
                self.invariants.unexpected_api_refusals += 1
        return response

    def _type(self, customer: Customer, codes: Sequence[str], credit: str | None) -> None:
        """Type into the meter what the customer was given, in the order given; the customer types
        each token once (the same codes arriving again by SMS or USSD are recognised)."""
        meter = customer.meter
        assert meter is not None
        fresh_codes = [code for code in codes if code not in customer.typed]
        if codes:
            customer.codes_unread = False
        customer.note(
            f"{clock.now():%m-%d %H:%M} type codes {[c[-4:] for c in fresh_codes]} credit {credit and credit[-4:]} "
            f"(meter KRN {meter.krn})"
        )
        if customer.wrong_order and fresh_codes and credit and credit not in customer.typed:
            result = meter.enter(credit)  # under the new key: a meter still on the old key refuses it
            if result.accepted:
                customer.typed.add(credit)
                self._unexpected(customer, "the new key's token worked before the codes")
            else:
                customer.expected_rejections += 1
        refused = False
        for code in fresh_codes:
            result = meter.enter(code)
            if result.accepted:
                customer.typed.add(code)
                if result.key_changed:
                    with self.stats_lock:
                        self.day().on_new_key += 1
                    if customer.confirms:
                        self.for_customer(
                            customer, clock.timestamp() + self.rng.expovariate(1 / (6 * 3600)), self._ussd_confirm
                        )
            elif customer.non_compliant:
                refused = True
                customer.expected_rejections += 1
            else:
                self._unexpected(customer, f"code rejected: {result.reason}")
        if credit and credit not in customer.typed:
            result = meter.enter(credit)
            if result.accepted:
                customer.typed.add(credit)
            elif customer.non_compliant and result.reason == RejectReason.CRC_MISMATCH:
                customer.expected_rejections += 1  # under the new key, which this meter cannot take
            elif result.reason == RejectReason.CRC_MISMATCH and meter.key_changes and not codes:
                # A token on its own that reached the customer only after the codes were typed: bought
                # under the old key and never loaded, it is lost (the brief's problem 4). The checks
                # confirm from the rows that it was an old-key token; anything else is a violation.
                customer.stranded.add(credit)
            else:
                self._unexpected(customer, f"token rejected: {result.reason}")
        if refused and not customer.reported_rejection:
            customer.reported_rejection = True
            self.for_customer(customer, clock.timestamp() + self.rng.expovariate(1 / (4 * 3600)), self._ussd_report)

    def _codes_seen(self, customer: Customer, codes: Sequence[str]) -> None:
        """The codes reached the customer (receipt, SMS or *977#): the system has issued them."""
        customer.code_sets.append(tuple(codes))
        if not customer.got_codes:
            customer.got_codes = True
            with self.stats_lock:
                self.day().got_codes += 1

    def _unexpected(self, customer: Customer, what: str) -> None:
        customer.note(f"{clock.now():%m-%d %H:%M} UNEXPECTED {what}")
        customer.unexpected_rejections += 1
        with self.stats_lock:
            self.invariants.unexpected_meter_rejections += 1
            if len(self.errors) < 50:
                self.errors.append(f"meter {customer.meter_number}: {what}")

    def _sms_in(self, customer: Customer, body: str) -> None:
        tokens = tokens_in(body)
        customer.note(f"{clock.now():%m-%d %H:%M} sms {body[:40]!r} tokens {[t[-4:] for t in tokens]}")
        if not tokens and REMINDER_MARK in body:
            self._reminded(customer)
            return
        if not tokens:
            customer.notices += 1
            if customer.notices == 1 and customer.responds_to_notice and not customer.loses_sms:
                self._next_purchase(customer, clock.timestamp(), mean_days=self.behaviour.notice_response_mean_days)
            return
        if "type in order" in body:
            codes, credit = tokens[:-1], tokens[-1]
        elif "then type" in body:
            codes, credit = tokens, None
        else:
            codes, credit = [], tokens[0]
        if codes and customer.phone_fate == "undelivered":
            # The gateway reports this phone's SMS Failed: the codes never reached the customer (the
            # copy is still checked against every other channel's).
            customer.code_sets.append(tuple(codes))
        elif codes:
            self._codes_seen(customer, codes)
        if customer.loses_sms:
            if codes and credit is None and not set(codes) <= customer.typed:
                customer.codes_unread = True
            return  # deleted unread: the overdue check sends the customer to *977#
        self._type(customer, codes, credit)

    def _reminded(self, customer: Customer) -> None:
        """A reminder (issue 15): a customer who has read it buys soon (with the share the model
        assumes), or, holding codes not typed, fetches them on *977# as the reminder says."""
        customer.reminders += 1
        if customer.loses_sms or self.rng.random() >= self.behaviour.responds_to_reminder:
            return
        on_old_key = customer.meter is not None and customer.meter.krn == self.campaign.from_krn
        if not on_old_key:
            return  # updated, though the system has no word of it yet
        if customer.got_codes and customer.purchases:
            self._ussd_fetch(customer)
        else:
            self._next_purchase(customer, clock.timestamp(), mean_days=self.behaviour.notice_response_mean_days)

    def _sms_overdue(self, customer: Customer, credit: str) -> None:
        if credit in customer.typed:
            return
        self._ussd_fetch(customer)

    # --- *977# --------------------------------------------------------------------------------------------------

    def _ussd(self, customer: Customer, steps: Sequence[str]) -> list[str]:
        session = "ATUid_" + uuid.uuid4().hex
        screens: list[str] = []
        inputs: list[str] = []
        for step in ["", *steps]:
            if step:
                inputs.append(step)
            form = {
                "sessionId": session,
                "serviceCode": "*977#",
                "phoneNumber": customer.phone,
                "networkCode": "63902",
                "text": "*".join(inputs),
            }
            response = self._call(
                "POST",
                endpoints.ussd_callback(secret=self.stack.ussd_secret),
                urlencode(form).encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            if response is None or response.status != 200:
                with self.stats_lock:
                    self.invariants.ussd_unexpected_screens += 1
                return screens
            with self.stats_lock:
                self.day().ussd_latencies.append(response.seconds)
            screen = response.body.decode()
            screens.append(screen)
            if screen.startswith("END "):
                break
        if screens and "service is busy" in screens[-1]:
            raise UssdBusy(screens[-1])
        with self.stats_lock:
            self.day().ussd_sessions += 1
        return screens

    def _ussd_fetch(self, customer: Customer) -> None:
        """Lost the SMS: fetch the codes (1), then the last tokens (2), and type what is new."""
        customer.note(f"{clock.now():%m-%d %H:%M} *977# fetch")
        screens = self._ussd(customer, ["1", customer.meter_number])
        codes: list[str] = []
        if screens and "type in this order" in screens[-1]:
            codes = tokens_in(screens[-1])
            self._codes_seen(customer, codes)
        screens = self._ussd(customer, ["2", customer.meter_number])
        latest = tokens_in(screens[-1]) if screens and "last tokens" in screens[-1] else []
        if not latest:
            self._ussd_unexpected(customer, screens)
            return
        # "Load unused tokens first": the customer types what is unused, oldest first, before the
        # codes; one bought with the codes is under the new key, refused, and typed again after them.
        meter = customer.meter
        assert meter is not None
        again = []
        for token in reversed(latest):
            if token in customer.typed:
                continue
            if meter.enter(token).accepted:
                customer.typed.add(token)
            else:
                again.append(token)
                customer.expected_rejections += 1
        self._type(customer, codes, None)
        for token in again:
            self._type(customer, [], token)

    def _ussd_confirm(self, customer: Customer) -> None:
        screens = self._ussd(customer, ["3", customer.meter_number, "1"])
        if screens and screens[-1].startswith("END Thank you"):
            if not customer.confirmed:
                customer.confirmed = True
                with self.stats_lock:
                    self.day().confirmed += 1
        elif screens and "already updated and confirmed" in screens[-1]:
            # An earlier attempt went through although its answer was lost (e.g. *977# busy): the
            # customer now knows it is confirmed.
            if not customer.confirmed:
                customer.confirmed = True
                with self.stats_lock:
                    self.day().confirmed += 1
        else:
            self._ussd_unexpected(customer, screens)

    def _ussd_report(self, customer: Customer) -> None:
        screens = self._ussd(customer, ["4", customer.meter_number, "1"])
        if not (screens and "Case" in screens[-1]):
            self._ussd_unexpected(customer, screens)

    def _ussd_unexpected(self, customer: Customer, screens: Sequence[str]) -> None:
        with self.stats_lock:
            self.invariants.ussd_unexpected_screens += 1
            if len(self.errors) < 50:
                self.errors.append(f"USSD {customer.meter_number}: {screens[-1] if screens else 'no screen'}")

    # --- what the handsets received -------------------------------------------------------------------------------

    def _sms_feed(self) -> None:
        client = Http(self.stack.gateway_port)
        since = 0
        while not self.stop_feed.is_set():
            try:
                feed = client.request("GET", endpoints.GATEWAY_MESSAGES.format(since=since, limit=5000)).json()
            except (ConnectionError, ValueError):
                time.sleep(0.2)
                continue
            messages = feed["messages"]
            since = feed["next"]
            for message in messages:
                self._sms_arrived(message["number"], message["message"])
            if len(messages) < 5000:
                time.sleep(0.05)
        client.close()

    def _sms_arrived(self, number: str, body: str) -> None:
        self.gateway_messages += 1
        customer = self.by_phone.get(number)
        tokens = tokens_in(body)
        with self.stats_lock:
            stats = self.day()
            stats.sms += 1
            if not tokens and REMINDER_MARK in body:
                stats.reminders += 1
            elif not tokens:
                stats.notices += 1
                self.gateway_notices[number] += 1
            else:
                match = SMS_METER_RE.match(body)
                owner = self.by_meter.get(match.group(1)) if match else None
                if owner is None or owner.phone != number:
                    self.invariants.token_sms_to_other_phone += 1
        if customer is not None:
            self.for_customer(customer, clock.timestamp(), self._sms_in, body)

    # --- the office: manager, care, faults, the day's figures -----------------------------------------------------

    def _manager_day(self) -> None:
        """Schedule today's batches, region by region in the plan's order, within the daily capacity,
        through the services the dashboard's schedule form uses (preview, then schedule)."""
        now = clock.now()
        day = clock.localdate(now)
        room = self.capacity - campaigns.campaign_day_load(campaign=self.campaign, day=day)
        slot = 0
        for region, _, _ in REGIONS:
            if room <= 0:
                break
            scheduled_at = now.replace(hour=9, minute=0, second=0, microsecond=0) + dt.timedelta(minutes=20 * slot)
            preview = campaigns.batch_preview(
                campaign=self.campaign, regions=[region], sgcs=[], limit=room, scheduled_at=scheduled_at
            )
            if not preview["matched"]:
                continue
            began = time.monotonic()
            batch = campaigns.batch_schedule(
                campaign=self.campaign,
                regions=[region],
                sgcs=[],
                limit=preview["matched"],
                scheduled_at=scheduled_at,
                actor=self.manager,
            )
            self.batch_visible_at[batch.pk] = clock.now()
            self.schedule_wall_seconds.append(time.monotonic() - began)
            room -= batch.enrolled
            slot += 1
            self.manager_scheduled += batch.enrolled
            self.batches_scheduled += 1
            with self.stats_lock:
                self.day().scheduled += batch.enrolled

    def _care_round(self) -> None:
        """The care agent works the cases customers opened on *977#: a meter that rejected the codes
        goes to the field-visit queue (the desk's action), and the case is closed."""
        cases = CareCase.objects.filter(
            status=CareCase.Status.OPEN, kind__in=[CareCase.Kind.CODE1_REJECTED, CareCase.Kind.CODE2_REJECTED]
        ).select_related("meter")
        for case in cases:
            if case.meter is None:
                continue
            meter_flag_non_compliant(
                meter=case.meter, reason=f"case {case.reference}: field visit", actor=self.care_agent
            )
            care_case_close(case=case, resolution="field visit booked", actor=self.care_agent)
            customer = self.by_meter.get(case.meter.meter_number)
            if customer is not None and not customer.flagged:
                customer.flagged = True
                with self.stats_lock:
                    self.day().flagged += 1

    def _kill_worker_mid_batch(self) -> None:
        """SIGKILL a worker (its whole process group, no warm shutdown) while it holds claimed
        notices of a batch, then start it again: what it had in flight is the sweep's to recover."""
        deadline = time.monotonic() + 30
        notices = Message.objects.filter(purpose=Message.Purpose.NOTICE)
        while time.monotonic() < deadline:
            if notices.filter(status=Message.Status.SENDING).exists():
                break
            time.sleep(0.005)
        else:
            if clock.timestamp() + DAY < self.end_ts:
                self.at(clock.timestamp() + DAY - 600, self.office, self._kill_worker_mid_batch)
            return
        in_flight = notices.filter(status=Message.Status.SENDING).count()
        queued = notices.filter(status=Message.Status.QUEUED).count()
        self.stack.kill_worker(0)
        self.killed = True
        self.faults.append(
            {
                "fault": "worker_killed",
                "at": clock.now().isoformat(),
                "notices_sending": in_flight,
                "notices_queued": queued,
            }
        )
        time.sleep(3)
        self.stack.restart_worker(0)
        self.faults.append({"fault": "worker_restarted", "at": clock.now().isoformat()})

    def _restart_redis(self) -> None:
        at = clock.now().isoformat()
        self.stack.restart_redis(down_seconds=2.0)
        self.redis_restarted = True
        self.faults.append({"fault": "redis_restarted", "at": at, "up_again": clock.now().isoformat()})

    def _day_close(self) -> None:
        campaign = Campaign.objects.get(pk=self.campaign.pk)
        with self.stats_lock:
            stats = self.day()
            stats.system_done = campaign.done
            stats.system_codes_issued = campaign.codes_issued
            stats.lag_max = self.lag_max
        self.lag_max = 0.0


def _pick(rng: random.Random, options: Sequence[tuple[Any, float]]) -> Any:
    roll, total = rng.random(), 0.0
    for value, share in options:
        total += share
        if roll < total:
            return value
    return options[-1][0]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def counts_by(queryset: Any, field_name: str) -> dict[Any, int]:
    return {row[field_name]: row["n"] for row in queryset.values(field_name).annotate(n=Count("pk"))}
