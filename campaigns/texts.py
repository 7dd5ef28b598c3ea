"""Customer SMS texts: GSM-7 only, one 160-character segment, names truncated to fit.

Templates use `{placeholders}`. Notices: {meter}, {name}, {date}. Codes: {meter}, {name},
{code1}, {code2}, {token}, {units}. Reminders: {meter}, {name}, {deadline}, and the *977# hint.
Codes are labelled 1, 2, 3 in the order they are typed.
Notices are rendered in SQL for a whole batch at once (`notice_sql_expression`) and in Python
(`notice_render`, which the parity test compares it with). This module holds every customer SMS
wording: notices, the vend's codes-and-token SMS, the token SMS and the codes-only resend.
"""

from __future__ import annotations

import datetime as dt
import string
import unicodedata
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from tokens.sts import format_token

if TYPE_CHECKING:
    from .models import Batch

SMS_MAX = 160
LONGEST_METER = "0" * 13
NAME_MAX = 24  # a name longer than this is cut even when the segment has room
NOTICE_FIELDS = {"meter", "name", "date"}
CODES_FIELDS = {"meter", "name", "code1", "code2", "token", "units"}
REMINDER_FIELDS = {"meter", "name", "deadline"}
USSD_HINT = "*977#"
# Worst-case widths for the fields callers fill in (a 20-digit token grouped 4-4-4-4-4).
SAMPLE_CODES = {
    "code1": "1234-5678-9012-3456-7890",
    "code2": "1234-5678-9012-3456-7890",
    "token": "1234-5678-9012-3456-7890",
    "units": "9999.9 kWh",
}

# GSM 03.38 basic character set (plus the extension table, whose characters count double).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def _gsm7_regex_class() -> str:
    # Written out for both Python's re and PostgreSQL's AREs (the ORM's __regex on SQLite uses re).
    escapes = {"\n": "\\n", "\r": "\\r", "\f": "\\f", "\\": "\\\\", "]": "\\]", "[": "\\[", "^": "\\^", "-": "\\-"}
    return "".join(escapes.get(char, char) for char in sorted(GSM7_BASIC | GSM7_EXTENDED))


# Matches a text with at least one character GSM-7 cannot carry (a name that needs gsm7_clean).
NON_GSM7_REGEX = f"[^{_gsm7_regex_class()}]"


class TemplateError(ValueError):
    pass


def gsm7_length(text: str) -> int | None:
    """Septets the text takes in GSM-7, or None if a character forces UCS-2."""
    length = 0
    for char in text:
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENDED:
            length += 2
        else:
            return None
    return length


def gsm7_clean(text: str) -> str:
    """Replace what GSM-7 cannot carry (curly quotes, accents outside the set) with plain ASCII."""
    replacements = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}
    out = []
    for char in text:
        char = replacements.get(char, char)
        if char in GSM7_BASIC or char in GSM7_EXTENDED:
            out.append(char)
            continue
        ascii_form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
        out.append(ascii_form if ascii_form and all(c in GSM7_BASIC for c in ascii_form) else "")
    return "".join(out)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _squash(text: str) -> str:
    return " ".join(text.split(" ")).replace("  ", " ").strip()


def _render(template: str, values: dict[str, str], name: str) -> str:
    """Render with the name cut to whatever room the 160 characters leave (at most NAME_MAX)."""
    without_name = _squash(template.format(**values, name=""))
    room = max(SMS_MAX - len(without_name) - (1 if "{name}" in template else 0), 0)
    cut = gsm7_clean(name).strip()[: min(room, NAME_MAX)].rstrip()
    return _squash(template.format(**values, name=cut))


def _format_date(when: dt.datetime | dt.date) -> str:
    if isinstance(when, dt.datetime):
        when = timezone.localtime(when).date()
    return when.strftime("%d %b %Y")


def notice_render(*, template: str, meter_number: str, name: str, when: dt.datetime | dt.date) -> str:
    return _render(template, {"meter": meter_number, "date": _format_date(when)}, name)


def codes_render(*, template: str, meter_number: str, name: str, code1: str, code2: str, token: str, units: str) -> str:
    """A campaign's codes template rendered: codes labelled 1, 2, 3 in typing order."""
    values = {"meter": meter_number, "code1": code1, "code2": code2, "token": token, "units": units}
    return _render(template, values, name)


