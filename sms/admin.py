"""Read-only admin for the SMS outbox and delivery reports (auditors, care, managers).

Codes and token SMS carry token digits. The list never shows them; the message page shows them
only to staff holding tokens.view_token_digits, and records each such view in the audit log.
State changes go through sms.services (claiming, retries, reports), never through a form here.
"""

from __future__ import annotations

import contextvars

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse

from audit.services import audit_record
from kplc_sts.logging import TOKEN_DIGITS
from meters.admin import EstimatedCountPaginator, ReadOnlyAdminMixin
from meters.models import Meter
from meters.phones import kenyan_phone_or_none

from .models import DeliveryReport, Message, MessageLog

VIEW_DIGITS = "tokens.view_token_digits"
# The request of the message page being rendered (readonly field callables only get the object).
_viewing: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("sms_admin_request", default=None)


def body_masked(body: str) -> str:
    """The body with every token-like run of 20 digits shown as dots (its layout kept)."""
    return TOKEN_DIGITS.sub(lambda match: "".join("•" if c.isdigit() else c for c in match.group()), body or "")


def search_messages(queryset: QuerySet, term: str) -> QuerySet:
    """Exact matches on indexed columns only: phone (any Kenyan format), provider id, meter number."""
    term = term.strip()
    if not term:
        return queryset
    match = Q(provider_message_id=term)
    phone = kenyan_phone_or_none(term)
    if phone:
        match |= Q(recipient=phone)
    if term.isdigit():
        match |= Q(meter_id__in=Meter.objects.filter(meter_number=term).values("pk"))
    return queryset.filter(match)


MESSAGE_LIST = (
    "id",
    "recipient",
    "purpose",
    "status",
    "meter_number",
    "batch_id",
    "attempts",
    "provider_message_id",
    "failure_reason",
    "created_at",
    "sent_at",
)
MESSAGE_FIELDS = (
    "recipient",
    "purpose",
    "status",
    "body_shown",
    "meter_number",
    "batch_id",
    "vend_id",
    "provider_message_id",
    "cost",
    "currency",
    "attempts",
    "next_attempt_at",
    "claimed_at",
    "last_error",
    "failure_reason",
    "created_at",
    "sent_at",
    "delivered_at",
)


class _MessagePages(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What the outbox and the log pages share: the search, the masking, the audited digit view."""

    list_filter = ("status", "purpose")
    list_select_related = ("meter",)
    search_fields = ("=provider_message_id",)  # the real search is search_messages (indexed columns)
    search_help_text = "Phone (any Kenyan format), meter number, or Africa's Talking message id"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ("-id",)  # the primary key: no sort over millions of rows

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        return search_messages(queryset, search_term), False

    @admin.display(description="meter")
    def meter_number(self, obj: Message | MessageLog) -> str:
        return obj.meter.meter_number if obj.meter is not None else "-"

    @admin.display(description="body")
    def body_shown(self, obj: Message | MessageLog) -> str:
        request = _viewing.get()
        masked = body_masked(obj.body)
        if masked == obj.body or request is None or not request.user.has_perm(VIEW_DIGITS):
            return masked
        audit_record(
            action="sms.message_digits_viewed",
            actor=request.user,
            target=obj,
            purpose=obj.purpose,
            meter=obj.meter_id,
        )
        return obj.body

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        token = _viewing.set(request)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()  # render now, while the request is known to body_shown
            return response
        finally:
            _viewing.reset(token)


@admin.register(Message)
class MessageAdmin(_MessagePages):
    list_display = MESSAGE_LIST
    fields = MESSAGE_FIELDS
    readonly_fields = MESSAGE_FIELDS


@admin.register(MessageLog)
class MessageLogAdmin(_MessagePages):
    """Settled messages, moved out of the outbox: the same read-only page, masking and audit."""

    list_display = (*MESSAGE_LIST, "delivered_at")
    fields = (*MESSAGE_FIELDS, "logged_at")
    readonly_fields = fields


@admin.register(DeliveryReport)
class DeliveryReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "provider_message_id",
        "status",
        "failure_reason",
        "phone_number",
        "network_code",
        "retry_count",
        "received_at",
        "applied_at",
    )
    list_filter = ("status",)
    search_fields = ("=provider_message_id", "=phone_number")
    search_help_text = "Africa's Talking message id or phone (any Kenyan format)"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ("-id",)
    readonly_fields = list_display

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        return super().get_search_results(request, queryset, kenyan_phone_or_none(term) or term)
