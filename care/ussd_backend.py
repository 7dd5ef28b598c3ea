"""The *977# callback's Django side: sessions, rate limits, language memory, and the backend that
answers the pure menu in `care.ussd` from the database.

Africa's Talking retransmits a request it got no answer to, and a customer may press "send" twice:
the last (text, reply) of each session is kept in the cache, so a repeat gets the same screen and
no action runs twice. Cases and SMS copies are also capped in the database/cache, so even a cache
flush cannot turn a replay into a flood.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from campaigns import rules
from campaigns import services as campaigns
from campaigns.models import Batch, Campaign, Enrollment
from campaigns.selectors import enrollment_for_meter
from campaigns.texts import codes_only_render
from kplc_sts import clock
from kplc_sts.ratelimit import Window, window_allows
from meters.models import Meter
from meters.phones import kenyan_phone_or_none
from sms.services import message_queue
from tokens import errors as vend_errors
from tokens.services import key_change_set_issue, mask_name, meter_last_tokens, meter_update_codes, vend_sms_resend

from . import ussd
from .models import CareCase, UssdLanguage
from .services import care_case_open, meter_confirm

logger = logging.getLogger(__name__)

SESSION_TTL = 600  # clock seconds: AT sessions last at most a few minutes
LANGUAGE_TTL = 24 * 3600
# A retransmission arrives within seconds of wall time, whatever the clock says.
SESSION_MIN_WALL_SECONDS = 30

_CASE_KIND = {
    ussd.Rejected.CODE1: CareCase.Kind.CODE1_REJECTED,
    ussd.Rejected.CODE2: CareCase.Kind.CODE2_REJECTED,
    ussd.Rejected.TOKEN: CareCase.Kind.TOKEN_REJECTED,
    ussd.Rejected.OTHER: CareCase.Kind.OTHER,
}


def _phone(raw: str) -> str:
    return kenyan_phone_or_none(raw) or raw.strip()[:16]


def ussd_language_get(*, phone: str) -> str:
    key = f"ussd:lang:{phone}"
    language = cache.get(key)
    if language is None:
        language = UssdLanguage.objects.filter(phone=phone).values_list("language", flat=True).first() or ""
        cache.set(key, language, clock.cache_ttl(LANGUAGE_TTL))
    return language or ussd.DEFAULT_LANGUAGE


def ussd_language_set(*, phone: str, language: str) -> None:
    UssdLanguage.objects.update_or_create(phone=phone, defaults={"language": language})
    cache.set(f"ussd:lang:{phone}", language, clock.cache_ttl(LANGUAGE_TTL))


def _rate_allowed(phone: str) -> bool:
    return window_allows(
        Window(key=f"ussd:rate:{phone}", seconds=60, on_clock=True), limit=settings.USSD_RATE_LIMIT_PER_MINUTE
    )


def _sms_allowed(meter_number: str, what: str) -> bool:
    # Fail closed: with the counter store down, no SMS copies (the screen still shows the codes).
    return window_allows(
        Window(key=f"ussd:sms:{what}:{meter_number}", seconds=3600, on_clock=True),
        limit=settings.USSD_SMS_COPIES_PER_HOUR,
        fail_open=False,
    )


class DjangoUssdBackend:
    """`care.ussd.UssdBackend` over the meter register, campaigns, tokens and the SMS outbox."""

    def __init__(self, *, phone: str) -> None:
        self.actor_label = f"ussd:{phone}"
        self._meters: dict[str, Meter | None] = {}

    def _meter(self, meter_number: str) -> Meter | None:
        if meter_number not in self._meters:
            self._meters[meter_number] = Meter.objects.filter(meter_number=meter_number).first()
        return self._meters[meter_number]

    def _due_enrollment(self, meter: Meter) -> Enrollment | None:
        return enrollment_for_meter(meter)

    def meter_facts(self, meter_number: str) -> ussd.MeterFacts | None:
        meter = self._meter(meter_number)
        if meter is None or meter.status == Meter.Status.RETIRED:
            return None
        facts: dict[str, Any] = {
            "meter_number": meter.meter_number,
            "masked_name": mask_name(meter.customer_name),
            "registered_phone": meter.phone,
        }
        if meter.status == Meter.Status.NON_COMPLIANT or meter.key_state == Meter.KeyState.NON_COMPLIANT:
            return ussd.MeterFacts(status=ussd.MeterStatus.FIELD_VISIT, **facts)
        if meter.key_state == Meter.KeyState.CONFIRMED:
            return ussd.MeterFacts(status=ussd.MeterStatus.CONFIRMED, **facts)
        if meter_update_codes(meter=meter) is not None:
            return ussd.MeterFacts(status=ussd.MeterStatus.CODES_READY, **facts)
        enrollment = self._due_enrollment(meter)
        if enrollment is not None:
            status: dict[str, ussd.MeterStatus] = {
                Enrollment.State.CONFIRMED: ussd.MeterStatus.CONFIRMED,
                Enrollment.State.NON_COMPLIANT: ussd.MeterStatus.FIELD_VISIT,
            }
            return ussd.MeterFacts(status=status.get(enrollment.state, ussd.MeterStatus.CODES_READY), **facts)
        upcoming = (
            Enrollment.objects.filter(
                meter=meter,
                campaign__status=Campaign.Status.ACTIVE,
                batch__status__in=[Batch.Status.SCHEDULED, Batch.Status.PAUSED],
                state=Enrollment.State.SCHEDULED,
            )
            .select_related("batch")
            .order_by("batch__scheduled_at")
            .first()
        )
        if upcoming is not None and upcoming.batch is not None:
            when = timezone.localtime(upcoming.batch.scheduled_at).date()
            return ussd.MeterFacts(status=ussd.MeterStatus.AWAITING_CODES, update_from=when, **facts)
        return ussd.MeterFacts(status=ussd.MeterStatus.NOT_SCHEDULED, **facts)

    def deliver_codes(self, meter_number: str, phone: str) -> tuple[tuple[str, ...], bool]:
        meter = self._meter(meter_number)
        assert meter is not None
        key_change_set = meter_update_codes(meter=meter)
        if key_change_set is None:
            enrollment = self._due_enrollment(meter)
            if enrollment is None or enrollment.state not in rules.CODES_DUE:
                return (), False
            try:
                # Made once, stored, identical on every later vend, USSD request or resend.
                key_change_set = key_change_set_issue(
                    meter=meter,
                    campaign=enrollment.campaign,
                    actor_label=self.actor_label,
                    origin=Enrollment.Origin.USSD,
                )
            except vend_errors.VendError:
                logger.warning("codes for meter %s could not be issued on USSD", meter_number)
                return (), False
        codes = tuple(key_change_set.codes)
        sent = False
        # Only ever to the meter's registered phone: whoever dials gets the screen, never an SMS to a
        # number of their choosing.
        if meter.phone and _sms_allowed(meter_number, "codes"):
            message_queue(
                recipient=meter.phone,
                body=codes_only_render(meter_number=meter_number, codes=list(codes)),
                purpose="codes",
                meter=meter,
            )
            sent = True
        return codes, sent

    def last_tokens(self, meter_number: str) -> Sequence[ussd.TokenLine]:
        meter = self._meter(meter_number)
        assert meter is not None
        return [
            ussd.TokenLine(issued_at=timezone.localtime(t.issued_at), units=t.units, digits=t.digits)
            for t in meter_last_tokens(meter=meter, limit=2)
        ]

    def send_last_tokens_sms(self, meter_number: str) -> bool:
        meter = self._meter(meter_number)
        assert meter is not None
        last = meter_last_tokens(meter=meter, limit=1)
        if not last or last[0].vend is None or not meter.phone or not _sms_allowed(meter_number, "tokens"):
            return False
        # Always to the registered phone: whoever dials, the digits only go to the meter's owner.
        return vend_sms_resend(vend=last[0].vend, actor_label=self.actor_label, recipient=meter.phone)

    def confirm(self, meter_number: str, phone: str) -> bool:
        meter = self._meter(meter_number)
        assert meter is not None
        try:
            meter_confirm(
                meter=meter,
                actor_label=self.actor_label,
                reason="customer confirmed on USSD",
                origin=Enrollment.Origin.USSD,
            )
        except ValueError:
            logger.warning("USSD confirmation of meter %s refused", meter_number, exc_info=True)
            return False
        return True

    def open_case(self, meter_number: str, phone: str, rejected: ussd.Rejected) -> str:
        meter = self._meter(meter_number)
        assert meter is not None
        kind = _CASE_KIND[rejected]
        case = care_case_open(
            meter=meter,
            kind=kind,
            source=CareCase.Source.USSD,
            phone=phone,
            summary=f"Customer reported on *977#: {CareCase.Kind(kind).label}.",
            actor_label=self.actor_label,
        )
        if rejected in (ussd.Rejected.CODE1, ussd.Rejected.CODE2):
            try:
                campaigns.meter_mark_codes_rejected(
                    meter=meter, actor_label=self.actor_label, reason=f"case {case.reference}"
                )
            except campaigns.EnrollmentStateError:
                pass  # confirmed or already with care: the case is what matters
        return case.reference

    def language_set(self, phone: str, language: str) -> None:
        ussd_language_set(phone=phone, language=language)


def ussd_request_handle(*, session_id: str, phone_number: str, text: str, service_code: str = "") -> str:
    """Answer one Africa's Talking USSD request with "CON ..." or "END ...". Never raises."""
    phone = _phone(phone_number or "")
    text = text or ""
    try:
        language = ussd_language_get(phone=phone) if phone else ussd.DEFAULT_LANGUAGE
    except Exception:
        logger.exception("USSD language lookup failed")
        language = ussd.DEFAULT_LANGUAGE
    if not session_id or not phone:
        return ussd.end_screen(language, "unavailable").render()
    session_key = "ussd:session:" + hashlib.sha256(session_id.encode()).hexdigest()[:32]
    try:
        seen = cache.get(session_key)
        if seen is not None:
            if seen["text"] == text:
                return seen["reply"]  # a retransmission: same screen, nothing done twice
            if seen["ended"]:
                return ussd.end_screen(language, "ended").render()
        if not _rate_allowed(phone):
            return ussd.end_screen(language, "rate_limited").render()
        reply = ussd.ussd_reply(text=text, phone=phone, language=language, backend=DjangoUssdBackend(phone=phone))
        rendered = reply.render()
        cache.set(
            session_key,
            {"text": text, "reply": rendered, "ended": reply.end},
            clock.cache_ttl(SESSION_TTL, at_least=SESSION_MIN_WALL_SECONDS),
        )
    except Exception:
        # The customer gets a polite screen, never an error page; we get the traceback.
        logger.exception("USSD request failed (session %s)", session_key[-8:])
        return ussd.end_screen(language, "unavailable").render()
    return rendered
