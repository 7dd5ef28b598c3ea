"""Load a vending key from a file or standard input (never argv), wrapped under the KEK."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens.custody import VendingKeyError, parse_key_hex, vending_key_load


class Command(BaseCommand):
    help = "Load a vending key (hex) from --file or standard input. The key is never echoed or logged."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sgc", required=True, help="supply group code, 6 digits")
        parser.add_argument("--krn", required=True, type=int, help="key revision number 1..9")
        parser.add_argument("--dkga", required=True, choices=["02", "04"])
        parser.add_argument("--base-date", required=True, type=int, choices=[1993, 2014, 2035])
        parser.add_argument("--file", type=Path, help="file holding the key as hex (default: standard input)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            try:
                text = options["file"].read_text()
            except OSError as exc:
                raise CommandError(f"cannot read {options['file']}: {exc.strerror}") from None
        elif sys.stdin.isatty():
            text = getpass.getpass("Vending key (hex, not echoed): ")
        else:
            text = sys.stdin.read()
        key: bytes | None = None
        try:
            key = parse_key_hex(text)
            vending_key = vending_key_load(
                sgc=options["sgc"],
                krn=options["krn"],
                dkga=options["dkga"],
                base_date=options["base_date"],
                key=key,
                actor_label=f"command:load_vending_key:{getpass.getuser()}",
            )
        except VendingKeyError as exc:
            raise CommandError(str(exc)) from None
        finally:
            text, key = "", None  # drop references early; Python cannot wipe, but need not keep them
        self.stdout.write(
            f"Loaded vending key SGC {vending_key.sgc} KRN {vending_key.krn} "
            f"({vending_key.key_bits} bits), check value {vending_key.check_value}"
        )
