from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from care import services as care_services
from care.desk import CHANGE_ENROLLMENT, RESEND, CareDeskMixin

from .models import Meter
from .phones import kenyan_phone_or_none


class EstimatedCountPaginator(Paginator):
    """Unfiltered lists of millions of meters use PostgreSQL's row estimate, not COUNT(*)."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [self.object_list.model._meta.db_table],
                )
                estimate = cursor.fetchone()[0]
            if estimate > 100_000:
                return estimate
        return super().count


class ReadOnlyAdminMixin:
    """For records written only by services (outbox, campaign trail, vends): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Meter)
class MeterAdmin(CareDeskMixin, admin.ModelAdmin):
    list_display = (
        "meter_number",
        "customer_name",
        "phone",
        "account_number",
        "region",
        "sgc",
        "krn",
        "status",
        "key_state",
    )
    list_filter = ("status", "key_state", "region", "sgc", "krn")
    # Exact matches ride the unique and secondary indexes; a LIKE over millions of rows would not.
    search_fields = ("=meter_number", "=phone", "=account_number")
    search_help_text = "Meter number, phone (any Kenyan format), account number, or the 20 digits of a token"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ("created_at", "updated_at")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Meter], search_term: str
    ) -> tuple[QuerySet[Meter], Any]:
        term = search_term.strip()
        # Care agents type what the customer reads out: "0712 345 678" finds "+254712345678".
        term = kenyan_phone_or_none(term) or term
        digits = care_services.token_digits_clean(term)
        if len(digits) == 20 and digits.isdigit():
            # A token read out by the customer: found through its keyed digest, never a digits scan.
            meter_ids = {match.meter.pk for match in care_services.token_find(digits=digits)}
            return queryset.filter(pk__in=meter_ids), False
        return super().get_search_results(request, queryset, term)

    actions = ["resend_codes", "mark_confirmed", "flag_non_compliant"]

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RESEND)

    def has_enrollment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CHANGE_ENROLLMENT)

    @admin.action(description="Resend update codes by SMS", permissions=["resend"])
    def resend_codes(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        sent = skipped = 0
        for meter in queryset[:500]:
            try:
                sent += care_services.meter_codes_send(meter=meter, actor=request.user)
            except care_services.CareError:
                skipped += 1
        self.message_user(request, f"Codes queued for {sent} meter(s); {skipped} had no codes issued.")

    @admin.action(description="Mark confirmed on the new key", permissions=["enrollment"])
    def mark_confirmed(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        changed = sum(
            care_services.meter_confirm(meter=meter, actor=request.user, reason="confirmed by care")
            for meter in queryset[:500]
        )
        self.message_user(request, f"{changed} meter(s) marked confirmed.")

    @admin.action(description="Flag non-compliant (field visit)", permissions=["enrollment"])
    def flag_non_compliant(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        changed = sum(
            care_services.meter_flag_non_compliant(meter=meter, reason="flagged by care", actor=request.user)
            for meter in queryset[:500]
        )
        self.message_user(request, f"{changed} meter(s) flagged for a field visit.", messages.SUCCESS)
