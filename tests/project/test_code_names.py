"""One name for each code on every channel a customer or an agent reads: "Update code 1", "Update
code 2", then the "Token" (the receipt and API, SMS, USSD, the decoder, the admin's labels)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from campaigns.models import DEFAULT_CODES_TEMPLATE, DEFAULT_NOTICE_TEMPLATE
from care.models import CareCase
from care.ussd import TEXTS
from sms.models import Message
from tokens.receipts import instruction_for, tokens_list

ROOT = Path(__file__).resolve().parents[2]
# Where customer- or agent-facing wording lives (the Kiswahili USSD texts say "namba ya usasishaji").
WORDING = [
    "campaigns/texts.py",
    "campaigns/models.py",
    "tokens/receipts.py",
    "tokens/api/serializers.py",
    "tokens/api/views.py",
    "care/explain.py",
    "care/models.py",
    "care/desk.py",
    "care/status.py",
    "care/templates/care",
    "sms/models.py",
]
# "code 1" / "codes 1 and 2" not preceded by "update", or the retired names.
BARE = re.compile(r"(?<![Uu]pdate )\bcodes? [12]\b|Reset code|Reset and Update")


def _sources() -> list[Path]:
    paths: list[Path] = []
    for name in WORDING:
        path = ROOT / name
        paths += sorted(path.rglob("*.html")) if path.is_dir() else [path]
    return paths


def test_the_receipt_and_the_api_name_the_codes_update_code_1_and_2_then_the_token():
    items = tokens_list(codes=["1" * 20, "2" * 20], credit_digits="3" * 20)
    assert [item["label"] for item in items] == ["Update code 1", "Update code 2", "Token"]
    assert [item["kind"] for item in items] == ["reset_code", "update_code", "credit"]  # the API's machine names
    assert "Update code 1, then Update code 2, then the Token." in instruction_for(["1" * 20, "2" * 20])


def test_sms_and_ussd_say_update_codes_1_and_2():
    assert "update codes 1 and 2" in DEFAULT_NOTICE_TEMPLATE
    assert "1) {code1} 2) {code2} 3) {token}" in DEFAULT_CODES_TEMPLATE  # numbered in typing order
    english = " ".join(TEXTS["en"].values())
    assert not BARE.findall(english), BARE.findall(english)
    assert "update code 1, then update code 2, then your token" in english
    assert "1 Update code 1\n2 Update code 2" in TEXTS["en"]["report_what"]


def test_the_admin_labels_name_the_codes_the_same_way():
    assert Message.Purpose.CODES.label == "Update codes"
    assert CareCase.Kind.CODE1_REJECTED.label == "Meter rejected update code 1"
    assert CareCase.Kind.CODE2_REJECTED.label == "Meter rejected update code 2"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_other_name_for_a_code_in_the_wording(path):
    if not path.exists():
        pytest.fail(f"{path} is listed as holding wording but does not exist")
    text = path.read_text()
    assert not BARE.findall(text), (path, BARE.findall(text))
