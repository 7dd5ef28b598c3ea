"""Run the local Africa's Talking-like gateway (demo and benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from kplc_sts import clock
from kplc_sts.logging import redact
from sms.fake_gateway import DEMO_REFUSED_NUMBER, FakeAfricasTalking, GatewayConfig


class Command(BaseCommand):
    help = "Run a local HTTP server that behaves like Africa's Talking's SMS API."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8025)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--callback", help="delivery-report URL, e.g. http://127.0.0.1:8000/sms/delivery-reports/S/"
        )
        parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests failing transiently")
        parser.add_argument("--slow-rate", type=float, default=0.0)
        parser.add_argument("--slow-seconds", type=float, default=12.0)
        parser.add_argument(
            "--dlr-delay",
            type=float,
            default=0.5,
            help="seconds before the delivery report, on kplc_sts.clock (shorter in wall time on an accelerated clock)",
        )
        parser.add_argument(
            "--numbers-file",
            help='JSON {"number_status": {"+2547...": 406}, "dlr_failures": {"+2547...": "AbsentSubscriber"}}',
        )
        parser.add_argument("--seed", type=int, help="seed of the failure draws")
        parser.add_argument("--dlr-threads", type=int, default=4, help="concurrent delivery-report connections")
        parser.add_argument("--api-key", help="require this apiKey (HTTP 401 otherwise)")
        parser.add_argument(
            "--number-status",
            action="append",
            default=[],
            metavar="NUMBER=CODE",
            help="fixed statusCode for a number, e.g. +254700000001=406 (repeatable)",
        )
        parser.add_argument(
            "--refuse-demo-number",
            action="store_true",
            help=f"refuse {DEMO_REFUSED_NUMBER} (UserInBlacklist), the demo's meter whose SMS keep failing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        number_status = {DEMO_REFUSED_NUMBER: 406} if options["refuse_demo_number"] else {}
        for item in options["number_status"]:
            number, _, code = item.partition("=")
            number_status[number] = int(code)
        dlr_failures: dict[str, str] = {}
        if options["numbers_file"]:
            numbers = json.loads(Path(options["numbers_file"]).read_text())
            number_status.update({str(k): int(v) for k, v in numbers.get("number_status", {}).items()})
            dlr_failures = {str(k): str(v) for k, v in numbers.get("dlr_failures", {}).items()}
        config = GatewayConfig(
            api_key=options["api_key"],
            callback_url=options["callback"],
            fail_rate=options["fail_rate"],
            slow_rate=options["slow_rate"],
            slow_seconds=options["slow_seconds"],
            # The gateway itself counts wall seconds; a report "5 s later" comes sooner on a fast clock.
            dlr_delay=clock.to_wall(options["dlr_delay"]),
            dlr_threads=options["dlr_threads"],
            number_status=number_status,
            dlr_failures=dlr_failures,
            seed=options["seed"],
        )
        try:
            gateway = FakeAfricasTalking(config, host=options["host"], port=options["port"])
        except OSError as exc:
            # Most often another install's gateway: sending through it would post our delivery
            # reports to that install. Say so in one line instead of a traceback.
            raise CommandError(
                f"port {options['port']} is in use ({exc.strerror}); stop what listens there or set GATEWAY_PORT=…"
            ) from None
        # The callback URL holds the delivery-report secret: this line lands in a log file.
        callback = redact(config.callback_url) if config.callback_url else "none"
        self.stdout.write(f"fake Africa's Talking on {gateway.url} (callback {callback})")
        self.stdout.flush()
        try:
            gateway.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            gateway.server.server_close()