def vend_sms_render(
    *, template: str | None, meter_number: str, name: str, codes: list[str], token: str, units: str, amount: str
) -> str:
    """The SMS of a vend: the codes then the token (with the campaign's template when the set is
    the usual two codes), or the token alone."""
    if codes and template is not None and len(codes) == 2:
        return codes_render(
            template=template,
            meter_number=meter_number,
            name=name,
            code1=format_token(codes[0]),
            code2=format_token(codes[1]),
            token=format_token(token),
            units=units,
        )
    if codes:
        numbered = " ".join(f"{n}) {format_token(c)}" for n, c in enumerate([*codes, token], start=1))
        return f"KPLC {meter_number} type in order: {numbered} ({units}). Lost? *977#"
    return f"KPLC {meter_number} token: {format_token(token)} {units} KES {amount}. Lost? *977#"


def codes_only_render(*, meter_number: str, codes: list[str]) -> str:
    """The update codes on their own (care or USSD resends them without a token): labelled in
    typing order, GSM-7, one SMS."""
    numbered = " ".join(f"{n}) {format_token(c)}" for n, c in enumerate(codes, 1))
    return f"KPLC {meter_number}: load unused tokens first, then type {numbered} {len(codes) + 1}) your token. *977#"


def reminder_render(*, template: str, meter_number: str, name: str, deadline: dt.date) -> str:
    """A campaign's reminder: {meter}, {name}, {deadline} (the campaign's, "31 Aug 2024")."""
    return _render(template, {"meter": meter_number, "deadline": _format_date(deadline)}, name)


def _check(template: str, allowed: set[str], sample: dict[str, str]) -> None:
    try:
        unknown = _fields(template) - allowed
    except ValueError as exc:
        raise TemplateError(f"bad template: {exc}") from None
    if unknown:
        raise TemplateError(f"unknown placeholders: {', '.join(sorted(unknown))}")
    if "http" in template.lower() or "www." in template.lower():
        raise TemplateError("no links in customer SMS: customers are told links are scams")
    rendered = _render(template, sample, "N" * 120)
    length = gsm7_length(rendered)
    if length is None:
        raise TemplateError("the template has characters outside GSM-7 (curly quotes, emoji...)")
    if length > SMS_MAX:
        raise TemplateError(f"the template renders to {length} characters at worst; the limit is {SMS_MAX}")


def validate_notice_template(template: str) -> None:
    _check(template, NOTICE_FIELDS, {"meter": LONGEST_METER, "date": "30 Sep 2024"})
    if "{meter}" not in template:
        raise TemplateError("a notice must name the meter")


def validate_codes_template(template: str) -> None:
    _check(template, CODES_FIELDS, {"meter": LONGEST_METER, **SAMPLE_CODES})
    for field in ("{code1}", "{code2}", "{token}"):
        if field not in template:
            raise TemplateError(f"a codes message must contain {field}")
    if not template.index("{code1}") < template.index("{code2}") < template.index("{token}"):
        raise TemplateError("codes must appear in typing order: code1, code2, token")


def validate_reminder_template(template: str) -> None:
    """GSM-7, one SMS at worst, no links, names the meter and gives the *977# hint."""
    _check(template, REMINDER_FIELDS, {"meter": LONGEST_METER, "deadline": "30 Sep 2024"})
    if "{meter}" not in template:
        raise TemplateError("a reminder must name the meter")
    if USSD_HINT not in template:
        raise TemplateError(f"a reminder must give the {USSD_HINT} hint (codes on the customer's own phone)")


def notice_sql_expression(*, batch: Batch, meter_alias: str, name_sql: str | None = None) -> tuple[str, list[Any]]:
    """An SQL expression (SQLite and PostgreSQL) rendering the batch's notice for each meter row.

    Same result as `notice_render` for names in GSM-7. SQL cannot run gsm7_clean, so names with
    other characters are cleaned in Python beforehand and given as `name_sql` (e.g. a COALESCE
    over a join to the cleaned names: see campaigns.services.batch_notices_create).
    """
    name_sql = name_sql or f"{meter_alias}.customer_name"
    template = batch.campaign.notice_template
    date = _format_date(batch.scheduled_at)
    without_name = _squash(template.format(meter=LONGEST_METER, date=date, name=""))
    room = max(SMS_MAX - len(without_name) - (1 if "{name}" in template else 0), 0)
    name_len = min(room, NAME_MAX)
    parts: list[str] = []
    params: list[Any] = []
    for literal, field, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append("CAST(%s AS TEXT)")
            params.append(literal)
        if field == "meter":
            parts.append(f"{meter_alias}.meter_number")
        elif field == "name":
            parts.append(f"RTRIM(SUBSTR(TRIM({name_sql}), 1, {int(name_len)}))")
        elif field == "date":
            parts.append("CAST(%s AS TEXT)")
            params.append(date)
    expression = " || ".join(parts) or "''"
    # An empty name leaves two spaces; squash them as _squash does in Python.
    return f"TRIM(REPLACE(REPLACE({expression}, '   ', ' '), '  ', ' '))", params
