from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from campaigns.models import DEFAULT_CODES_TEMPLATE, DEFAULT_NOTICE_TEMPLATE, Batch
from campaigns.services import batch_schedule
from campaigns.texts import (
    SAMPLE_CODES,
    TemplateError,
    codes_render,
    gsm7_length,
    notice_render,
    notice_sql_expression,
    validate_codes_template,
    validate_notice_template,
)

LONGEST_NAME = ("Wanjiku-Kamau Nyambura Achieng Otieno Mwangi Kiprotich Chebet Odhiambo Muthoni Njoroge " * 2)[:120]


@pytest.mark.parametrize("meter", ["0" * 13, "12345678903", "9" * 13])
@pytest.mark.parametrize("name", ["", "Jane", LONGEST_NAME.ljust(120, "x"), "Zoë “Curly” Ndegé" * 8])
def test_every_template_fits_one_gsm7_segment(meter, name):
    notice = notice_render(template=DEFAULT_NOTICE_TEMPLATE, meter_number=meter, name=name, when=dt.date(2024, 9, 30))
    codes = codes_render(template=DEFAULT_CODES_TEMPLATE, meter_number=meter, name=name, **SAMPLE_CODES)
    for text in (notice, codes):
        assert gsm7_length(text) is not None, text
        assert gsm7_length(text) <= 160, text
        assert "http" not in text and "www" not in text
    assert meter in notice and "unused tokens" in notice
    # Codes in typing order, labelled 1, 2, 3.
    assert codes.index("1) ") < codes.index("2) ") < codes.index("3) ")


def test_templates_are_validated():
    validate_notice_template(DEFAULT_NOTICE_TEMPLATE)
    validate_codes_template(DEFAULT_CODES_TEMPLATE)
    with pytest.raises(TemplateError, match="160"):
        validate_notice_template("{meter} " + "x" * 150)
    with pytest.raises(TemplateError, match="links"):
        validate_notice_template("{meter} see https://kplc.co.ke")
    with pytest.raises(TemplateError, match="GSM-7"):
        validate_notice_template("{meter} “quoted”")
    with pytest.raises(TemplateError, match="order"):
        validate_codes_template("{meter} {code2} {code1} {token}")
    with pytest.raises(TemplateError, match="unknown"):
        validate_notice_template("{meter} {balance}")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", "Jane Wanjiku", "A" * 120])
def test_sql_rendering_matches_python_rendering(campaign, meter_factory, now, name):
    meter = meter_factory.create(customer_name=name)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=1, scheduled_at=now)
    batch = Batch.objects.select_related("campaign").get(pk=batch.pk)
    expression, params = notice_sql_expression(batch=batch, meter_alias="m")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression} FROM meters_meter m WHERE m.id = %s", [*params, meter.pk])
        from_sql = cursor.fetchone()[0]
    expected = notice_render(
        template=batch.campaign.notice_template, meter_number=meter.meter_number, name=name, when=batch.scheduled_at
    )
    # SQL sizes the name for the longest (13-digit) meter number, so it may be a little shorter.
    assert len(from_sql) <= 160
    if len(name) < 10:
        assert from_sql == expected
    else:
        assert from_sql.replace(name[:5], "") != from_sql  # the name is there, cut to fit


@pytest.mark.django_db
def test_notices_rendered_in_sql_are_gsm7_whatever_the_names(campaign, meter_factory, now):
    from campaigns.services import batch_notices_create
    from campaigns.texts import gsm7_clean, gsm7_length
    from sms.models import Message

    names = ["Wanjirũ Ng’ang’a", "“Mama” Akinyi – Otieno", "Kamau 😀", "Zoë Çelik", "Jane Wanjiku", "\u0141ukasz"]
    meters = {meter_factory.create(customer_name=name).pk: name for name in names}
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=len(names), scheduled_at=now)
    assert batch_notices_create(batch=batch, now=now) == len(names)
    for meter_id, meter_number, body in Message.objects.filter(batch_id=batch.pk).values_list(
        "meter_id", "meter__meter_number", "body"
    ):
        assert gsm7_length(body) is not None and len(body) <= 160, body
        expected = notice_render(
            template=campaign.notice_template, meter_number=meter_number, name=meters[meter_id], when=now
        )
        clean = gsm7_clean(meters[meter_id]).strip()
        if len(clean) <= 12:
            assert body == expected  # the same text as the Python path, character for character
        else:
            # SQL sizes the name for the longest (13-digit) meter number: it may be cut shorter.
            assert body.startswith(f"KPLC: {clean[:12]}") and expected.startswith(f"KPLC: {clean[:12]}")
    bodies = " ".join(Message.objects.filter(batch_id=batch.pk).values_list("body", flat=True))
    assert "Wanjiru Ng'a" in bodies and '"Mama" Akinyi' in bodies and "Zoe Çelik" in bodies and "Kamau your" in bodies
