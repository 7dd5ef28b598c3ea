"""The whole campaign for a handful of meters, through the interfaces people and partners use.

Register export → vending keys → campaign → batch → notices by SMS → a partner vends → the customer
types the three tokens into a meter → confirms on *977# → the manager's overview adds up. Every step
goes through a management command, the partner API, the USSD callback or the dashboard, never a
model shortcut, so this fails if any of the pieces stops fitting the next one.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client

from accounts.roles import CAMPAIGN_MANAGER
from campaigns.models import Campaign, Enrollment
from meters.models import Meter
from sms.backends.memory import MemoryBackend
from tokens.sts import VirtualMeter, derive_decoder_key, luhn_check_digit, pan_from_meter_number

pytestmark = pytest.mark.django_db(transaction=True)

NAIROBI = ZoneInfo("Africa/Nairobi")
SGC = "600675"
HEADER = "meter_number,sgc,ti,krn,kt,ea,dkga,base_date,ken,account_number,customer_name,phone,region"


def _meter_number(serial: int) -> str:
    partial = f"54{serial:08d}"
    return partial + str(luhn_check_digit(partial))


def _odd_parity_key(seed: int) -> bytes:
    key = bytearray()
    for index in range(8):
        byte = (seed * 37 + index * 91) & 0xFE
        key.append(byte | (bin(byte).count("1") % 2 == 0))
    return bytes(key)


def _run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _ussd(client: Client, phone: str, text: str, session: str = "journey-1") -> str:
    response = client.post(
        "/ussd/",
        {"sessionId": session, "serviceCode": "*977#", "phoneNumber": phone, "networkCode": "63902", "text": text},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert body.startswith(("CON ", "END ")) and len(body) <= 182, body
    return body


def test_a_meter_goes_from_the_register_to_confirmed_on_the_new_key(tmp_path: Path, staff) -> None:
    meters = [_meter_number(serial) for serial in range(1, 6)]
    phones = [f"07{serial:08d}" for serial in range(11, 16)]
    rows = [
        f"{number},{SGC},01,1,2,07,02,1993,255,ACC{index},Customer {index},{phone},Nairobi"
        for index, (number, phone) in enumerate(zip(meters, phones, strict=True))
    ]
    bad_number = meters[0][:-1] + str((int(meters[0][-1]) + 1) % 10)
    rows.append(f"{bad_number},{SGC},01,1,2,07,02,1993,255,ACCX,Bad Row,0712000000,Nairobi")
    export = tmp_path / "register.csv"
    export.write_text("\n".join([HEADER, *rows]) + "\n")
    old_key, new_key = _odd_parity_key(1), _odd_parity_key(2)
    for krn, base_date, key in ((1, 1993, old_key), (2, 2014, new_key)):
        key_file = tmp_path / f"vk{krn}.hex"
        key_file.write_text(key.hex())
        _run(
            "load_vending_key",
            "--sgc",
            SGC,
            "--krn",
            str(krn),
            "--dkga",
            "02",
            "--base-date",
            str(base_date),
            "--file",
            str(key_file),
        )

    # 2024, inside the real campaign: the 1993 key still works, and the campaign runs on a deadline.
    start = dt.datetime(2024, 7, 1, 9, 0, tzinfo=NAIROBI)
    with time_machine.travel(start, tick=True):
        # given the utility's register export, one row of which has a wrong check digit
        _run("import_meters", str(export), "--rejects", str(tmp_path / "rejects.csv"))
        assert Meter.objects.count() == 5
        rejects = (tmp_path / "rejects.csv").read_text()
        assert bad_number in rejects and "7" in rejects.splitlines()[1].split(",")[0]
        assert Meter.objects.get(meter_number=meters[0]).phone == "+254" + phones[0][1:]

        # when a campaign is created and a batch of three scheduled a minute from now
        campaign_id = int(
            _run(
                "create_campaign",
                "--name",
                "Journey",
                "--sgc",
                SGC,
                "--from-krn",
                "1",
                "--to-krn",
                "2",
                "--deadline",
                "2024-08-31",
                "--daily-capacity",
                "1000",
            )
            .strip()
            .splitlines()[-1]
        )
        at = (start + dt.timedelta(minutes=1)).isoformat()
        last_line = (
            _run("schedule_batch", "--campaign", str(campaign_id), "--limit", "3", "--at", at).strip().splitlines()[-1]
        )
        assert re.fullmatch(r"batch \d+: 3 meters", last_line), last_line

    with time_machine.travel(start + dt.timedelta(minutes=2), tick=True):
        _run("campaign_tick")
        # then each of the three enrolled customers got exactly one notice
        notices = [sms for sms in MemoryBackend.outbox if sms.purpose == "notice"]
        enrolled = list(Enrollment.objects.filter(campaign_id=campaign_id).select_related("meter"))
        assert sorted(sms.recipient for sms in notices) == sorted(e.meter.phone for e in enrolled)
        assert all("load" in sms.body.lower() for sms in notices)  # "load unused tokens first"

        # when a partner sells electricity to one enrolled customer
        api_key = _run("create_partner", "Journey Bank", "--daily-limit", "100000").strip().splitlines()[-1]
        partner = Client(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
        customer = enrolled[0].meter
        lookup = partner.get(f"/api/v1/meters/{customer.meter_number}/")
        assert lookup.status_code == 200 and lookup.json()["pending_update"] is True
        sale = {"meter_number": customer.meter_number, "amount": "500.00", "reference": "JRN-0001"}
        response = partner.post("/api/v1/vends/", sale, content_type="application/json")
        assert response.status_code in (200, 201), response.content
        vend = response.json()
        kinds = [token["kind"] for token in vend["tokens"]]
        assert kinds == ["reset_code", "update_code", "credit"]
        assert [token["position"] for token in vend["tokens"]] == [1, 2, 3]

        # then the same codes and token reach the customer's phone
        codes_sms = [sms for sms in MemoryBackend.outbox if sms.recipient == customer.phone and sms.purpose != "notice"]
        assert len(codes_sms) == 1
        for token in vend["tokens"]:
            assert token["digits"] in codes_sms[0].body.replace("-", "").replace(" ", "")

        # and a meter on the old key takes them in order: codes first, then the credit
        pan = pan_from_meter_number(customer.meter_number)
        old_dk = derive_decoder_key(dkga="02", vending_key=old_key, pan=pan, sgc=SGC, ti=1, krn=1, kt=2)
        meter = VirtualMeter(decoder_key=old_dk, krn=1, kt=2, ti=1, base_date=1993, sgc=SGC)
        typed_first = meter.enter(vend["tokens"][2]["digits"])
        assert not typed_first.accepted  # the credit is under the new key
        for token in vend["tokens"]:
            result = meter.enter(token["digits"])
            assert result.accepted, (token["kind"], result.reason, result.message)
        assert meter.krn == 2 and meter.credit > Decimal(0)
        assert meter.credit == Decimal(vend["units"])

        # when the customer confirms on *977# from the registered phone
        ussd = Client()
        menu = _ussd(ussd, customer.phone, "")
        assert menu.startswith("CON ")
        confirm_choice = "3"
        asked = _ussd(ussd, customer.phone, f"{confirm_choice}*{customer.meter_number}")
        assert asked.startswith("CON ")
        done = _ussd(ussd, customer.phone, f"{confirm_choice}*{customer.meter_number}*1")
        assert done.startswith("END ")

        # then the enrollment is confirmed and the manager's overview says so
        enrollment = Enrollment.objects.get(campaign_id=campaign_id, meter=customer)
        assert enrollment.state == Enrollment.State.CONFIRMED
        campaign = Campaign.objects.get(pk=campaign_id)
        dashboard = Client()
        dashboard.force_login(staff(CAMPAIGN_MANAGER, "journey-manager"))
        overview = dashboard.get(f"/dashboard/campaigns/{campaign.pk}/")
        assert overview.status_code == 200
        page = overview.content.decode()
        for label, expected in (("Scheduled", 3), ("Notified", 3), ("Codes issued", 1), ("Confirmed", 1)):
            assert re.search(rf"{label}.{{0,400}}?>\s*{expected}\s*<", page, re.S | re.I), label
