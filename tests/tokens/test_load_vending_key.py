"""manage.py load_vending_key: the key comes from a file or standard input, never argv or output."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tokens.custody import key_check_value, vending_key_get
from tokens.management.commands.load_vending_key import Command
from tokens.models import VendingKey

from .conftest import assert_no_key

pytestmark = pytest.mark.django_db

ARGS = ["--sgc", "600675", "--krn", "1", "--dkga", "02", "--base-date", "1993"]


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("load_vending_key", *ARGS, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_loads_from_a_file_and_prints_only_the_check_value(des_key: bytes, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key.hex"
    key_file.write_text(des_key.hex(" ").upper() + "\n")  # spaced, upper case, trailing newline

    stdout, stderr = run("--file", str(key_file))

    assert vending_key_get(sgc="600675", krn=1) == des_key
    assert f"check value {key_check_value(des_key)}" in stdout
    for text in (stdout, stderr, caplog.text):
        assert_no_key(text, des_key)


def test_loads_from_standard_input(des_key: bytes, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(sys, "stdin", io.StringIO(des_key.hex() + "\n"))

    stdout, stderr = run()

    assert vending_key_get(sgc="600675", krn=1) == des_key
    assert VendingKey.objects.get().loaded_by.startswith("command:load_vending_key:")
    for text in (stdout, stderr, caplog.text):
        assert_no_key(text, des_key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0123456789ABCD", "must be 64 bits, got 56"),
        ("0123456789ABCDEF01", "must be 64 bits, got 72"),
        ("0123456789ABCDEG", "must be hexadecimal"),
        ("", "must be 64 bits, got 0"),
    ],
)
def test_refuses_a_malformed_key_with_a_clear_error(monkeypatch, text: str, message: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    with pytest.raises(CommandError, match=message) as excinfo:
        run()
    if text:
        assert text not in str(excinfo.value)  # the error names the problem, never the input
    assert not VendingKey.objects.exists()


def test_unreadable_key_file_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        run("--file", str(tmp_path / "missing.hex"))


def test_there_is_no_argument_that_takes_the_key() -> None:
    parser = Command().create_parser("manage.py", "load_vending_key")
    own = {action.dest for action in parser._actions} - {
        "help", "version", "verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color",
        "skip_checks",
    }  # fmt: skip
    assert own == {"sgc", "krn", "dkga", "base_date", "file"}
    with pytest.raises(CommandError, match="unrecognized arguments"):
        call_command("load_vending_key", *ARGS, "--key", "0123456789ABCDEF")
