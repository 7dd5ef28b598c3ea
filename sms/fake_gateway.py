"""A local stand-in for Africa's Talking: the SMS send endpoint and delivery-report callbacks.

Used by the demo (`manage.py fake_africastalking`) and the integration tests (a pytest
fixture). The real `africastalking` SDK is pointed at it. It answers
`POST /version1/messaging` like AT does: form fields `username, to, message, from, bulkSMSMode,
enqueue`, header `apiKey`, HTTP 201 with `Content-Type: application/json` and
`{"SMSMessageData": {"Message": ..., "Recipients": [{statusCode, number, status, cost,
messageId}]}}`. Failures are configurable:

- a wrong apiKey: HTTP 401 "The supplied authentication is invalid";
- `fail_rate`: that share of requests fails transiently (half HTTP 500, half statusCode 500);
- `number_status`: a fixed statusCode for given numbers (401 RiskHold, 403 InvalidPhoneNumber,
  406 UserInBlacklist, 500 InternalServerError...);
- `slow_rate` / `slow_seconds`: some answers arrive late (beyond the SDK timeout, if you like);
- `dlr_failures`: numbers whose delivery report says Failed with a reason.

Accepted messages get a delivery report POSTed (form-encoded) to `callback_url` after
`dlr_delay` seconds. GET /_fake/stats returns counters for scripts in other processes, and
GET /_fake/messages?since=N&limit=M the accepted messages from position N on (what the handsets
received: the rehearsal's customers read their SMS there).
Room is left for a USSD simulator beside it (another path on the same server).
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import random
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

STATUS_NAMES = {
    100: "Processed",
    101: "Success",
    102: "Queued",
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}


# A number the local gateway refuses for good (AT statusCode 406, UserInBlacklist) when started with
# `fake_africastalking --refuse-demo-number`: the demo gives it to one meter, whose SMS keep failing.
DEMO_REFUSED_NUMBER = "+254700000406"


@dataclass
class GatewayConfig:
    api_key: str | None = None  # None accepts any key
    callback_url: str | None = None
    fail_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    number_status: dict[str, int] = field(default_factory=dict)
    dlr_failures: dict[str, str] = field(default_factory=dict)  # number -> failureReason
    dlr_delay: float = 0.05
    dlr_threads: int = 4  # concurrent callback connections (AT posts reports in parallel)
    cost: str = "KES 0.8000"
    seed: int | None = None


@dataclass
class SentRecord:
    message_id: str
    number: str
    message: str
    sender_id: str
    enqueue: bool


class FakeAfricasTalking:
    def __init__(self, config: GatewayConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or GatewayConfig()
        self._random = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self.sent: list[SentRecord] = []
        self.requests = 0
        self.failures: Counter[str] = Counter()
        self.reports_posted = 0
        self.report_errors = 0
        self._reports: queue.Queue[tuple[float, dict[str, str]] | None] = queue.Queue()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive like the real API, so a pooled client pays one connection, not one per SMS.
            protocol_version = "HTTP/1.1"
            timeout = 60  # an idle kept-alive connection is dropped after this (its thread ends)

            def log_request(self, code: object = "-", size: object = "-") -> None:
                pass  # one log call per request is measurable at hundreds per second

            def log_message(self, format: str, *args: object) -> None:
                logger.debug("fake AT: " + format, *args)

            def do_GET(self) -> None:
                if self.path.startswith("/_fake/stats"):
                    self._reply(HTTPStatus.OK, gateway.stats())
                elif self.path.startswith("/_fake/messages"):
                    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                    since, limit = int(query.get("since", "0")), int(query.get("limit", "5000"))
                    self._reply(HTTPStatus.OK, gateway.messages_since(since, limit))
                else:
                    self._reply(HTTPStatus.NOT_FOUND, "Not found", text=True)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.path.rstrip("/") != "/version1/messaging":
                    self._reply(HTTPStatus.NOT_FOUND, "Not found", text=True)
                    return
                status, body, text = gateway.handle_send(dict(urllib.parse.parse_qsl(raw)), self.headers)
                self._reply(status, body, text=text)

            def _reply(self, status: int, body: object, *, text: bool = False) -> None:
                payload = (str(body) if text else json.dumps(body)).encode()
                # The status line and headers by hand, in one write with the body: the stdlib's
                # send_response formats a Date header and logs on every call.
                lines = [
                    f"HTTP/1.1 {int(status)} {HTTPStatus(status).phrase}",
                    f"Content-Type: {'text/plain' if text else 'application/json'}",
                    f"Content-Length: {len(payload)}",
                ]
                if self.close_connection:
                    lines.append("Connection: close")
                self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self.server = Server((host, port), Handler)
        self._threads: list[threading.Thread] = []
        self._stopped = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start(self) -> FakeAfricasTalking:
        serve = threading.Thread(target=self.server.serve_forever, name="fake-at", daemon=True)
        serve.start()
        self._threads.append(serve)
        for index in range(self.config.dlr_threads):
            poster = threading.Thread(target=self._post_reports, name=f"fake-at-dlr-{index}", daemon=True)
            poster.start()
            self._threads.append(poster)
        return self

    def serve_forever(self) -> None:
        for index in range(self.config.dlr_threads):
            threading.Thread(target=self._post_reports, name=f"fake-at-dlr-{index}", daemon=True).start()
        self.server.serve_forever()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and posting. Reports not yet posted are dropped, and this returns only once
        no poster thread can post again (a report landing after a test's teardown began would
        write to a database being flushed)."""
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()
        with self._reports.mutex:
            self._reports.queue.clear()
        for _ in range(self.config.dlr_threads):
            self._reports.put(None)
        for thread in self._threads:
            thread.join(timeout)

    # --- behaviour ----------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        with self._lock:
            per_number = Counter(record.number for record in self.sent)
            return {
                "requests": self.requests,
                "accepted": len(self.sent),
                "distinct_numbers": len(per_number),
                "duplicates": sum(count - 1 for count in per_number.values() if count > 1),
                "failures": dict(self.failures),
                "reports_posted": self.reports_posted,
                "report_errors": self.report_errors,
            }

    def messages_since(self, since: int, limit: int = 5000) -> dict[str, object]:
        """Accepted messages from position `since` on, oldest first: the handsets' view, for a
        simulator in another process that plays the customers receiving them."""
        with self._lock:
            records = self.sent[since : since + max(limit, 0)]
        return {
            "next": since + len(records),
            "messages": [{"id": r.message_id, "number": r.number, "message": r.message} for r in records],
        }

    def handle_send(self, form: dict[str, str], headers: object) -> tuple[int, object, bool]:
        config = self.config
        with self._lock:
            self.requests += 1
            roll, slow_roll = self._random.random(), self._random.random()
        api_key = headers.get("apiKey") if hasattr(headers, "get") else None
        if config.api_key is not None and api_key != config.api_key:
            self._count("http_401")
            return HTTPStatus.UNAUTHORIZED, "The supplied authentication is invalid", True
        if not form.get("username") or not form.get("to") or not form.get("message"):
            self._count("http_400")
            return HTTPStatus.BAD_REQUEST, "Request is missing required form field 'to'", True
        if config.slow_rate and slow_roll < config.slow_rate:
            time.sleep(config.slow_seconds)
        if config.fail_rate and roll < config.fail_rate:
            if roll < config.fail_rate / 2:
                self._count("http_500")
                return HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error", True
            transient = True
        else:
            transient = False
        recipients = []
        for number in [n.strip() for n in form["to"].split(",") if n.strip()]:
            code = 500 if transient else config.number_status.get(number, 101)
            entry: dict[str, object] = {
                "statusCode": code,
                "number": number,
                "status": STATUS_NAMES.get(code, "Failed"),
                "cost": config.cost if code in (100, 101, 102) else "0",
                "messageId": "None",
            }
            if code in (100, 101, 102):
                message_id = f"ATXid_{uuid.uuid4().hex}"
                entry["messageId"] = message_id
                with self._lock:
                    self.sent.append(
                        SentRecord(
                            message_id, number, form["message"], form.get("from", ""), form.get("enqueue") == "1"
                        )
                    )
                self._queue_report(message_id, number)
            else:
                self._count(f"status_{code}")
            recipients.append(entry)
        accepted = sum(1 for entry in recipients if entry["statusCode"] in (100, 101, 102))
        summary = f"Sent to {accepted}/{len(recipients)} Total Cost: KES {0.8 * accepted:.4f}"
        return HTTPStatus.CREATED, {"SMSMessageData": {"Message": summary, "Recipients": recipients}}, False

    def _count(self, what: str) -> None:
        with self._lock:
            self.failures[what] += 1

    def _queue_report(self, message_id: str, number: str) -> None:
        if not self.config.callback_url:
            return
        reason = self.config.dlr_failures.get(number)
        report = {"id": message_id, "phoneNumber": number, "networkCode": "63902", "retryCount": "0"}
        if reason:
            report.update(status="Failed", failureReason=reason)
        else:
            report.update(status="Success")
        self._reports.put((time.monotonic() + self.config.dlr_delay, report))

    def _post_reports(self) -> None:
        # One kept-alive connection per poster thread (reopened after any error), like AT's
        # callbacks; a new connection per report would cost our endpoint more than the report.
        conn: http.client.HTTPConnection | None = None
        connected_to = ""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        while True:
            item = self._reports.get()
            if item is None:
                if conn is not None:
                    conn.close()
                return
            due, report = item
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self._stopped:
                continue  # dropped; the sentinel behind it ends the thread
            data = urllib.parse.urlencode(report).encode()
            # Read per report: tests point the callback at their live server after start().
            url = self.config.callback_url or ""
            target = urllib.parse.urlsplit(url)
            path = target.path + (f"?{target.query}" if target.query else "")
            if conn is not None and url != connected_to:
                conn.close()
                conn = None
            for attempt in range(5):
                try:
                    if conn is None:
                        connected_to = url
                        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=10)
                    conn.request("POST", path, body=data, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    if response.getheader("Connection", "").lower() == "close" or response.version == 10:
                        conn.close()
                        conn = None
                    if response.status >= 400:
                        raise OSError(f"callback answered {response.status}")
                    with self._lock:
                        self.reports_posted += 1
                    break
                except Exception:  # noqa: BLE001 - our app may be restarting; AT retries too
                    if conn is not None:
                        conn.close()
                        conn = None
                    time.sleep(0.2 * (attempt + 1))
            else:
                with self._lock:
                    self.report_errors += 1
