"""One date and time format on staff screens, in Africa/Nairobi: "1 Dec 2026 22:17"."""

from __future__ import annotations

import datetime as dt

from django.template import Context, Template
from django.utils import formats

from kplc_sts.formats import staff_date, staff_datetime, staff_time

EVENING_UTC = dt.datetime(2026, 12, 1, 19, 17, tzinfo=dt.UTC)  # 22:17 in Nairobi


def test_python_helpers_give_the_one_format_in_nairobi_time():
    assert staff_datetime(EVENING_UTC) == "1 Dec 2026 22:17"
    assert staff_date(EVENING_UTC) == "1 Dec 2026"
    assert staff_date(dt.date(2026, 12, 31)) == "31 Dec 2026"
    assert staff_time(EVENING_UTC) == "22:17"
    # Late in the UTC day is the next day in Nairobi: the date is Nairobi's.
    assert staff_date(dt.datetime(2026, 12, 1, 22, 30, tzinfo=dt.UTC)) == "2 Dec 2026"


def test_templates_and_the_admin_localisation_use_the_same_format():
    rendered = Template('{{ at|date:"DATETIME_FORMAT" }}|{{ at }}|{{ day|date }}').render(
        Context({"at": EVENING_UTC, "day": dt.date(2026, 12, 1)})
    )
    assert rendered == "1 Dec 2026 22:17|1 Dec 2026 22:17|1 Dec 2026"
    assert formats.localize(EVENING_UTC) == formats.date_format(EVENING_UTC, "DATETIME_FORMAT")
